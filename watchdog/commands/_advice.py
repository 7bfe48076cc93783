"""`check`'s operating advice (the seed's guide, measured): facts in, findings out; no I/O."""

# The rules and why (the seed is shared/seeds/000_*.txt, its last section and its setup):
# - consumers: rebalancing gives each readable queue of a topic to one consumer of a group, so
#   consumers beyond the queue count get nothing and sit idle ("queue总数量大于等于consumer的数量").
# - replication: the seed ends on SYNC_MASTER with ASYNC_FLUSH ("同步双写, 异步刷盘"); an
#   ASYNC_MASTER acknowledges writes no slave holds yet, and that lag is what a failover loses.
# - nameservers: every broker registers with every nameserver in its namesrvAddr; clients and
#   the watchdog read routes from them, so one nameserver is a single point of failure and a
#   broker missing on some of them is invisible to whoever asks those.
# - hosts: a slave on its master's machine dies with it.
# - JVM memory (_advice_jvm.py): heap and direct memory against the machine's RAM.
# - retention: deleteWhen/fileReservedTime decide when the commit log is deleted; a promoted
#   slave keeps its own.

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..model import BrokerObservation, ClusterSnapshot
from ._advice_jvm import HostScan, broker_jvm_findings
from ._findings import Finding, plural

__all__ = [
    "AdviceFacts",
    "BrokerSetup",
    "ConsumerFacts",
    "ConsumerGroupView",
    "INTERNAL_TOPIC_PREFIXES",
    "TopicQueues",
    "advise",
    "consumer_findings",
    "host_findings",
    "jvm_findings",
    "nameserver_findings",
    "replication_findings",
    "retention_findings",
    "same_machine",
]


# --- facts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerSetup:
    """A configured broker, as the config places it (no I/O): `machine` names the machine its
    [hosts] entry reaches: "local" (this machine), "ssh:ADDRESS:PORT" or "docker:SOCKET"."""

    key: str
    broker_name: str
    broker_id: int
    addr: str
    host: str
    machine: str
    properties: str


@dataclass(frozen=True)
class ConsumerGroupView:
    """A consumer group's clients online on the brokers asked, and what they subscribe."""

    group: str
    client_ids: frozenset[str]
    message_model: str | None  # CLUSTERING or BROADCASTING
    topics: tuple[str, ...]


@dataclass(frozen=True)
class TopicQueues:
    """A topic's readable queues per broker group, from its route (perm has READ)."""

    topic: str
    readable: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ConsumerFacts:
    groups: tuple[ConsumerGroupView, ...] = ()
    routes: Mapping[str, TopicQueues] = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # what could not be read (which broker, why)
    cluster_name: str = "CLUSTER"  # for the fix's mqadmin command


@dataclass(frozen=True)
class AdviceFacts:
    """Everything the advice reads: the config's view, one snapshot, and what `check` asked."""

    nameservers: tuple[str, ...]  # as configured
    brokers: tuple[BrokerSetup, ...]
    snapshot: ClusterSnapshot
    broker_configs: Mapping[str, Mapping[str, str] | str]  # key -> GET_BROKER_CONFIG or why not
    hosts: Mapping[str, HostScan]  # host name -> scan
    consumers: ConsumerFacts
    max_lag_bytes: Mapping[str, int]  # group -> the failover's max_lag_bytes


def advise(facts: AdviceFacts) -> list[Finding]:
    return [
        *consumer_findings(facts.consumers),
        *replication_findings(facts),
        *nameserver_findings(facts),
        *host_findings(facts.brokers, facts.snapshot),
        *jvm_findings(facts.brokers, facts.hosts),
        *retention_findings(facts),
    ]


# --- small helpers -------------------------------------------------------------------------------


def _groups(brokers: Sequence[BrokerSetup]) -> dict[str, list[BrokerSetup]]:
    groups: dict[str, list[BrokerSetup]] = {}
    for b in brokers:
        groups.setdefault(b.broker_name, []).append(b)
    return groups


def _master_and_slaves(
    group: Sequence[BrokerSetup], snapshot: ClusterSnapshot
) -> tuple[BrokerSetup | None, list[BrokerSetup]]:
    """The group's master as the reports name it (snapshot.master_of), else the configured id
    0; the rest are its slaves."""
    observed = snapshot.master_of(group[0].broker_name)
    master = next((b for b in group if observed is not None and b.addr == observed.addr), None)
    if master is None:
        master = next((b for b in group if b.broker_id == 0), None)
    return master, [b for b in group if b is not master]


def _config(facts: AdviceFacts, broker: BrokerSetup) -> Mapping[str, str] | None:
    found = facts.broker_configs.get(broker.key)
    return found if isinstance(found, Mapping) else None


def _config_error(facts: AdviceFacts, broker: BrokerSetup) -> str:
    found = facts.broker_configs.get(broker.key)
    return found if isinstance(found, str) else "it does not answer"


def _observation(snapshot: ClusterSnapshot, broker: BrokerSetup) -> BrokerObservation | None:
    return snapshot.broker_at(broker.addr)


# --- consumers -----------------------------------------------------------------------------------

INTERNAL_TOPIC_PREFIXES = ("%RETRY%", "%DLQ%")


def consumer_findings(facts: ConsumerFacts) -> list[Finding]:
    """Consumer groups (clustering) with more clients online than readable queues of a topic
    they subscribe. A group's own retry topic is left out: it has one queue by design."""
    found: list[Finding] = []
    for error in facts.errors:
        found.append(
            Finding(
                "info",
                "consumer groups",
                f"could not read consumer groups: {error}",
                id="consumers.unreadable",
            )
        )
    checked = broadcasting = 0
    idle_before = len(found)
    for view in facts.groups:
        if not view.client_ids:
            continue
        checked += 1
        if view.message_model == "BROADCASTING":
            broadcasting += 1  # every client reads every queue: none is idle
            continue
        consumers = len(view.client_ids)
        for topic in view.topics:
            if topic.startswith(INTERNAL_TOPIC_PREFIXES):
                continue
            route = facts.routes.get(topic)
            subject = f"consumer group {view.group}"
            if route is None or route.error is not None:
                why = route.error if route is not None else "not asked"
                found.append(
                    Finding(
                        "info",
                        subject,
                        f"could not read the route of topic {topic}: {why}",
                        id="consumers.unreadable",
                    )
                )
                continue
            readable = sum(route.readable.values())
            if consumers <= readable:
                continue
            per_broker = ", ".join(f"{name}: {n}" for name, n in sorted(route.readable.items()))
            idle = consumers - readable
            # updateTopic -c sets the count on every broker group of the cluster
            each = -(-consumers // max(1, len(route.readable)))
            found.append(
                Finding(
                    "warn",
                    subject,
                    f"{plural(consumers, 'consumer')} online and topic {topic} has "
                    f"{plural(readable, 'readable queue')} ({per_broker or 'none'}): "
                    f"{idle} of them {'gets' if idle == 1 else 'get'} no queue of {topic} and "
                    f"{'sits' if idle == 1 else 'sit'} idle (a group's clients share a topic's "
                    "queues, one consumer per queue)",
                    id="consumers.idle",
                    fix=f"give {topic} at least {consumers} readable queues in all, e.g. "
                    f"`mqadmin updateTopic -c {facts.cluster_name} -t {topic} -r {each} -w "
                    f"{each}` ({each} read and write queues on each broker group), or run at "
                    f"most {plural(readable, 'consumer')} in {view.group}",
                )
            )
    if len(found) == idle_before and not facts.errors:
        if checked == 0:
            text = "no consumer group has clients online"
        else:
            text = (
                f"{plural(checked, 'consumer group')} online, none with more consumers than "
                "the readable queues of a topic it subscribes"
            )
            if broadcasting:
                text += f" ({broadcasting} broadcasting: every client reads every queue)"
        found.append(Finding("ok", "consumer groups", text, id="consumers.ok"))
    return found


# --- replication and flush -----------------------------------------------------------------------


def _put_rate(runtime: Mapping[str, str]) -> tuple[float, float, int] | None:
    """(messages/s, average message bytes, over how many seconds) from runtime info's putTps
    ("10s 60s 600s" windows, each empty until the store has sampled that long; the shortest
    is the rate now) and putMessageAverageSize."""
    windows = runtime.get("putTps", "").split(" ")
    found = next(((w, s) for w, s in zip(windows, (10, 60, 600), strict=False) if w), None)
    if found is None:
        return None
    try:
        rate = float(found[0])
        average = float(runtime.get("putMessageAverageSize", "nan"))
    except ValueError:
        return None
    if not (math.isfinite(rate) and math.isfinite(average)) or rate < 0 or average < 0:
        return None
    return rate, average, found[1]


def _loss_window(facts: AdviceFacts, master: BrokerObservation, slave: BrokerSetup) -> str:
    observed = _observation(facts.snapshot, slave)
    if observed is None or not observed.is_up:
        return f"{slave.key} does not answer: all written since it stopped copying is at risk"
    lag = facts.snapshot.replication_lag(observed)
    if lag is None:
        return f"{slave.key}'s lag could not be measured (no offsets)"
    rate = _put_rate(dict(master.runtime))
    text = f"{slave.key} is {lag} bytes behind"
    if rate is None:
        return text + " (the master reports no put rate yet)"
    tps, average, seconds = rate
    if tps * average <= 0:
        return (
            text + f" (no writes in the master's last {seconds} s: the window opens with the next)"
        )
    writing = f"{tps:.1f} msg/s x {average:.0f} B (the master's last {seconds} s)"
    if lag <= 0:
        return (
            f"{text} at {writing}: the window is what it has not copied yet, and grows when "
            "it falls behind"
        )
    return text + f", ~{lag / (tps * average):.2f} s of writes at {writing}"


def replication_findings(facts: AdviceFacts) -> list[Finding]:
    found: list[Finding] = []
    for name, group in _groups(facts.brokers).items():
        master, slaves = _master_and_slaves(group, facts.snapshot)
        if master is None or not slaves:
            continue  # no slave at all: check's "no promotable slave" says so
        subject = f"group {name}"
        observed = _observation(facts.snapshot, master)
        config = _config(facts, master)
        if observed is None or not observed.is_up or config is None:
            why = (
                "it does not answer"
                if observed is None or not observed.is_up
                else (_config_error(facts, master))
            )
            found.append(
                Finding(
                    "info",
                    subject,
                    f"replication mode not checked: the config of master {master.key} could not "
                    f"be read ({why})",
                    id="replication.unreadable",
                )
            )
            continue
        role = config.get("brokerRole", observed.role or "?")
        flush = config.get("flushDiskType", "?")
        if role == "ASYNC_MASTER":
            windows = "; ".join(_loss_window(facts, observed, s) for s in slaves)
            limit = facts.max_lag_bytes.get(name)
            bound = f" (up to max_lag_bytes={limit})" if limit is not None else ""
            found.append(
                Finding(
                    "warn",
                    subject,
                    f"master {master.key} is ASYNC_MASTER: it acknowledges a write before a "
                    "slave has it, so what the slave lacks when the master is lost is lost, and "
                    f"a failover promotes a slave that much behind{bound}. Now: {windows}",
                    id="replication.async-master",
                    fix=f"set brokerRole=SYNC_MASTER in {master.properties} and restart the "
                    "master (the seed's choice: SYNC_MASTER with ASYNC_FLUSH); it then "
                    "acknowledges only what a slave holds, or answers SLAVE_NOT_AVAILABLE",
                )
            )
        if flush == "SYNC_FLUSH":
            found.append(
                Finding(
                    "info",
                    subject,
                    f"master {master.key} is {role} with SYNC_FLUSH: every write waits for the "
                    "disk; "
                    + (
                        "with a SYNC_MASTER a slave already holds each acknowledged write, "
                        if role == "SYNC_MASTER"
                        else ""
                    )
                    + "the seed recommends ASYNC_FLUSH for the throughput",
                    id="replication.sync-flush",
                    fix=f"flushDiskType=ASYNC_FLUSH in {master.properties} (restart), unless "
                    "a power loss of every copy at once must lose nothing",
                )
            )
        if role == "SYNC_MASTER" and flush == "ASYNC_FLUSH":
            found.append(
                Finding(
                    "ok",
                    subject,
                    f"master {master.key} is SYNC_MASTER with ASYNC_FLUSH (the seed's "
                    "recommendation)",
                    id="replication.ok",
                )
            )
    return found


# --- nameservers ---------------------------------------------------------------------------------


def nameserver_findings(facts: AdviceFacts) -> list[Finding]:
    found: list[Finding] = []
    configured = facts.nameservers
    if len(configured) < 2:
        found.append(
            Finding(
                "warn",
                "nameservers",
                f"only {plural(len(configured), 'nameserver')} configured "
                f"({', '.join(configured) or 'none'}): when it is down no new client finds a "
                "broker, routes stop changing, and a failover cannot be verified",
                id="nameservers.single",
                fix="run a second nameserver on another machine and list both everywhere: "
                "namesrvAddr of every broker and client (namesrvAddr=A:9876;B:9876, as the seed "
                "does) and `nameservers` in this config",
            )
        )
    answering = facts.snapshot.nameservers_up()
    partial = 0
    for broker in facts.brokers:
        observed = _observation(facts.snapshot, broker)
        if observed is None or not observed.is_up or not answering:
            continue
        missing = [ns.addr for ns in answering if not ns.ids_of(broker.addr)]
        if not missing:
            continue
        partial += 1
        config = _config(facts, broker) or {}
        listed = [a.strip() for a in config.get("namesrvAddr", "").split(";") if a.strip()]
        unlisted = [a for a in missing if listed and a not in listed]
        cause = (
            f"; its namesrvAddr={config.get('namesrvAddr')} does not list {', '.join(unlisted)}"
            if unlisted
            else ""
        )
        fix = (
            f"add {', '.join(unlisted)} to namesrvAddr in {broker.properties} and restart the "
            "broker"
            if unlisted
            else "a broker registers with each nameserver of its namesrvAddr every 30 s: if it "
            "stays missing, read that nameserver's log and check the network between them"
        )
        if not unlisted:
            cause = " (a nameserver restarted within 30 s has not heard from it yet)"
        found.append(
            Finding(
                "warn",
                broker.key,
                f"registered on {len(answering) - len(missing)} of {len(answering)} answering "
                f"nameservers, not on {', '.join(missing)}{cause}: clients and watchdogs asking "
                "those get no route to it",
                id="nameservers.partial-registration",
                fix=fix,
            )
        )
    if len(configured) >= 2 and not partial and answering:
        found.append(
            Finding(
                "ok",
                "nameservers",
                f"{len(configured)} configured; every answering broker is registered on all "
                f"{len(answering)} answering",
                id="nameservers.ok",
            )
        )
    return found


# --- hosts ---------------------------------------------------------------------------------------


def _host_of(addr: str) -> str:
    host = addr.rpartition(":")[0] or addr
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def same_machine(a: BrokerSetup, b: BrokerSetup) -> str | None:
    """Why `a` and `b` run on one machine, or None when nothing says so."""
    host_a, host_b = _host_of(a.addr), _host_of(b.addr)
    if host_a.lower() == host_b.lower():
        return f"both at {host_a}"
    if _loopback(host_a) and _loopback(host_b):
        return f"both on loopback addresses ({host_a}, {host_b})"
    if a.host == b.host:
        return f"both on [hosts.{a.host}]"
    if a.machine == b.machine:
        where = "this machine" if a.machine == "local" else a.machine
        return f"[hosts.{a.host}] and [hosts.{b.host}] both reach {where}"
    return None


def host_findings(brokers: Sequence[BrokerSetup], snapshot: ClusterSnapshot) -> list[Finding]:
    found: list[Finding] = []
    for name, group in _groups(brokers).items():
        master, slaves = _master_and_slaves(group, snapshot)
        if master is None or not slaves:
            continue
        shared = False
        for slave in slaves:
            why = same_machine(master, slave)
            if why is None:
                continue
            shared = True
            found.append(
                Finding(
                    "warn",
                    slave.key,
                    f"slave {slave.addr} runs on the machine of its master {master.key} "
                    f"({master.addr}): {why}; one machine failure (power, disk, kernel) takes "
                    "both, and the group has no copy left to promote",
                    id="hosts.slave-with-master",
                    fix="run the slave on another machine (its own power and disk) and point "
                    "its [[brokers]] addr and host there",
                )
            )
        if not shared:
            found.append(
                Finding(
                    "ok",
                    f"group {name}",
                    f"every slave runs on another machine than master {master.key}",
                    id="hosts.ok",
                )
            )
    return found


# --- JVM memory (_advice_jvm.py) ----------------------------------------------------------------


def jvm_findings(brokers: Sequence[BrokerSetup], hosts: Mapping[str, HostScan]) -> list[Finding]:
    found: list[Finding] = []
    for b in brokers:
        found.extend(broker_jvm_findings(b.key, b.host, b.properties, hosts.get(b.host)))
    return found


# --- retention -----------------------------------------------------------------------------------

_RETENTION_KEYS = ("deleteWhen", "fileReservedTime")


def retention_findings(facts: AdviceFacts) -> list[Finding]:
    found: list[Finding] = []
    for name, group in _groups(facts.brokers).items():
        master, slaves = _master_and_slaves(group, facts.snapshot)
        if master is None or not slaves:
            continue
        unread = [b for b in [master, *slaves] if _config(facts, b) is None]
        for b in unread:
            found.append(
                Finding(
                    "info",
                    b.key,
                    "deleteWhen/fileReservedTime not compared: its config could not be read "
                    f"({_config_error(facts, b)})",
                    id="retention.unreadable",
                )
            )
        master_config = _config(facts, master)
        if master_config is None:
            continue
        ours = {k: master_config.get(k, "?") for k in _RETENTION_KEYS}
        differing = 0
        for slave in slaves:
            config = _config(facts, slave)
            if config is None:
                continue
            theirs = {k: config.get(k, "?") for k in _RETENTION_KEYS}
            diffs = [
                f"{k}={theirs[k]} (master {ours[k]})"
                for k in _RETENTION_KEYS
                if theirs[k] != ours[k]
            ]
            if not diffs:
                continue
            differing += 1
            found.append(
                Finding(
                    "warn",
                    slave.key,
                    f"{' and '.join(diffs)} {'differ' if len(diffs) > 1 else 'differs'} from "
                    f"its master {master.key}: the slave "
                    "deletes its commit log on its own schedule, so consumers reading from it "
                    "and a failover that promotes it see another retention, and the disks fill "
                    "differently",
                    id="retention.differs",
                    fix=f"set the same {' and '.join(d.partition('=')[0] for d in diffs)} in "
                    f"{slave.properties} and {master.properties} (`mqadmin updateBrokerConfig "
                    "-b ADDR -k KEY -v VALUE` changes a running broker)",
                )
            )
        if not differing and not unread:
            found.append(
                Finding(
                    "ok",
                    f"group {name}",
                    f"deleteWhen={ours['deleteWhen']} fileReservedTime="
                    f"{ours['fileReservedTime']} on the master and every slave",
                    id="retention.ok",
                )
            )
    return found
