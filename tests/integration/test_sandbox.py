"""The sandbox on real RocketMQ JVMs: up, kill -9, restart, graceful stop, role rewrite, down."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import sandbox_cli
from watchdog.config import load_config
from watchdog.model import PropertiesFile
from watchdog.remoting import RemotingClient, get_cluster_info
from watchdog.tools.sandbox import Sandbox

pytestmark = pytest.mark.integration

NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"


def proc_state(pid: int) -> str | None:
    """The /proc state letter of pid, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()[0]


def is_live_java(pid: int, main_class: str, properties: str) -> bool:
    state = proc_state(pid)
    if state is None or state in "ZX":
        return False
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return os.path.basename(argv[0]) == "java" and main_class in argv and properties in argv


def is_gone(pid: int, main_class: str, properties: str) -> bool:
    """Dead (or a zombie nobody reaps), and the pid is not our java process again."""
    return not is_live_java(pid, main_class, properties)


def registrations(nameservers: list[str]) -> dict[str, Mapping[str, Mapping[int, str]]]:
    async def one(addr: str) -> Mapping[str, Mapping[int, str]]:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return (await get_cluster_info(client, timeout_seconds=3.0)).broker_addrs
        finally:
            await client.close()

    async def every() -> dict[str, Mapping[str, Mapping[int, str]]]:
        tables = await asyncio.gather(*(one(a) for a in nameservers))
        return dict(zip(nameservers, tables, strict=True))

    return asyncio.run(every())


def ids_of(sandbox: Sandbox, broker_name: str) -> dict[str, dict[int, str]]:
    """broker_name's {brokerId: addr} as each nameserver lists it."""
    nameservers = [n["addr"] for n in sandbox.info()["nameservers"]]
    return {ns: dict(t.get(broker_name, {})) for ns, t in registrations(nameservers).items()}


def wait_for(predicate: Callable[[], Any], timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}; last: {last}")


def broker_entry(sandbox: Sandbox, key: str) -> dict[str, Any]:
    name, broker_id = key.split(":")
    for b in sandbox.info()["brokers"]:
        if b["broker_name"] == name and b["broker_id"] == int(broker_id):
            entry: dict[str, Any] = b
            return entry
    raise AssertionError(f"{key} not in cluster.json")


def every_process(sandbox: Sandbox) -> list[tuple[int, str, str]]:
    """(pid, main class, -c file) of every process cluster.json records as running."""
    info = sandbox.info()
    found = [
        (n["pid"], NAMESRV_MAIN, str(sandbox.dir / f"namesrv-{i}.properties"))
        for i, n in enumerate(info["nameservers"])
    ]
    found += [(b["pid"], BROKER_MAIN, b["properties"]) for b in info["brokers"]]
    return found


def test_up_writes_cluster_json_and_every_pid_is_a_live_java(sandbox_cluster: Sandbox) -> None:
    info = sandbox_cluster.info()
    assert set(info) == {"nameservers", "brokers"}
    assert len(info["nameservers"]) == 2
    for ns in info["nameservers"]:
        assert set(ns) == {"addr", "pid", "log"}
        assert ns["addr"].startswith("127.0.0.1:") and Path(ns["log"]).is_file()
    brokers = {(b["broker_name"], b["broker_id"]): b for b in info["brokers"]}
    assert set(brokers) == {("broker-a", 0), ("broker-a", 1)}
    for b in info["brokers"]:
        assert set(b) == {"broker_name", "broker_id", "role", "addr", "pid", "properties", "log"}
    assert brokers["broker-a", 0]["role"] == "ASYNC_MASTER"
    assert brokers["broker-a", 1]["role"] == "SLAVE"
    d = sandbox_cluster.dir
    assert brokers["broker-a", 0]["properties"] == str(d / "broker-a.properties")
    assert brokers["broker-a", 1]["properties"] == str(d / "broker-a-s.properties")
    for pid, main_class, props in every_process(sandbox_cluster):
        assert isinstance(pid, int) and is_live_java(pid, main_class, props), (pid, main_class)

    # Every broker registered on every nameserver, under its own loopback address.
    expected = {0: brokers["broker-a", 0]["addr"], 1: brokers["broker-a", 1]["addr"]}
    assert ids_of(sandbox_cluster, "broker-a") == {
        ns["addr"]: expected for ns in info["nameservers"]
    }
    # The broker's remoting port answers on loopback.
    with socket.create_connection(("127.0.0.1", int(expected[0].split(":")[1])), timeout=2):
        pass

    # The watchdog config written beside it describes exactly this cluster.
    config = load_config(sandbox_cluster.config_path)
    assert config.cluster_name == "XdclassCluster"
    assert list(config.nameservers) == [n["addr"] for n in info["nameservers"]]
    assert {(b.broker_name, b.broker_id, b.addr, b.properties) for b in config.brokers} == {
        (b["broker_name"], b["broker_id"], b["addr"], b["properties"]) for b in info["brokers"]
    }
    assert Path(config.state_dir).parent == sandbox_cluster.dir

    status = sandbox_cli("status", "--dir", str(sandbox_cluster.dir))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 5 and sum("alive" in line for line in lines) == 4
    assert "ASYNC_MASTER" in lines[3] and "SLAVE" in lines[4]


def test_bad_process_names_are_clear_errors_with_exit_2(sandbox_cluster: Sandbox) -> None:
    pids_before = [p for p, _, _ in every_process(sandbox_cluster)]
    d = str(sandbox_cluster.dir)
    unknown = sandbox_cli("kill", "--dir", d, "--broker", "broker-z:0")
    assert unknown.returncode == 2
    assert "no broker broker-z:0" in unknown.stderr and "broker-a:0, broker-a:1" in unknown.stderr
    malformed = sandbox_cli("stop", "--dir", d, "--broker", "broker-a")
    assert malformed.returncode == 2 and "brokerName:brokerId" in malformed.stderr
    no_ns = sandbox_cli("kill", "--dir", d, "--nameserver", "7")
    assert no_ns.returncode == 2 and "no nameserver '7'" in no_ns.stderr
    both = sandbox_cli("start", "--dir", d, "--broker", "broker-a:0", "--nameserver", "0")
    assert both.returncode == 2 and "exactly one of" in both.stderr
    running = sandbox_cli("start", "--dir", d, "--broker", "broker-a:0")
    assert running.returncode == 2 and "already runs" in running.stderr
    not_a_sandbox = sandbox_cli("status", "--dir", str(sandbox_cluster.dir / "logs"))
    assert not_a_sandbox.returncode == 2 and "no cluster.json" in not_a_sandbox.stderr
    # Nothing was touched.
    assert [p for p, _, _ in every_process(sandbox_cluster)] == pids_before
    for pid, main_class, props in every_process(sandbox_cluster):
        assert is_live_java(pid, main_class, props)


def test_kill_restart_stop_rewrite_and_down(fresh_sandbox: Callable[..., Sandbox]) -> None:
    # TLS off: each JVM boot skips generating a self-signed RSA key (seconds of CPU each).
    sandbox = fresh_sandbox(tls="disabled")
    d = str(sandbox.dir)
    master, slave = broker_entry(sandbox, "broker-a:0"), broker_entry(sandbox, "broker-a:1")
    nameservers = [n["addr"] for n in sandbox.info()["nameservers"]]
    recorded = every_process(sandbox)

    # kill -9 the slave: the process is gone, cluster.json says so, the nameservers drop it.
    killed = sandbox_cli("kill", "--dir", d, "--broker", "broker-a:1")
    assert killed.returncode == 0, killed.stderr
    assert is_gone(slave["pid"], BROKER_MAIN, slave["properties"])
    assert broker_entry(sandbox, "broker-a:1")["pid"] is None
    wait_for(
        lambda: all(1 not in ids for ids in ids_of(sandbox, "broker-a").values()),
        15,
        "the nameservers to drop the killed slave",
    )

    # Start it again: it returns once the broker listens, and the broker registers again.
    started = sandbox_cli("start", "--dir", d, "--broker", "broker-a:1")
    assert started.returncode == 0, started.stderr
    new_slave = broker_entry(sandbox, "broker-a:1")
    assert new_slave["pid"] not in (None, slave["pid"])
    assert is_live_java(new_slave["pid"], BROKER_MAIN, slave["properties"])
    cmdline = Path(f"/proc/{new_slave['pid']}/cmdline").read_bytes().decode().split("\0")
    assert "-Dtls.server.mode=disabled" in cmdline  # restarted with the options of `up`
    port = int(slave["addr"].split(":")[1])
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    wait_for(
        lambda: (
            ids_of(sandbox, "broker-a")
            == {ns: {0: master["addr"], 1: slave["addr"]} for ns in nameservers}
        ),
        30,
        "the restarted slave to register on every nameserver",
    )

    # Graceful stop of the master: returns once it is gone, after RocketMQ's shutdown hook ran.
    stopped = sandbox_cli("stop", "--dir", d, "--broker", "broker-a:0")
    assert stopped.returncode == 0, stopped.stderr
    assert is_gone(master["pid"], BROKER_MAIN, master["properties"])
    assert broker_entry(sandbox, "broker-a:0")["pid"] is None
    assert "Shutdown hook over" in Path(master["log"]).read_text(errors="replace")
    assert all(0 not in ids for ids in ids_of(sandbox, "broker-a").values())

    # Rewrite the stopped slave as a master: `start` uses the file as it is now.
    assert sandbox_cli("stop", "--dir", d, "--broker", "broker-a:1").returncode == 0
    props = Path(slave["properties"])
    props.write_text(
        PropertiesFile.parse(props.read_text())
        .with_values({"brokerId": "0", "brokerRole": "ASYNC_MASTER"})
        .render()
    )
    promoted = sandbox_cli("start", "--dir", d, "--broker", "broker-a:1", "--wait-registered")
    assert promoted.returncode == 0, promoted.stderr
    assert ids_of(sandbox, "broker-a") == {ns: {0: slave["addr"]} for ns in nameservers}
    assert broker_entry(sandbox, "broker-a:1")["role"] == "ASYNC_MASTER"
    status = sandbox_cli("status", "--dir", d)
    slave_line = next(line for line in status.stdout.splitlines() if line.startswith("broker-a:1"))
    assert "alive" in slave_line and "ASYNC_MASTER" in slave_line

    # A nameserver by index and by address: killed, then started again from the same file.
    ns_before = sandbox.info()["nameservers"][1]
    ns_props = str(sandbox.dir / "namesrv-1.properties")
    assert sandbox_cli("kill", "--dir", d, "--nameserver", "1").returncode == 0
    assert is_gone(ns_before["pid"], NAMESRV_MAIN, ns_props)
    assert sandbox.info()["nameservers"][1]["pid"] is None
    restarted = sandbox_cli("start", "--dir", d, "--nameserver", ns_before["addr"])
    assert restarted.returncode == 0, restarted.stderr
    ns_after = sandbox.info()["nameservers"][1]
    assert ns_after["pid"] != ns_before["pid"]
    assert is_live_java(ns_after["pid"], NAMESRV_MAIN, ns_props)
    socket.create_connection(("127.0.0.1", int(ns_after["addr"].split(":")[1])), timeout=2).close()

    # down: every process it ever recorded is gone; down again is fine.
    running_now = every_process(sandbox)
    down = sandbox_cli("down", "--dir", d)
    assert down.returncode == 0, down.stderr
    for pid, main_class, props_path in recorded + running_now:
        if pid is not None:
            assert is_gone(pid, main_class, props_path), (pid, main_class)
    assert all(pid is None for pid, _, _ in every_process(sandbox))
    again = sandbox_cli("down", "--dir", d)
    assert again.returncode == 0 and "nothing was running" in again.stdout


def test_busy_port_is_a_clear_error_and_nothing_runs(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        if busy + 40 > 65535:
            pytest.skip("the kernel gave a port too high to test with")  # pragma: no cover
        result = sandbox_cli("up", "--dir", str(tmp_path / "sb"), "--base-port", str(busy - 1))
    assert result.returncode == 2
    assert f"port(s) {busy} on 127.0.0.1 are in use" in result.stderr
    assert not (tmp_path / "sb" / "cluster.json").exists()


def test_up_that_cannot_finish_stops_what_it_started(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    result = sandbox_cli("up", "--dir", str(directory), "--timeout", "1")
    assert result.returncode == 2
    assert "not registered after" in result.stderr or "does not listen" in result.stderr
    box = Sandbox(directory)
    # It had started JVMs before giving up (the brokers too, when they boot within the second).
    started = {p.name for p in (directory / "logs").glob("*.out")}
    assert {"namesrv-0.out", "namesrv-1.out"} <= started, started
    for pid, main_class, props in every_process(box):
        assert pid is None, (main_class, props)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and proc_state(int(entry.name)) not in (None, "Z", "X"):
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert str(directory) not in argv, f"pid {entry.name} still runs: {argv[:200]}"


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(env),
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_missing_java_and_maven_are_clear_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path / "empty-bin")
    no_java = run_cli(env, "up", "--dir", str(tmp_path / "a"))
    assert no_java.returncode == 2 and "java is not on PATH" in no_java.stderr
    assert not (tmp_path / "a").exists()
    cache = tmp_path / "cache"
    no_mvn = run_cli({**env, "RMQ_WATCHDOG_CACHE": str(cache)}, "fetch", "--version", "4.9.7")
    assert no_mvn.returncode == 2 and "mvn (Apache Maven) is not on PATH" in no_mvn.stderr
    assert not (cache / "rocketmq-4.9.7" / "COMPLETE").exists()


def test_maven_failure_is_a_clear_error_and_caches_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "RMQ_WATCHDOG_CACHE": str(cache)}
    result = run_cli(env, "fetch", "--version", "4.9.99")
    assert result.returncode == 2
    assert "Maven could not fetch RocketMQ 4.9.99" in result.stderr
    assert not (cache / "rocketmq-4.9.99" / "COMPLETE").exists()
    assert not (cache / "rocketmq-4.9.99" / "lib").exists()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) of sockets listening on port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(addr)
    return found


def test_rocketmq_5_starts_and_registers(fresh_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = fresh_sandbox(version="5.3.3")
    info = sandbox.info()
    for pid, main_class, props in every_process(sandbox):
        assert is_live_java(pid, main_class, props)
        assert "rocketmq-5.3.3" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    master, slave = broker_entry(sandbox, "broker-a:0"), broker_entry(sandbox, "broker-a:1")
    assert ids_of(sandbox, "broker-a") == {
        n["addr"]: {0: master["addr"], 1: slave["addr"]} for n in info["nameservers"]
    }
    # 5.x honours bindAddress: its remoting ports listen on loopback only (4.x: wildcard).
    master_props = PropertiesFile.parse(Path(master["properties"]).read_text())
    assert master_props.get("bindAddress") == "127.0.0.1"
    port = int(master["addr"].split(":")[1])
    for p in (port, port - 2):
        addresses = listening_addresses(p)
        assert addresses, f"nothing listens on {p}"
        assert all(a.strip("0") for a in addresses), f"{p} is bound to the wildcard address"
