"""`check`'s operating advice on values: each rule's table of facts in, findings out; the host scan
run for real on this machine; the --json form; the evaluation module imports no I/O."""

from __future__ import annotations

import ast
import asyncio
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from watchdog.commands._advice import (
    AdviceFacts,
    BrokerSetup,
    ConsumerFacts,
    ConsumerGroupView,
    TopicQueues,
    consumer_findings,
    host_findings,
    jvm_findings,
    nameserver_findings,
    replication_findings,
    retention_findings,
    same_machine,
)
from watchdog.commands._advice_gather import broker_setups, scan_host
from watchdog.commands._advice_jvm import (
    HostScan,
    JavaMemory,
    JvmProcess,
    find_broker_process,
    java_memory,
    parse_host_scan,
    parse_java_size,
)
from watchdog.commands._findings import Finding, findings_json
from watchdog.config import parse_config
from watchdog.hosts import LocalBackend
from watchdog.model import BrokerObservation, ClusterSnapshot, NamesrvObservation, Registration

NS1, NS2 = "10.0.0.9:9876", "10.0.0.10:9876"
A0, A1 = "10.0.0.1:10911", "10.0.0.2:10911"
GIB = 1 << 30
MIB = 1 << 20


def setup(broker_id: int, addr: str, host: str = "h", machine: str | None = None) -> BrokerSetup:
    return BrokerSetup(
        key=f"broker-a:{broker_id}",
        broker_name="broker-a",
        broker_id=broker_id,
        addr=addr,
        host=host,
        machine=machine or f"ssh:{host}:22",
        properties=f"/opt/rmq/conf/broker-a-{broker_id}.properties",
    )


BROKERS = (setup(0, A0, "server1"), setup(1, A1, "server2"))


def observation(
    broker_id: int,
    addr: str,
    *,
    up: bool = True,
    role: str | None = None,
    offset: int = 1000,
    runtime: Mapping[str, str] | None = None,
) -> BrokerObservation:
    return BrokerObservation(
        broker_name="broker-a",
        broker_id=broker_id,
        addr=addr,
        is_up=up,
        role=(role or ("ASYNC_MASTER" if broker_id == 0 else "SLAVE")) if up else None,
        reported_broker_id=broker_id if up else None,
        commitlog_max_offset=offset if up else None,
        error=None if up else "ConnectionRefusedError",
        runtime=tuple(sorted((runtime or {}).items())),
    )


def namesrv(addr: str, *addrs: str, up: bool = True) -> NamesrvObservation:
    regs = tuple(Registration("broker-a", 0 if a == A0 else 1, a) for a in addrs)
    return NamesrvObservation(addr, up, 0.001 if up else None, None, regs)


def snapshot(
    brokers: Sequence[BrokerObservation], nameservers: Sequence[NamesrvObservation] = ()
) -> ClusterSnapshot:
    nameservers = nameservers or (namesrv(NS1, A0, A1), namesrv(NS2, A0, A1))
    return ClusterSnapshot("c", 0.0, 0.0, tuple(nameservers), tuple(brokers))


def broker_config(**kw: str) -> dict[str, str]:
    values = {
        "brokerRole": "SYNC_MASTER",
        "flushDiskType": "ASYNC_FLUSH",
        "deleteWhen": "04",
        "fileReservedTime": "48",
        "namesrvAddr": f"{NS1};{NS2}",
    }
    values.update(kw)
    return values


def facts(
    snap: ClusterSnapshot,
    configs: Mapping[str, Mapping[str, str] | str],
    *,
    nameservers: tuple[str, ...] = (NS1, NS2),
) -> AdviceFacts:
    return AdviceFacts(
        nameservers=nameservers,
        brokers=BROKERS,
        snapshot=snap,
        broker_configs=configs,
        hosts={},
        consumers=ConsumerFacts(),
        max_lag_bytes={"broker-a": 1 << 20},
    )


def ids(findings: Sequence[Finding]) -> list[tuple[str, str]]:
    return [(f.id, f.severity) for f in findings]


# --- consumers -------------------------------------------------------------------------------


def group(
    name: str, clients: int, topics: Sequence[str], model: str = "CLUSTERING"
) -> ConsumerGroupView:
    return ConsumerGroupView(
        name, frozenset(f"10.1.0.{i}@c" for i in range(clients)), model, tuple(topics)
    )


TOPIC_1Q = TopicQueues("T1", {"broker-a": 1})
TOPIC_4Q = TopicQueues("T4", {"broker-a": 2, "broker-b": 2})


@pytest.mark.parametrize(
    ("groups", "routes", "errors", "expected", "text"),
    [
        # the seed's case: more consumers than queues, the extra ones idle
        ([group("G", 3, ["T1", "%RETRY%G"])], [TOPIC_1Q], (), [("consumers.idle", "warn")],
         "3 consumers online and topic T1 has 1 readable queue (broker-a: 1): 2 of them get "
         "no queue of T1 and sit idle"),
        ([group("G", 5, ["T4"])], [TOPIC_4Q], (), [("consumers.idle", "warn")],
         "has 4 readable queues (broker-a: 2, broker-b: 2): 1 of them gets no queue of T4 and "
         "sits idle"),
        # as many consumers as queues, or fewer: nothing idle
        ([group("G", 4, ["T4"]), group("H", 1, ["T1"])], [TOPIC_1Q, TOPIC_4Q], (),
         [("consumers.ok", "ok")], "2 consumer groups online, none with more consumers"),
        # broadcasting: every client reads every queue
        ([group("G", 5, ["T1"], "BROADCASTING")], [TOPIC_1Q], (), [("consumers.ok", "ok")],
         "(1 broadcasting: every client reads every queue)"),
        # the group's retry topic (one queue by design) is not counted
        ([group("G", 3, ["%RETRY%G"])], [], (), [("consumers.ok", "ok")], "1 consumer group"),
        # a group with no client online says nothing
        ([group("G", 0, ["T1"])], [TOPIC_1Q], (), [("consumers.ok", "ok")],
         "no consumer group has clients online"),
        # unreadable: a route, or the groups of a broker
        ([group("G", 2, ["T9"])], [TopicQueues("T9", error="nameserver x has no route for it")],
         (), [("consumers.unreadable", "info")],
         "could not read the route of topic T9: nameserver x has no route for it"),
        ([], [], ("subscription groups of broker-a:0: RemotingTimeout",),
         [("consumers.unreadable", "info")], "could not read consumer groups: subscription"),
    ],
)  # fmt: skip
def test_consumer_groups_with_more_consumers_than_queues(
    groups: list[ConsumerGroupView],
    routes: list[TopicQueues],
    errors: tuple[str, ...],
    expected: list[tuple[str, str]],
    text: str,
) -> None:
    found = consumer_findings(ConsumerFacts(tuple(groups), {r.topic: r for r in routes}, errors))
    assert ids(found) == expected
    assert text in found[0].message, found[0].message


def test_the_idle_consumers_fix_names_the_queue_count_and_the_group() -> None:
    [finding] = consumer_findings(ConsumerFacts((group("G", 3, ["T1"]),), {"T1": TOPIC_1Q}))
    assert finding.subject == "consumer group G"
    assert "at least 3 readable queues in all" in finding.fix
    assert "`mqadmin updateTopic -c CLUSTER -t T1 -r 3 -w 3`" in finding.fix
    assert "or run at most 1 consumer in G" in finding.fix
    # spread over the topic's broker groups: 5 consumers, 2 groups -> 3 queues on each
    facts = ConsumerFacts((group("G", 5, ["T4"]),), {"T4": TOPIC_4Q}, cluster_name="XdCluster")
    [finding] = consumer_findings(facts)
    assert "`mqadmin updateTopic -c XdCluster -t T4 -r 3 -w 3` (3 read and write queues on " in (
        finding.fix
    )
    assert "or run at most 4 consumers in G" in finding.fix


# --- replication and flush ---------------------------------------------------------------------

RUNTIME = {"putTps": "10.0 20.0 5.0", "putMessageAverageSize": "512.0"}


@pytest.mark.parametrize(
    ("master", "slave", "config", "expected", "text"),
    [
        # the seed's recommendation
        (observation(0, A0, role="SYNC_MASTER"), observation(1, A1), broker_config(),
         [("replication.ok", "ok")], "SYNC_MASTER with ASYNC_FLUSH (the seed's recommendation)"),
        # ASYNC_MASTER: the slave's lag now, in bytes and in seconds of writes
        (observation(0, A0, offset=5096, runtime=RUNTIME), observation(1, A1),
         broker_config(brokerRole="ASYNC_MASTER"), [("replication.async-master", "warn")],
         "Now: broker-a:1 is 4096 bytes behind, ~0.80 s of writes at 10.0 msg/s x 512 B (the "
         "master's last 10 s)"),
        (observation(0, A0, runtime=RUNTIME), observation(1, A1),
         broker_config(brokerRole="ASYNC_MASTER"), [("replication.async-master", "warn")],
         "is 0 bytes behind at 10.0 msg/s x 512 B (the master's last 10 s): the window is what "
         "it has not copied yet"),
        (observation(0, A0, offset=2000, runtime={"putTps": "0.0 0.0 0.0",
                                                  "putMessageAverageSize": "300.0"}),
         observation(1, A1), broker_config(brokerRole="ASYNC_MASTER"),
         [("replication.async-master", "warn")],
         "1000 bytes behind (no writes in the master's last 10 s"),
        # an empty window is skipped for the next one
        (observation(0, A0, offset=2000, runtime={"putTps": " 4.0 ",
                                                  "putMessageAverageSize": "250.0"}),
         observation(1, A1), broker_config(brokerRole="ASYNC_MASTER"),
         [("replication.async-master", "warn")],
         "~1.00 s of writes at 4.0 msg/s x 250 B (the master's last 60 s)"),
        # a fresh master has no 10 s window yet: putTps is "  "
        (observation(0, A0, runtime={"putTps": "  ", "putMessageAverageSize": "0.0"}),
         observation(1, A1), broker_config(brokerRole="ASYNC_MASTER"),
         [("replication.async-master", "warn")], "(the master reports no put rate yet)"),
        (observation(0, A0), observation(1, A1, up=False),
         broker_config(brokerRole="ASYNC_MASTER"), [("replication.async-master", "warn")],
         "broker-a:1 does not answer: all written since it stopped copying is at risk"),
        # SYNC_FLUSH: slower than the seed's choice, said as information
        (observation(0, A0, role="SYNC_MASTER"), observation(1, A1),
         broker_config(flushDiskType="SYNC_FLUSH"), [("replication.sync-flush", "info")],
         "with a SYNC_MASTER a slave already holds each acknowledged write"),
        (observation(0, A0), observation(1, A1),
         broker_config(brokerRole="ASYNC_MASTER", flushDiskType="SYNC_FLUSH"),
         [("replication.async-master", "warn"), ("replication.sync-flush", "info")],
         "is ASYNC_MASTER"),
        # the master's config cannot be read: said, not skipped
        (observation(0, A0, up=False), observation(1, A1), "it does not answer",
         [("replication.unreadable", "info")], "could not be read (it does not answer)"),
    ],
)  # fmt: skip
def test_replication_and_flush_modes(
    master: BrokerObservation,
    slave: BrokerObservation,
    config: Mapping[str, str] | str,
    expected: list[tuple[str, str]],
    text: str,
) -> None:
    found = replication_findings(facts(snapshot([master, slave]), {"broker-a:0": config}))
    assert ids(found) == expected
    assert text in found[0].message, found[0].message


def test_async_master_names_the_failover_bound_and_the_fix() -> None:
    [finding] = replication_findings(
        facts(snapshot([observation(0, A0), observation(1, A1)]),
              {"broker-a:0": broker_config(brokerRole="ASYNC_MASTER")})
    )  # fmt: skip
    assert finding.subject == "group broker-a"
    assert "(up to max_lag_bytes=1048576)" in finding.message
    assert finding.fix.startswith(
        "set brokerRole=SYNC_MASTER in /opt/rmq/conf/broker-a-0.properties and restart"
    )
    assert not finding.blocks_failover


def test_a_group_without_slaves_has_no_replication_finding() -> None:
    lone = AdviceFacts(
        (NS1, NS2), BROKERS[:1], snapshot([observation(0, A0)]),
        {"broker-a:0": broker_config(brokerRole="ASYNC_MASTER")}, {}, ConsumerFacts(), {},
    )  # fmt: skip
    assert replication_findings(lone) == []


# --- nameservers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "nameservers", "slave_config", "expected", "text"),
    [
        ((NS1, NS2), (namesrv(NS1, A0, A1), namesrv(NS2, A0, A1)), broker_config(),
         [("nameservers.ok", "ok")], "2 configured; every answering broker is registered on all 2"),
        ((NS1,), (namesrv(NS1, A0, A1),), broker_config(), [("nameservers.single", "warn")],
         "only 1 nameserver configured (10.0.0.9:9876)"),
        # the slave's namesrvAddr lacks the second nameserver: the cause and its fix
        ((NS1, NS2), (namesrv(NS1, A0, A1), namesrv(NS2, A0)), broker_config(namesrvAddr=NS1),
         [("nameservers.partial-registration", "warn")],
         "registered on 1 of 2 answering nameservers, not on 10.0.0.10:9876; its "
         "namesrvAddr=10.0.0.9:9876 does not list 10.0.0.10:9876"),
        # listed but missing: a nameserver that restarted, or a network problem
        ((NS1, NS2), (namesrv(NS1, A0, A1), namesrv(NS2, A0)), broker_config(),
         [("nameservers.partial-registration", "warn")],
         "(a nameserver restarted within 30 s has not heard from it yet)"),
        # a nameserver down is not a partial registration (check's nameserver lines say it)
        ((NS1, NS2), (namesrv(NS1, A0, A1), namesrv(NS2, up=False)), broker_config(),
         [("nameservers.ok", "ok")], "registered on all 1 answering"),
    ],
)  # fmt: skip
def test_nameserver_count_and_registrations(
    configured: tuple[str, ...],
    nameservers: tuple[NamesrvObservation, ...],
    slave_config: Mapping[str, str],
    expected: list[tuple[str, str]],
    text: str,
) -> None:
    snap = snapshot([observation(0, A0), observation(1, A1)], nameservers)
    configs = {"broker-a:0": broker_config(), "broker-a:1": slave_config}
    found = nameserver_findings(facts(snap, configs, nameservers=configured))
    assert ids(found) == expected
    assert text in found[0].message, found[0].message


def test_a_partial_registration_fix_adds_the_missing_nameserver() -> None:
    snap = snapshot([observation(0, A0), observation(1, A1)],
                    (namesrv(NS1, A0, A1), namesrv(NS2, A0)))  # fmt: skip
    configs = {"broker-a:1": broker_config(namesrvAddr=NS1)}
    [finding] = nameserver_findings(facts(snap, configs))
    assert finding.subject == "broker-a:1"
    assert finding.fix == (
        "add 10.0.0.10:9876 to namesrvAddr in /opt/rmq/conf/broker-a-1.properties and restart "
        "the broker"
    )


def test_a_broker_that_does_not_answer_is_not_a_partial_registration() -> None:
    snap = snapshot([observation(0, A0), observation(1, A1, up=False)],
                    (namesrv(NS1, A0), namesrv(NS2, A0)))  # fmt: skip
    assert ids(nameserver_findings(facts(snap, {}))) == [("nameservers.ok", "ok")]


# --- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (setup(0, "10.0.0.1:10911", "s1"), setup(1, "10.0.0.1:10921", "s2"), "both at 10.0.0.1"),
        (setup(0, "127.0.0.1:10911", "s1"), setup(1, "127.0.0.2:10911", "s2"),
         "both on loopback addresses (127.0.0.1, 127.0.0.2)"),
        (setup(0, "[::1]:10911", "s1"), setup(1, "localhost:10911", "s2"),
         "both on loopback addresses (::1, localhost)"),
        (setup(0, A0, "local", "local"), setup(1, A1, "local", "local"), "both on [hosts.local]"),
        (setup(0, A0, "l1", "local"), setup(1, A1, "l2", "local"),
         "[hosts.l1] and [hosts.l2] both reach this machine"),
        (setup(0, A0, "c1", "docker:/var/run/docker.sock"),
         setup(1, A1, "c2", "docker:/var/run/docker.sock"),
         "[hosts.c1] and [hosts.c2] both reach docker:/var/run/docker.sock"),
        (setup(0, A0, "s1", "ssh:10.0.0.1:22"), setup(1, A1, "s2", "ssh:10.0.0.1:22"),
         "both reach ssh:10.0.0.1:22"),
        # apart: different addresses, different machines
        (setup(0, A0, "s1"), setup(1, A1, "s2"), None),
        (setup(0, "broker-a.example:10911", "s1"), setup(1, "broker-b.example:10911", "s2"),
         None),
    ],
)  # fmt: skip
def test_which_brokers_share_a_machine(a: BrokerSetup, b: BrokerSetup, why: str | None) -> None:
    found = same_machine(a, b)
    assert (found is None) if why is None else (found is not None and why in found), found


def test_a_slave_on_its_masters_machine_is_a_warning_and_apart_is_ok() -> None:
    snap = snapshot([observation(0, A0), observation(1, A1)])
    assert ids(host_findings(BROKERS, snap)) == [("hosts.ok", "ok")]
    together = (setup(0, "10.0.0.1:10911", "s1"), setup(1, "10.0.0.1:10921", "s1"))
    [finding] = host_findings(together, snap)
    assert (finding.id, finding.severity, finding.subject) == (
        "hosts.slave-with-master",
        "warn",
        "broker-a:1",
    )
    assert "one machine failure (power, disk, kernel) takes both" in finding.message


def test_the_master_is_the_one_answering_as_master_after_a_failover() -> None:
    """After a failover broker-a:1 is the master: the pair is still (master, the other)."""
    together = (setup(0, "10.0.0.1:10911", "s1"), setup(1, "10.0.0.1:10921", "s1"))
    snap = snapshot(
        [
            observation(0, together[0].addr, up=False),
            observation(1, together[1].addr, role="SYNC_MASTER"),
        ]
    )
    [finding] = host_findings(together, snap)
    assert finding.subject == "broker-a:0" and "its master broker-a:1" in finding.message


# --- JVM memory --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("256m", 256 * MIB), ("8g", 8 * GIB), ("8G", 8 * GIB), ("1048576", MIB), ("64k", 65536),
     ("1t", 1 << 40), ("12mb", None), ("", None), ("m", None), ("-1g", None)],
)  # fmt: skip
def test_java_sizes(text: str, size: int | None) -> None:
    assert parse_java_size(text) == size


SANDBOX_ARGV = (
    "/usr/bin/java", "--add-opens=java.base/java.nio=ALL-UNNAMED", "-Xms256m", "-Xmx256m",
    "-XX:MaxDirectMemorySize=256m", "-XX:-UsePerfData", "-cp", "/opt/rmq/lib/*",
    "org.apache.rocketmq.broker.BrokerStartup", "-c", "/opt/rmq/conf/broker-a-0.properties",
)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "memory"),
    [
        (SANDBOX_ARGV, JavaMemory(256 * MIB, 256 * MIB, 256 * MIB)),
        # runbroker.sh's JAVA_OPT: the last of each wins, as in the JVM
        (("java", "-server", "-Xms8g", "-Xmx8g", "-Xmn4g", "-Xms528m", "-Xmx528m",
          "-XX:MaxDirectMemorySize=15g", "-cp", ".:/opt/lib",
          "org.apache.rocketmq.broker.BrokerStartup"),
         JavaMemory(528 * MIB, 528 * MIB, 15 * GIB)),
        (("java", "-XX:MaxHeapSize=2g", "-XX:InitialHeapSize=1g", "-XX:MaxRAMPercentage=50.0",
          "Main"), JavaMemory(2 * GIB, GIB, None, 50.0)),
        # the program's own arguments (after the main class) are not JVM options
        (("java", "-Xmx1g", "Main", "-Xmx9g", "-XX:MaxDirectMemorySize=9g"),
         JavaMemory(GIB, None, None)),
        # a -cp value that looks like an option is skipped with -cp
        (("java", "-cp", "-Xmx9g", "-Xmx1g", "Main"), JavaMemory(GIB, None, None)),
        (("java", "Main"), JavaMemory()),
    ],
)  # fmt: skip
def test_java_memory_options(argv: tuple[str, ...], memory: JavaMemory) -> None:
    assert java_memory(argv) == memory


def test_the_broker_process_is_found_by_its_properties_file() -> None:
    absolute = JvmProcess(11, "/", SANDBOX_ARGV)
    relative = JvmProcess(
        12, "/opt/rmq", ("java", "Main", "-c", "conf/../conf/broker-a-1.properties")
    )
    long_form = JvmProcess(13, "", ("java", "Main", "--configFile=/etc/b.properties"))
    no_cwd = JvmProcess(14, "", ("java", "Main", "-c", "conf/broker-a-1.properties"))
    procs = [no_cwd, absolute, relative, long_form]
    assert find_broker_process(procs, "/opt/rmq/conf/broker-a-0.properties") == absolute
    assert find_broker_process(procs, "/opt/rmq/conf/broker-a-1.properties") == relative
    assert find_broker_process(procs, "/etc/b.properties") == long_form
    assert find_broker_process(procs, "/opt/rmq/conf/broker-b-0.properties") is None


def test_a_host_scan_is_read_back() -> None:
    text = (
        "memtotal 24683584\n"
        "pid 17224\ncwd /work\narg /usr/bin/java\narg -Xmx256m\narg with space\n"
        "pid 17228\ncwd \narg java\n"
        "stray line\n"
    )
    scan = parse_host_scan("local", text)
    assert scan == HostScan(
        "local",
        (
            JvmProcess(17224, "/work", ("/usr/bin/java", "-Xmx256m", "with space")),
            JvmProcess(17228, "", ("java",)),
        ),
        24683584 * 1024,
    )
    assert parse_host_scan("h", "") == HostScan("h")


def _scan(*argv: str, mem: int | None = 16 * GIB, error: str | None = None) -> dict[str, HostScan]:
    procs = (JvmProcess(7, "/", ("java", *argv, "Main", "-c", BROKERS[0].properties)),)
    return {"server1": HostScan("server1", procs if error is None else (), mem, error)}


@pytest.mark.parametrize(
    ("scans", "expected", "text"),
    [
        (_scan("-Xms4g", "-Xmx4g", "-XX:MaxDirectMemorySize=4g"), [("jvm.ok", "ok")],
         "heap 4 GiB (-Xms = -Xmx), direct memory 4 GiB, RAM 16 GiB (pid 7 on host server1)"),
        (_scan("-Xms10g", "-Xmx10g", "-XX:MaxDirectMemorySize=2g"),
         [("jvm.heap-over-half-ram", "warn")],
         "heap 10 GiB is more than half of the machine's 16 GiB RAM"),
        (_scan("-Xms1g", "-Xmx4g", "-XX:MaxDirectMemorySize=4g"), [("jvm.xms-not-xmx", "warn")],
         "-Xms 1 GiB differs from -Xmx 4 GiB"),
        (_scan("-XX:MaxDirectMemorySize=1g"),
         [("jvm.xms-not-xmx", "warn")], "no -Xms or -Xmx: the JVM sizes the heap from RAM"),
        (_scan("-Xms4g", "-Xmx4g"), [("jvm.direct-memory-unset", "warn")],
         "no -XX:MaxDirectMemorySize"),
        (_scan("-Xms6g", "-Xmx6g", "-XX:MaxDirectMemorySize=15g"),
         [("jvm.memory-over-ram", "warn")],
         "heap 6 GiB + direct memory 15 GiB = 21 GiB exceeds the machine's 16 GiB RAM"),
        # everything at once: the sandbox slave the integration test builds
        (_scan("-Xms128m", "-Xmx10g"),
         [("jvm.heap-over-half-ram", "warn"), ("jvm.xms-not-xmx", "warn"),
          ("jvm.direct-memory-unset", "warn"), ("jvm.memory-over-ram", "warn")],
         "heap 10 GiB is more than half"),
        # what could not be read is said
        (_scan(error="host server1: ssh: connection refused"), [("jvm.unreadable", "info")],
         "could not read processes on host server1 (host server1: ssh: connection refused)"),
        ({"server1": HostScan("server1", (JvmProcess(9, "/", ("java", "Main", "-c", "/x")),),
                              GIB)},
         [("jvm.unreadable", "info")],
         "no BrokerStartup process on host server1 was started with -c "
         "/opt/rmq/conf/broker-a-0.properties (1 other BrokerStartup process there)"),
        (_scan("-Xms4g", "-Xmx4g", "-XX:MaxDirectMemorySize=4g", mem=None),
         [("jvm.unreadable", "info")], "no readable /proc/meminfo"),
    ],
)  # fmt: skip
def test_broker_heap_and_direct_memory_against_the_machine(
    scans: dict[str, HostScan], expected: list[tuple[str, str]], text: str
) -> None:
    found = jvm_findings(BROKERS[:1], scans)
    assert ids(found) == expected
    assert text in found[0].message, found[0].message
    assert all(f.fix for f in found if f.severity == "warn")


def test_a_host_not_scanned_is_said() -> None:
    [finding] = jvm_findings(BROKERS[1:], {})
    assert finding.id == "jvm.unreadable" and "not asked" in finding.message


def test_the_host_scan_finds_a_process_on_this_machine(tmp_path: Path) -> None:
    """The real script through the real local backend: a process whose command line names
    BrokerStartup and a relative -c is found, with its working directory."""
    (tmp_path / "fake-broker.sh").write_text("sleep 60\n")
    properties = tmp_path / "conf" / "b.properties"
    proc = subprocess.Popen(
        ["sh", "fake-broker.sh", "-Xmx64m", "org.apache.rocketmq.broker.BrokerStartup",
         "-c", "conf/b.properties"],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        scan = asyncio.run(scan_host("local", LocalBackend("local")))
    finally:
        proc.kill()
        proc.wait()
    assert scan.error is None and scan.mem_total_bytes is not None and scan.mem_total_bytes > 0
    found = find_broker_process(scan.processes, str(properties))
    assert found is not None and found.pid == proc.pid and found.cwd == str(tmp_path)
    assert found.argv[-3:] == (
        "org.apache.rocketmq.broker.BrokerStartup",
        "-c",
        "conf/b.properties",
    )
    # the scan's own shell and grep name the class too, and are not listed
    assert all("org.apache.rocketmq.broker.BrokerStartup" in p.argv for p in scan.processes)


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slave_config", "expected", "text"),
    [
        (broker_config(), [("retention.ok", "ok")],
         "deleteWhen=04 fileReservedTime=48 on the master and every slave"),
        (broker_config(fileReservedTime="72"), [("retention.differs", "warn")],
         "fileReservedTime=72 (master 48) differs from its master broker-a:0"),
        (broker_config(deleteWhen="02", fileReservedTime="72"), [("retention.differs", "warn")],
         "deleteWhen=02 (master 04) and fileReservedTime=72 (master 48) differ"),
        ("RemotingTimeout: no reply", [("retention.unreadable", "info")],
         "its config could not be read (RemotingTimeout: no reply)"),
    ],
)  # fmt: skip
def test_retention_between_master_and_slave(
    slave_config: Mapping[str, str] | str, expected: list[tuple[str, str]], text: str
) -> None:
    snap = snapshot([observation(0, A0), observation(1, A1)])
    found = retention_findings(
        facts(snap, {"broker-a:0": broker_config(), "broker-a:1": slave_config})
    )
    assert ids(found) == expected
    assert text in found[0].message, found[0].message


def test_a_retention_fix_names_both_files() -> None:
    snap = snapshot([observation(0, A0), observation(1, A1)])
    configs = {"broker-a:0": broker_config(), "broker-a:1": broker_config(fileReservedTime="72")}
    [finding] = retention_findings(facts(snap, configs))
    assert finding.fix.startswith(
        "set the same fileReservedTime in /opt/rmq/conf/broker-a-1.properties and "
        "/opt/rmq/conf/broker-a-0.properties"
    )


# --- the config's view, the JSON form, purity ---------------------------------------------------


def test_each_host_kind_names_its_machine() -> None:
    config = parse_config(
        {
            "cluster_name": "c",
            "nameservers": [NS1],
            "hosts": {
                "here": {"kind": "local"},
                "s1": {"kind": "ssh", "address": "10.0.0.1", "user": "rmq"},
                "c1": {"kind": "docker", "container": "rmq-broker-a-1"},
            },
            "brokers": [
                {"broker_name": "broker-a", "broker_id": i, "addr": addr, "host": host,
                 "properties": f"/p{i}", "start": ["s"], "stop": ["t"]}
                for i, (addr, host) in enumerate([(A0, "here"), (A1, "s1"), ("10.0.0.3:1", "c1")])
            ],
        }
    )  # fmt: skip
    assert [b.machine for b in broker_setups(config)] == [
        "local",
        "ssh:10.0.0.1:22",
        "docker:/var/run/docker.sock",
    ]


def test_the_json_form_has_one_object_per_finding() -> None:
    findings = [
        Finding("ok", "nameservers", "2 configured", id="nameservers.ok"),
        Finding("warn", "broker-a:1", "why", id="retention.differs", fix="how"),
        Finding(
            "error", "group broker-a", "no promotable slave", True, id="group.no-promotable-slave"
        ),
    ]
    doc = findings_json(findings)
    assert doc["can_fail_over"] is False and doc["problems"] == 1
    assert doc["findings"][1] == {
        "id": "retention.differs",
        "severity": "warn",
        "subject": "broker-a:1",
        "reason": "why",
        "fix": "how",
        "blocks_failover": False,
    }
    assert doc["findings"][0]["fix"] is None
    assert findings[1].render() == "[WARN] broker-a:1: why\n       fix: how"


@pytest.mark.parametrize("module", ["_advice", "_advice_jvm", "_findings"])
def test_the_evaluation_imports_no_io(module: str) -> None:
    from tests.unit.test_layers import IO_MODULES

    path = Path(__file__).parents[2] / "watchdog" / "commands" / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level
    }
    relative = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
    }
    assert not imported & IO_MODULES
    assert relative <= {"model", "_findings", "_advice_jvm"}
