"""The sandbox's files (properties, watchdog.toml), port plan, jar cache and java argv, no JVM."""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from watchdog.config import load_config
from watchdog.model import PropertiesFile
from watchdog.tools.sandbox import (
    JAVA_MODULE_OPTIONS,
    Sandbox,
    SandboxError,
    auto_port_range,
    broker_properties_text,
    ensure_rocketmq,
    java_argv,
    pick_base_port,
    plan_topology,
    unbindable_ports,
    watchdog_toml_text,
)

REPO = Path(__file__).resolve().parents[2]
SEED = {
    "namesrvAddr": "192.168.159.129:9876;192.168.159.130:9876",
    "brokerClusterName": "XdclassCluster",
    "brokerName": "broker-a",
    "brokerId": "0",
    "deleteWhen": "04",
    "fileReservedTime": "48",
    "brokerRole": "ASYNC_MASTER",
    "flushDiskType": "ASYNC_FLUSH",
}


def test_plan_lays_out_nameservers_metrics_and_brokers_from_the_base_port() -> None:
    t = plan_topology(22000)
    assert t.nameserver_addrs == ("127.0.0.1:22000", "127.0.0.1:22001")
    assert t.namesrv_addr == "127.0.0.1:22000;127.0.0.1:22001"
    assert t.metrics_port == 22002
    assert [(b.key, b.role, b.listen_port, b.properties_name) for b in t.brokers] == [
        ("broker-a:0", "ASYNC_MASTER", 22011, "broker-a.properties"),
        ("broker-a:1", "SLAVE", 22021, "broker-a-s.properties"),
    ]
    assert t.brokers[0].ports == (22011, 22009, 22012)
    assert len(set(t.ports())) == len(t.ports())  # no port used twice


def test_plan_with_sync_groups_and_more_slaves() -> None:
    t = plan_topology(23000, groups=2, slaves=2, replication="sync")
    assert [(b.key, b.role, b.properties_name) for b in t.brokers] == [
        ("broker-a:0", "SYNC_MASTER", "broker-a.properties"),
        ("broker-a:1", "SLAVE", "broker-a-s.properties"),
        ("broker-a:2", "SLAVE", "broker-a-s2.properties"),
        ("broker-b:0", "SYNC_MASTER", "broker-b.properties"),
        ("broker-b:1", "SLAVE", "broker-b-s.properties"),
        ("broker-b:2", "SLAVE", "broker-b-s2.properties"),
    ]
    assert len(set(t.ports())) == len(t.ports()) == 3 + 3 * 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_port": 80}, "does not leave room"),
        ({"base_port": 65510}, "does not leave room"),
        ({"base_port": 22000, "groups": 0}, "--groups must be between 1 and 26"),
        ({"base_port": 22000, "slaves": 9}, "--slaves must be between 0 and 8"),
        ({"base_port": 22000, "replication": "semi"}, "--replication must be async or sync"),
    ],
)
def test_plan_rejects_impossible_layouts(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        plan_topology(**kwargs)  # type: ignore[arg-type]


def test_broker_properties_keep_the_seed_keys_in_its_order(tmp_path: Path) -> None:
    t = plan_topology(22000)
    text = broker_properties_text(
        t.brokers[1], t.namesrv_addr, tmp_path / "store" / "broker-a-1", rocketmq_version="4.9.7"
    )
    lines = text.splitlines()
    assert lines[0] == "# written by rmq-watchdog sandbox"
    assert sum(line.startswith("#") for line in lines) == 1
    props = PropertiesFile.parse(text).as_dict()
    # The seed's keys come first, in the seed's order, with the seed's values except where the
    # role and the loopback nameservers differ.
    assert list(props)[: len(SEED)] == list(SEED)
    expected = {**SEED, "namesrvAddr": "127.0.0.1:22000;127.0.0.1:22001"}
    expected |= {"brokerId": "1", "brokerRole": "SLAVE"}
    assert {k: props[k] for k in SEED} == expected
    assert props["listenPort"] == "22021"
    assert props["brokerIP1"] == props["brokerIP2"] == "127.0.0.1"
    assert props["storePathRootDir"] == str(tmp_path / "store" / "broker-a-1")
    assert props["storePathCommitLog"] == str(tmp_path / "store" / "broker-a-1" / "commitlog")
    assert "bindAddress" not in props  # 4.9.7 has no such setting


def test_rocketmq_5_brokers_bind_loopback(tmp_path: Path) -> None:
    t = plan_topology(22000)
    text = broker_properties_text(t.brokers[0], t.namesrv_addr, tmp_path, rocketmq_version="5.3.3")
    assert PropertiesFile.parse(text).get("bindAddress") == "127.0.0.1"


def test_watchdog_toml_loads_and_drives_the_sandbox_cli(tmp_path: Path) -> None:
    t = plan_topology(22000, groups=2)
    path = tmp_path / "watchdog.toml"
    path.write_text(watchdog_toml_text(tmp_path, t))
    config = load_config(path)
    assert config.cluster_name == "XdclassCluster"
    assert config.nameservers == ("127.0.0.1:22000", "127.0.0.1:22001")
    assert config.state_dir == str(tmp_path / "watchdog-state")
    assert set(config.hosts) == {"local"}
    assert config.metrics.listen == "127.0.0.1:22002"
    assert [(c.name, c.host) for c in config.secondary_checks] == [("local-secondary", "local")]
    # `rmq-watchdog ping {addr}`, through this interpreter so PATH does not matter
    ping = (sys.executable, "-m", "watchdog.ping", "{addr}")
    assert config.secondary_checks[0].command == ping
    keys = ["broker-a:0", "broker-a:1", "broker-b:0", "broker-b:1"]
    assert [b.key for b in config.brokers] == keys
    slave = config.broker("broker-a", 1)
    assert slave is not None
    assert slave.addr == "127.0.0.1:22021" and slave.host == "local"
    assert slave.properties == str(tmp_path / "broker-a-s.properties")
    common = (sys.executable, "-m", "watchdog", "sandbox")
    assert slave.start == (*common, "start", "--dir", str(tmp_path), "--broker", "broker-a:1")
    assert slave.stop == (*common, "stop", "--dir", str(tmp_path), "--broker", "broker-a:1")


def test_watchdog_toml_survives_quotes_in_the_path(tmp_path: Path) -> None:
    odd = tmp_path / 'a "quoted" dir'
    odd.mkdir()
    path = odd / "watchdog.toml"
    path.write_text(watchdog_toml_text(odd, plan_topology(22000)))
    assert load_config(path).brokers[0].properties == str(odd / "broker-a.properties")


@pytest.mark.parametrize(
    ("name", "broker_id", "role"),
    [("broker-a.properties", "0", "ASYNC_MASTER"), ("broker-a-s.properties", "1", "SLAVE")],
)
def test_repo_configs_are_the_seed_with_loopback_nameservers(
    name: str, broker_id: str, role: str
) -> None:
    text = (REPO / "config" / name).read_text()
    props = PropertiesFile.parse(text).as_dict()
    assert props == {
        **SEED,
        "namesrvAddr": "127.0.0.1:9876;127.0.0.1:9877",
        "brokerId": broker_id,
        "brokerRole": role,
    }
    assert "192.168" not in text and list(props) == list(SEED)


def test_busy_ports_are_found_and_auto_pick_avoids_them() -> None:
    # A 100-port window that is entirely free right now (a sandbox of another test may hold
    # some ports), so the block arithmetic below holds wherever it lands.
    low = next(
        lo for lo in range(22500, 32000, 100) if not unbindable_ports(list(range(lo, lo + 100)))
    )
    busy = low + 31
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", busy))
        blocker.listen()
        assert unbindable_ports([busy - 1, busy]) == [busy]
        # Blocks in [low, low + 100) of 30 ports: low, low + 30, low + 60; a seed that starts
        # at the second block (holding `busy`) must move on to the third.
        starts = [low, low + 30, low + 60]
        seed = next(s for s in range(1000) if random.Random(s).randrange(3) == 1)
        base = pick_base_port(low=low, high=low + 100, rng=random.Random(seed))
        assert base in starts and base != low + 30
        assert busy not in plan_topology(base).ports()


def test_port_range_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMQ_WATCHDOG_SANDBOX_PORTS", raising=False)
    assert auto_port_range() == (20000, 32768)
    monkeypatch.setenv("RMQ_WATCHDOG_SANDBOX_PORTS", "22000-22999")
    assert auto_port_range() == (22000, 23000)
    monkeypatch.setenv("RMQ_WATCHDOG_SANDBOX_PORTS", "lots")
    with pytest.raises(SandboxError, match="LOW-HIGH"):
        auto_port_range()


def test_java_argv_puts_jvm_options_before_the_class_and_arguments_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    argv = java_argv(
        "org.apache.rocketmq.tools.command.MQAdminStartup",
        tmp_path / "lib",
        "96m",
        ["clusterList", "-n", "127.0.0.1:22000"],
        jvm_options=["-Duser.home=/x"],
    )
    assert argv[0] == str(java)
    main = argv.index("org.apache.rocketmq.tools.command.MQAdminStartup")
    assert argv[main + 1 :] == ["clusterList", "-n", "127.0.0.1:22000"]
    assert argv[main - 2 : main] == ["-cp", f"{tmp_path / 'lib'}/*"]
    before = argv[:main]
    assert set(JAVA_MODULE_OPTIONS) <= set(before)
    assert "-Xmx96m" in before and "-Duser.home=/x" in before
    with pytest.raises(SandboxError, match="invalid heap size"):
        java_argv("Main", tmp_path, "lots")


def test_the_files_are_rendered_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from watchdog.tools.sandbox._files import render_files
    from watchdog.tools.sandbox._runtime import Jvm

    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    d = tmp_path / "box"
    topology = plan_topology(22000)
    files = render_files(d, topology, Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "disabled"),
                         prefixes={"broker-a-1": ["ip", "netns", "exec", "ns4"]})  # fmt: skip
    assert not d.exists()
    assert [p.name for p in files.procs] == ["namesrv-0", "namesrv-1", "broker-a-0", "broker-a-1"]
    assert all(p.pid is None and "-Dtls.server.mode=disabled" in p.argv for p in files.procs)
    assert files.procs[3].argv[:5] == ("ip", "netns", "exec", "ns4", str(java))
    assert files.homes == tuple(d / "home" / p.name for p in files.procs)
    assert files.cluster["brokers"][1]["properties"] == str(d / "broker-a-s.properties")
    assert files.state["processes"]["broker-a-1"]["argv"] == list(files.procs[3].argv)
    props = PropertiesFile.parse(files.texts[d / "broker-a-s.properties"]).as_dict()
    assert props["brokerRole"] == "SLAVE" and props["listenPort"] == "22021"
    assert files.config_text == watchdog_toml_text(d, topology)


def test_brokers_start_without_tls_key_generation_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`sandbox up` defaults to --tls disabled: RocketMQ's permissive default generates two
    self-signed RSA-2048 keys at every broker boot (bench/results/broker_start.md); --tls
    permissive is still there and adds no flag (RocketMQ's own default)."""
    import inspect

    from watchdog.tools.sandbox._files import render_files
    from watchdog.tools.sandbox._runtime import Jvm
    from watchdog.tools.sandbox.cli import sandbox

    up = sandbox.commands["up"]
    [tls] = [p for p in up.params if p.name == "tls"]
    assert tls.default == "disabled"
    assert list(getattr(tls.type, "choices", ())) == ["disabled", "permissive"]
    assert inspect.signature(Sandbox.up).parameters["tls"].default == "disabled"
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    topology = plan_topology(22000)
    permissive = render_files(
        tmp_path / "box", topology, Jvm(tmp_path / "lib", "4.9.7", "256m", "128m", "permissive")
    )
    assert not any(a.startswith("-Dtls.") for p in permissive.procs for a in p.argv)


def _fake_mvn(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)


def test_jar_cache_counts_only_after_a_complete_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Maven stand-in on PATH: first it fails midway, then it copies; the marker decides."""
    monkeypatch.setenv("RMQ_WATCHDOG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    calls = tmp_path / "calls"
    # copy half the jars, then die, like an interrupted download
    _fake_mvn(
        tmp_path / "bin",
        f'echo "$@" >> {calls}\n'
        'for a in "$@"; do case $a in -DoutputDirectory=*) out=${a#*=};; esac; done\n'
        'mkdir -p "$out" && touch "$out/rocketmq-namesrv-9.9.9.jar"\n'
        'echo "[ERROR] Could not transfer artifact" >&2; exit 1\n',
    )
    with pytest.raises(SandboxError, match="(?s)fetch RocketMQ 9.9.9 .*Could not transfer"):
        ensure_rocketmq("9.9.9")
    home = tmp_path / "cache" / "rocketmq-9.9.9"
    assert not (home / "COMPLETE").exists() and not (home / "lib").exists()

    _fake_mvn(
        tmp_path / "bin",
        f'echo "$@" >> {calls}\n'
        'for a in "$@"; do case $a in -DoutputDirectory=*) out=${a#*=};; esac; done\n'
        'mkdir -p "$out" && touch "$out/rocketmq-namesrv-9.9.9.jar" '
        '"$out/rocketmq-broker-9.9.9.jar" "$out/rocketmq-tools-9.9.9.jar"\n',
    )
    lib = ensure_rocketmq("9.9.9")
    assert lib == home / "lib"
    assert sorted(p.name for p in lib.iterdir()) == [
        "rocketmq-broker-9.9.9.jar",
        "rocketmq-namesrv-9.9.9.jar",
        "rocketmq-tools-9.9.9.jar",
    ]
    assert (home / "COMPLETE").is_file()
    invocation = calls.read_text().splitlines()[-1].split()
    assert invocation[:2] == ["-q", "-B"] and "dependency:copy-dependencies" in invocation
    assert "-Drocketmq.version=9.9.9" in invocation
    pom = (home / "pom.xml").read_text()
    assert "<artifactId>rocketmq-namesrv</artifactId>" in pom
    assert "<artifactId>rocketmq-broker</artifactId>" in pom

    # Cached: Maven is not asked again.
    assert ensure_rocketmq("9.9.9") == lib
    assert len(calls.read_text().splitlines()) == 2


def test_bad_versions_never_reach_maven() -> None:
    for version in ("../../etc", "4.9", "4.9.7; rm -rf /", ""):
        with pytest.raises(SandboxError, match="invalid RocketMQ version"):
            ensure_rocketmq(version)


def test_a_folder_without_cluster_json_is_not_a_sandbox(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no cluster.json"):
        Sandbox(tmp_path).info()
    with pytest.raises(SandboxError, match="--tls must be permissive or disabled"):
        Sandbox(tmp_path / "new").up(tls="maybe")  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="invalid heap size"):
        Sandbox(tmp_path / "new").up(heap="big")
    assert not (tmp_path / "new").exists()  # refused before anything was written
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(SandboxError, match="not empty and holds no sandbox"):
        Sandbox(tmp_path).up(base_port=22000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_liveness_reads_proc_stat_so_a_zombie_is_dead(tmp_path: Path) -> None:
    """A child that exited but was not waited for is a zombie: os.kill(pid, 0) still succeeds."""
    from watchdog.tools.sandbox._procs import Proc as _Proc
    from watchdog.tools.sandbox._procs import proc_stat as _proc_stat

    child = subprocess.Popen(["sleep", "0"])
    try:
        deadline = time.monotonic() + 10
        while (_proc_stat(child.pid) or ("?", 0))[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        stat_now = _proc_stat(child.pid)
        assert stat_now is not None and stat_now[0] == "Z"
        os.kill(child.pid, 0)  # no error: the kernel still knows the pid
        where = (tmp_path / "p", tmp_path / "l")
        proc = _Proc("broker", "b", "b:0", "a:1", "Main", *where, ("x",), child.pid, stat_now[1])
        assert proc.state() == "zombie" and not proc.is_running()
        # Our own pid is alive but is not that java process: a reused pid counts as stopped.
        me = _proc_stat(os.getpid())
        assert me is not None
        other = _Proc("broker", "b", "b:0", "a:1", "Main", *where, ("x",), os.getpid(), me[1])
        assert other.state() == "stopped"
    finally:
        child.wait()


def test_sandbox_timeouts_take_durations_like_every_other_command() -> None:
    from click.testing import CliRunner

    from watchdog.commands._cli import cli

    bad = CliRunner().invoke(cli, ["sandbox", "up", "--dir", "/nonexistent/x", "--timeout", "0.5s"])
    assert bad.exit_code == 2 and "'0.5s' is less than 1s" in bad.output
    worse = CliRunner().invoke(
        cli, ["sandbox", "down", "--dir", "/nonexistent/x", "--timeout", "5x"]
    )
    assert worse.exit_code == 2 and "invalid duration '5x'" in worse.output


def test_a_stopped_sandbox_starts_again_with_a_watchdog_that_remembers_nothing(
    tmp_path: Path,
) -> None:
    """A second `make demo`: the last run's block, epoch and master, its backups and epoch
    files would make the next kill do nothing for an hour."""
    from watchdog.tools.sandbox import Sandbox

    d = tmp_path / "box"
    (d / "watchdog-state" / "failovers").mkdir(parents=True)
    (d / "watchdog-state" / "state.json").write_text("{}")
    (d / "store" / "broker-a-0.rmq-watchdog-aside-X").mkdir(parents=True)
    (d / "cluster.json").write_text('{"nameservers": [], "brokers": []}')
    (d / "sandbox.json").write_text('{"processes": {}}')
    kept = d / "broker-a.properties"
    kept.write_text("brokerId=0\n")
    for name in ("broker-a.properties.rmq-watchdog-X.bak", "broker-a.properties.epoch"):
        (d / name).write_text("x")
    Sandbox(d)._prepare_dir()
    assert sorted(p.name for p in d.iterdir()) == ["broker-a.properties", "cluster.json",
                                                    "sandbox.json"]  # fmt: skip
