"""`check --json`'s operating advice on one real RocketMQ 4.9.7 sandbox (`--replication sync`),
changed step by step to trigger each finding, in file order:

1. as started: SYNC_MASTER + ASYNC_FLUSH, two nameservers, equal JVM settings and retention:
   none of the advice's problems, each rule's ok finding; only the slave sharing its master's
   machine (every sandbox broker is on 127.0.0.1, which check rightly says); the brokers' JVMs
   read the same through an SSH host backend as through the local one;
2. three librocketmq push consumers in one group on a topic with one queue: consumers.idle;
3. the master switched to ASYNC_MASTER (UPDATE_BROKER_CONFIG, as `mqadmin updateBrokerConfig`
   does; 4.9.7 reads the role at every write) while a librocketmq producer writes every 20 ms,
   checked with a config that lists one nameserver: replication.async-master with the slave's
   lag and the put rate, and nameservers.single; the master is switched back;
4. the slave stopped, its properties edited (fileReservedTime=72, namesrvAddr naming only the
   first nameserver) and its java command line too (-Xms128m, -Xmx 60% of RAM, no
   -XX:MaxDirectMemorySize, as an operator edits JAVA_OPT in runbroker.sh), then started:
   retention.differs, nameservers.partial-registration with its namesrvAddr as the cause, and
   the four JVM memory findings, read from the broker's process on this host.
Run with -s for the times.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.conftest import start_sandbox, stop_sandbox
from tests.sshd import SshdServer
from watchdog.commands._advice_gather import scan_host
from watchdog.commands._advice_jvm import HostScan, JavaMemory, find_broker_process, java_memory
from watchdog.hosts import LocalBackend, SshBackend
from watchdog.remoting import (
    RemotingClient,
    RemotingError,
    create_topic,
    get_broker_runtime_info,
    get_cluster_info,
    get_consumer_connection,
    update_broker_config,
)
from watchdog.tools.sandbox import Sandbox

pytestmark = pytest.mark.integration

T = TypeVar("T")
MASTER, SLAVE = "broker-a:0", "broker-a:1"
TOPIC, GROUP = "AdviceOneQueueTopic", "AdviceIdleCG"
CONSUMERS = 3
# Problems the advice can report; the healthy sandbox has none of them.
PROBLEMS = {
    "consumers.idle",
    "consumers.unreadable",
    "replication.async-master",
    "replication.sync-flush",
    "replication.unreadable",
    "nameservers.single",
    "nameservers.partial-registration",
    "jvm.heap-over-half-ram",
    "jvm.xms-not-xmx",
    "jvm.direct-memory-unset",
    "jvm.memory-over-ram",
    "jvm.unreadable",
    "retention.differs",
    "retention.unreadable",
}

# N librocketmq push consumers of one group in one process: each its own client instance
# (instance name), so the broker lists N connections, as it would for N processes.
_CONSUMERS_CHILD = """
import sys, time
from rocketmq.client import PushConsumer
namesrv, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumers = []
for i in range(count):
    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    consumer.set_instance_name(f"advice-{i}")
    consumer.set_thread_count(1)
    consumer.subscribe(topic, lambda message: None)
    consumer.start()
    consumers.append(consumer)
print("started", flush=True)
sys.stdin.read()  # until the test closes stdin or kills this process
"""

# A librocketmq producer writing a message every 20 ms until killed: writes flowing while check
# reads the master's put rate (its 10 s and 60 s windows).
_PRODUCER_CHILD = """
import sys, time
from rocketmq.client import Message, Producer
producer = Producer("AdviceWritersPG")
producer.set_namesrv_addr(sys.argv[1])
producer.start()
first = True
while True:
    message = Message(sys.argv[2])
    message.set_body("x" * 300)
    producer.send_sync(message)
    if first:
        print("sending", flush=True)
        first = False
    time.sleep(0.02)
"""


def timed(what: str, started: float) -> None:
    print(f"[check advice timing] {what}: {time.monotonic() - started:.1f} s")


def wait_until(probe: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None:
            return last
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds} s: {what} (last: {last!r})")


def call(addr: str, make: Callable[[RemotingClient], Any]) -> Any:
    async def run() -> Any:
        client = RemotingClient(addr)
        try:
            return await make(client)
        finally:
            await client.close()

    return asyncio.run(run())


def check_json(config: Path) -> dict[str, Any]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    timed("check --json", started)
    assert result.returncode in (0, 1), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    assert (result.returncode == 0) == doc["can_fail_over"], result.stdout
    return doc


def found(doc: dict[str, Any], finding_id: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["id"] == finding_id]


def one(doc: dict[str, Any], finding_id: str, subject: str) -> dict[str, Any]:
    matches = [f for f in found(doc, finding_id) if f["subject"] == subject]
    others = [
        (f["id"], f["subject"], f["reason"]) for f in doc["findings"] if f["severity"] != "ok"
    ]
    assert len(matches) == 1, (finding_id, subject, others)
    assert matches[0]["reason"]
    if matches[0]["severity"] == "warn":
        assert matches[0]["fix"], matches[0]
    return matches[0]


def problems(doc: dict[str, Any]) -> set[str]:
    return {f["id"] for f in doc["findings"]} & PROBLEMS


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("sandbox-advice")
    started = time.monotonic()
    try:
        yield start_sandbox(directory, replication="sync")
    finally:
        timed("module (sandbox up to down)", started)
        stop_sandbox(directory)


def addrs(sandbox: Sandbox) -> dict[str, str]:
    info = sandbox.info()
    out = {f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in info["brokers"]}
    out.update({f"ns{i}": n["addr"] for i, n in enumerate(info["nameservers"])})
    return out


def test_the_sandbox_as_started_has_none_of_the_advice_problems(sandbox: Sandbox) -> None:
    doc = check_json(sandbox.config_path)
    assert doc["can_fail_over"] is True and doc["problems"] == 0
    assert problems(doc) == set()
    assert "SYNC_MASTER with ASYNC_FLUSH" in one(doc, "replication.ok", "group broker-a")["reason"]
    assert one(doc, "nameservers.ok", "nameservers")["reason"].startswith("2 configured")
    assert one(doc, "consumers.ok", "consumer groups")
    for key in (MASTER, SLAVE):
        jvm = one(doc, "jvm.ok", key)["reason"]
        assert jvm.startswith("heap 256 MiB (-Xms = -Xmx), direct memory 256 MiB, RAM "), jvm
    assert "fileReservedTime=48" in one(doc, "retention.ok", "group broker-a")["reason"]
    # the one advice a single-machine sandbox cannot meet, and says so
    shared = one(doc, "hosts.slave-with-master", SLAVE)
    assert "both at 127.0.0.1" in shared["reason"] and not shared["blocks_failover"]


def test_the_host_scan_reads_the_brokers_over_ssh_too(
    sandbox: Sandbox, sshd_host: SshdServer
) -> None:
    """check's JVM rules read the broker's java command line on its host: through an SshBackend
    (a real sshd on 127.0.0.1, so this same machine) the scan finds the process the local
    backend finds, and the same memory."""

    async def both() -> tuple[HostScan, HostScan]:
        ssh = SshBackend("box-ssh", sshd_host.ssh_host)
        try:
            return await asyncio.gather(
                scan_host("box-ssh", ssh), scan_host("local", LocalBackend("local"))
            )
        finally:
            await ssh.close()

    over_ssh, local = asyncio.run(both())
    assert over_ssh.error is None, over_ssh.error
    assert over_ssh.mem_total_bytes == local.mem_total_bytes is not None
    for key, name in ((MASTER, "broker-a.properties"), (SLAVE, "broker-a-s.properties")):
        properties = str(sandbox.dir / name)
        remote = find_broker_process(over_ssh.processes, properties)
        assert remote is not None and remote == find_broker_process(local.processes, properties)
        assert remote.pid == sandbox.pid(key)
        assert java_memory(remote.argv) == JavaMemory(256 << 20, 256 << 20, 256 << 20)


def test_more_push_consumers_than_queues_leave_the_extra_ones_idle(sandbox: Sandbox) -> None:
    a = addrs(sandbox)
    call(a[MASTER], lambda c: create_topic(c, TOPIC, read_queue_nums=1, write_queue_nums=1,
                                           timeout_seconds=5))  # fmt: skip
    namesrv = f"{a['ns0']};{a['ns1']}"
    with subprocess.Popen(
        [sys.executable, "-c", _CONSUMERS_CHILD, namesrv, TOPIC, GROUP, str(CONSUMERS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            started = time.monotonic()
            assert child.stdout is not None and child.stdout.readline().strip() == "started"

            def online() -> int | None:
                connection = call(
                    a[MASTER], lambda c: get_consumer_connection(c, GROUP, timeout_seconds=5)
                )
                count = 0 if connection is None else len(connection.client_ids)
                return count if count == CONSUMERS else None

            wait_until(online, 60, f"{CONSUMERS} consumers of {GROUP} online on {MASTER}")
            timed("push consumers online", started)
            doc = check_json(sandbox.config_path)
        finally:
            child.kill()
    idle = one(doc, "consumers.idle", f"consumer group {GROUP}")
    assert idle["severity"] == "warn" and not idle["blocks_failover"]
    assert idle["reason"].startswith(
        f"3 consumers online and topic {TOPIC} has 1 readable queue (broker-a: 1): 2 of them get "
        f"no queue of {TOPIC} and sit idle"
    ), idle["reason"]
    assert (
        f"-c XdclassCluster -t {TOPIC} -r 3 -w 3" in idle["fix"]
        and f"at most 1 consumer in {GROUP}" in idle["fix"]
    )
    assert doc["can_fail_over"] is True


def test_an_async_master_reports_its_loss_window_and_one_nameserver_is_too_few(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    a = addrs(sandbox)

    def writes_sampled() -> str | None:
        # putTps is "10s 60s 600s": each window empty until the store has sampled that long
        # (once a second); the producer's writes show from the next sample on
        tps = call(a[MASTER], lambda c: get_broker_runtime_info(c, timeout_seconds=5))["putTps"]
        return tps if float(tps.split(" ")[0] or 0) > 0 else None

    set_role = update_broker_config
    call(a[MASTER], lambda c: set_role(c, {"brokerRole": "ASYNC_MASTER"}, timeout_seconds=5))
    namesrv = f"{a['ns0']};{a['ns1']}"
    try:
        with subprocess.Popen(
            [sys.executable, "-c", _PRODUCER_CHILD, namesrv, "AdviceWrites"],
            stdout=subprocess.PIPE,
            text=True,
        ) as writer:
            try:
                assert writer.stdout is not None and writer.stdout.readline().strip() == "sending"
                wait_until(writes_sampled, 60, f"{MASTER}'s 10 s put rate above 0")
                text = sandbox.config_path.read_text()
                single = tmp_path / "watchdog.toml"
                single.write_text(
                    re.sub(r"(?m)^nameservers = .*$", f'nameservers = ["{a["ns0"]}"]', text)
                )
                doc = check_json(single)
            finally:
                writer.kill()
    finally:
        call(a[MASTER], lambda c: set_role(c, {"brokerRole": "SYNC_MASTER"}, timeout_seconds=5))
    window = one(doc, "replication.async-master", "group broker-a")
    assert window["reason"].startswith("master broker-a:0 is ASYNC_MASTER: it acknowledges a write")
    assert "(up to max_lag_bytes=1048576)" in window["reason"]
    # the slave's lag in bytes now, and the master's put rate it is measured against
    assert re.search(
        r"Now: broker-a:1 is \d+ bytes behind[ ,].* msg/s x \d+ B", window["reason"]
    ), window["reason"]
    assert window["fix"].startswith(
        f"set brokerRole=SYNC_MASTER in {sandbox.dir}/broker-a.properties"
    )
    assert not found(doc, "replication.ok")
    single_ns = one(doc, "nameservers.single", "nameservers")
    assert single_ns["reason"].startswith(f"only 1 nameserver configured ({a['ns0']})")
    assert doc["can_fail_over"] is True


def _restart_slave_changed(sandbox: Sandbox, ns0: str) -> None:
    """Stop the slave (it unregisters from every nameserver), change its properties and its
    java command line (sandbox.json keeps the argv `sandbox start` runs), start it again."""
    sandbox.stop(SLAVE)
    properties = sandbox.dir / "broker-a-s.properties"
    text = properties.read_text()
    text = text.replace("fileReservedTime=48", "fileReservedTime=72")
    text = re.sub(r"(?m)^namesrvAddr=.*$", f"namesrvAddr={ns0}", text)
    properties.write_text(text)
    ram_kib = int(re.findall(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())[0])
    xmx = f"-Xmx{ram_kib * 6 // 10 // 1024}m"
    state_path = sandbox.dir / "sandbox.json"
    state = json.loads(state_path.read_text())
    record = state["processes"]["broker-a-1"]
    record["argv"] = [
        "-Xms128m" if arg.startswith("-Xms") else xmx if arg.startswith("-Xmx") else arg
        for arg in record["argv"]
        if not arg.startswith("-XX:MaxDirectMemorySize=")
    ]
    state_path.write_text(json.dumps(state))
    sandbox.start(SLAVE)  # not registered on the second nameserver: nothing to wait for there


def test_a_slave_restarted_with_other_settings(sandbox: Sandbox) -> None:
    a = addrs(sandbox)
    started = time.monotonic()
    _restart_slave_changed(sandbox, a["ns0"])

    def registered() -> bool | None:
        info = call(a["ns0"], lambda c: get_cluster_info(c, timeout_seconds=5))
        return True if a[SLAVE] in info.broker_addrs.get("broker-a", {}).values() else None

    wait_until(registered, 60, f"{SLAVE} registered on {a['ns0']}")

    def answers_within_the_probe_timeout() -> bool | None:
        # A JVM just started can miss check's 0.8 s probe timeout for its first requests (check
        # then says the slave does not answer, rightly): warm it up first.
        try:
            for _ in range(3):
                call(a[SLAVE], lambda c: get_broker_runtime_info(c, timeout_seconds=0.8))
        except RemotingError:
            return None
        return True

    wait_until(answers_within_the_probe_timeout, 60, f"{SLAVE} answering within 0.8 s")
    timed("slave restarted, registered and answering", started)
    doc = check_json(sandbox.config_path)

    retention = one(doc, "retention.differs", SLAVE)
    assert retention["reason"].startswith(
        "fileReservedTime=72 (master 48) differs from its master broker-a:0"
    ), retention["reason"]
    assert f"{sandbox.dir}/broker-a-s.properties" in retention["fix"]

    partial = one(doc, "nameservers.partial-registration", SLAVE)
    assert partial["reason"].startswith(
        f"registered on 1 of 2 answering nameservers, not on {a['ns1']}; its "
        f"namesrvAddr={a['ns0']} does not list {a['ns1']}"
    ), partial["reason"]
    assert partial["fix"].startswith(f"add {a['ns1']} to namesrvAddr in ")

    heap = one(doc, "jvm.heap-over-half-ram", SLAVE)["reason"]
    assert "is more than half of the machine's" in heap and "on host local" in heap
    assert one(doc, "jvm.xms-not-xmx", SLAVE)["reason"].startswith(
        "-Xms 128 MiB differs from -Xmx "
    )
    assert one(doc, "jvm.direct-memory-unset", SLAVE)
    assert "direct memory up to the heap size" in one(doc, "jvm.memory-over-ram", SLAVE)["reason"]
    # the master kept its settings
    assert one(doc, "jvm.ok", MASTER)
    assert not {f["id"] for f in doc["findings"] if f["subject"] == MASTER} & PROBLEMS
    assert doc["can_fail_over"] is True
