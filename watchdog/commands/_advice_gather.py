"""What `check`'s advice reads from the live cluster and the brokers' hosts (the I/O half)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from ..config import DockerHost, LocalHost, SshHost, WatchdogConfig
from ..hosts import Host, HostError
from ..model import BrokerObservation, ClusterSnapshot
from ..remoting import (
    ClientPool,
    ConsumerConnection,
    RemoteError,
    RemotingError,
    ResponseCode,
    describe_error,
    get_broker_config,
    get_consumer_connection,
    get_subscription_groups,
    get_topic_route,
)
from ._advice import (
    INTERNAL_TOPIC_PREFIXES,
    AdviceFacts,
    BrokerSetup,
    ConsumerFacts,
    ConsumerGroupView,
    TopicQueues,
)
from ._advice_jvm import HostScan, parse_host_scan

__all__ = ["HOST_SCAN_SCRIPT", "broker_setups", "gather_advice_facts", "scan_host"]

T = TypeVar("T")

# A one-shot command may wait longer than a probe cycle's timeout for a busy broker.
_CALL_TIMEOUT_SECONDS = 5.0
_SCAN_TIMEOUT_SECONDS = 15.0
_CONCURRENT_CALLS = 16

# Run with `sh -c` on each brokers' host: MemTotal, then every process whose command line names
# BrokerStartup (the pattern's [S] keeps grep and this shell from matching themselves), its
# working directory (a relative -c is read from there) and its arguments, one per line.
HOST_SCAN_SCRIPT = r"""
m=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9][0-9]*\) kB$/\1/p' /proc/meminfo 2>/dev/null)
[ -n "$m" ] && echo "memtotal $m"
for f in $(grep -l -s -a 'org\.apache\.rocketmq\.broker\.Broker[S]tartup' /proc/[0-9]*/cmdline)
do
  d=${f%/cmdline}
  a=$( { tr '\000' '\n' < "$f"; } 2>/dev/null ) || continue
  [ -n "$a" ] || continue
  echo "pid ${d#/proc/}"
  echo "cwd $(readlink "$d/cwd" 2>/dev/null)"
  printf '%s\n' "$a" | sed 's/^/arg /'
done
exit 0
"""


def broker_setups(config: WatchdogConfig) -> tuple[BrokerSetup, ...]:
    def machine(host: str) -> str:
        entry = config.hosts.get(host)
        if isinstance(entry, LocalHost):
            return "local"
        if isinstance(entry, SshHost):
            return f"ssh:{entry.address}:{entry.port}"
        if isinstance(entry, DockerHost):
            return f"docker:{entry.socket}"
        return f"host:{host}"

    return tuple(
        BrokerSetup(
            key=b.key,
            broker_name=b.broker_name,
            broker_id=b.broker_id,
            addr=b.addr,
            host=b.host,
            machine=machine(b.host),
            properties=b.properties,
        )
        for b in config.brokers
    )


async def _bounded(semaphore: asyncio.Semaphore, call: Awaitable[T]) -> T:
    async with semaphore:
        return await call


async def _broker_configs(
    snapshot: ClusterSnapshot, brokers: Sequence[BrokerSetup], pool: ClientPool
) -> dict[str, Mapping[str, str] | str]:
    async def one(broker: BrokerSetup) -> Mapping[str, str] | str:
        observed = snapshot.broker_at(broker.addr)
        if observed is None or not observed.is_up:
            return "it does not answer"
        try:
            return await get_broker_config(
                pool.get(broker.addr), timeout_seconds=_CALL_TIMEOUT_SECONDS
            )
        except RemotingError as exc:
            return describe_error(exc)

    results = await asyncio.gather(*(one(b) for b in brokers))
    return {b.key: r for b, r in zip(brokers, results, strict=True)}


def _consumer_targets(snapshot: ClusterSnapshot, names: Sequence[str]) -> list[BrokerObservation]:
    """One broker per group to ask about consumers: its master when it answers, else a slave
    (clients connect to every broker of their topics' routes)."""
    targets = []
    for name in names:
        master = snapshot.master_of(name)
        up = [b for b in snapshot.group(name) if b.is_up]
        target = master if master is not None and master.is_up else (up[0] if up else None)
        if target is not None:
            targets.append(target)
    return targets


async def _consumers(
    config: WatchdogConfig, snapshot: ClusterSnapshot, pool: ClientPool
) -> ConsumerFacts:
    semaphore = asyncio.Semaphore(_CONCURRENT_CALLS)
    targets = _consumer_targets(snapshot, config.group_names())
    if not targets:
        return ConsumerFacts(errors=("no broker answers",), cluster_name=config.cluster_name)
    errors: list[str] = []

    async def groups_of(target: BrokerObservation) -> tuple[str, ...]:
        try:
            groups = await get_subscription_groups(
                pool.get(target.addr), timeout_seconds=_CALL_TIMEOUT_SECONDS
            )
        except RemotingError as exc:
            errors.append(f"subscription groups of {target.key}: {describe_error(exc)}")
            return ()
        return tuple(g.group_name for g in groups)

    listed = await asyncio.gather(*(groups_of(t) for t in targets))
    pairs = [(group, t) for t, groups in zip(targets, listed, strict=True) for group in groups]

    async def connection(group: str, target: BrokerObservation) -> ConsumerConnection | None:
        try:
            return await get_consumer_connection(
                pool.get(target.addr), group, timeout_seconds=_CALL_TIMEOUT_SECONDS
            )
        except RemotingError as exc:
            errors.append(f"clients of {group} on {target.key}: {describe_error(exc)}")
            return None

    answers = await asyncio.gather(*(_bounded(semaphore, connection(g, t)) for g, t in pairs))
    ids: dict[str, set[str]] = {}
    models: dict[str, str | None] = {}
    topics: dict[str, set[str]] = {}
    for (group, _), answer in zip(pairs, answers, strict=True):
        if answer is not None:
            ids.setdefault(group, set()).update(answer.client_ids)
            topics.setdefault(group, set()).update(answer.subscriptions)
            models[group] = models.get(group) or answer.message_model
    views = tuple(
        ConsumerGroupView(group, frozenset(ids[group]), models[group], tuple(sorted(topics[group])))
        for group in sorted(ids)
    )
    wanted = sorted(
        {
            topic
            for view in views
            if view.message_model != "BROADCASTING"
            for topic in view.topics
            if not topic.startswith(INTERNAL_TOPIC_PREFIXES)
        }
    )
    routes = await asyncio.gather(
        *(_bounded(semaphore, _topic_queues(snapshot, pool, topic)) for topic in wanted)
    )
    return ConsumerFacts(
        groups=views,
        routes={r.topic: r for r in routes},
        errors=tuple(sorted(errors)),
        cluster_name=config.cluster_name,
    )


async def _topic_queues(snapshot: ClusterSnapshot, pool: ClientPool, topic: str) -> TopicQueues:
    """The topic's readable queues per broker group, from the first nameserver that answers."""
    failures = []
    for ns in snapshot.nameservers_up():
        try:
            route = await get_topic_route(
                pool.get(ns.addr), topic, timeout_seconds=_CALL_TIMEOUT_SECONDS
            )
        except RemoteError as exc:
            if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                return TopicQueues(topic, error=f"nameserver {ns.addr} has no route for it")
            failures.append(f"{ns.addr}: {describe_error(exc)}")
            continue
        except RemotingError as exc:
            failures.append(f"{ns.addr}: {describe_error(exc)}")
            continue
        readable: dict[str, int] = {}
        for queues in route.queue_datas:
            if queues.is_readable:
                readable[queues.broker_name] = (
                    readable.get(queues.broker_name, 0) + queues.read_queue_nums
                )
        return TopicQueues(topic, readable)
    return TopicQueues(topic, error="; ".join(failures) or "no nameserver answers")


async def scan_host(name: str, host: Host) -> HostScan:
    """The host's BrokerStartup processes and memory, or why they could not be read."""
    try:
        result = await host.run(
            ["sh", "-c", HOST_SCAN_SCRIPT], timeout_seconds=_SCAN_TIMEOUT_SECONDS
        )
    except HostError as exc:
        return HostScan(name, error=str(exc))
    if result.exit_code != 0:
        return HostScan(name, error=f"the process scan failed: {result.summary()}")
    return parse_host_scan(name, result.stdout)


async def gather_advice_facts(
    config: WatchdogConfig,
    snapshot: ClusterSnapshot,
    hosts: Mapping[str, Host],
    pool: ClientPool,
) -> AdviceFacts:
    brokers = broker_setups(config)
    host_names = sorted({b.host for b in brokers})
    configs, consumers, scans = await asyncio.gather(
        _broker_configs(snapshot, brokers, pool),
        _consumers(config, snapshot, pool),
        asyncio.gather(*(scan_host(h, hosts[h]) for h in host_names)),
    )
    return AdviceFacts(
        nameservers=tuple(config.nameservers),
        brokers=brokers,
        snapshot=snapshot,
        broker_configs=configs,
        hosts=dict(zip(host_names, scans, strict=True)),
        consumers=consumers,
        max_lag_bytes={name: config.max_lag_bytes(name) for name in config.group_names()},
    )
