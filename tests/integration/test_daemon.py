"""The daemon against a real sandbox: verdicts for real faults, systemd notify, SIGHUP, metrics.

One dry-run daemon walks through the fault phases on one sandbox, so the detector's verdicts
are seen for real kills, pauses and restarts without a promotion changing the cluster.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import Daemon, cli, running_daemon
from tests.integration.prometheus_harness import run_prometheus
from watchdog.act import GroupRecord, StateStore, WatchdogState

pytestmark = pytest.mark.integration

DOWN_AFTER_SECONDS = 3.0
INTERVAL_SECONDS = 1.0


def cycle_lines(d: Daemon, since: int = 0) -> list[dict[str, Any]]:
    """The canonical per-group lines of cycles after `since`."""
    return [e for e in d.events() if "cycle" in e and "decision" in e and e["cycle"] > since]


def last_cycle(d: Daemon) -> int:
    lines = cycle_lines(d)
    return int(lines[-1]["cycle"]) if lines else 0


def dry_run_config(sandbox: Any, tmp_path: Path) -> Path:
    """The sandbox's config, decide-only (`dry_run = true` must precede the first table)."""
    text = Path(sandbox.config_path).read_text()
    path = tmp_path / "watchdog-dry.toml"
    path.write_text("dry_run = true\n" + text)
    return path


def assert_status_shows_the_daemon(config: Path, d: Daemon, tmp_path: Path) -> None:
    """`status` asks the running daemon for its view and reads the state dir beside it."""
    report = json.loads(cli("status", "-c", str(config), "--json").stdout)
    view = report["watchdog"]
    assert view["daemon"]["pid"] == d.proc.pid and view["daemon"]["cycle"] >= 1
    group = view["groups"]["broker-a"]
    assert group["state"] == "HEALTHY" and group["failover"] is None
    assert group["blocked_until"] is None

    # The block, as a failover leaves it, in a copy of the state dir with no daemon beside it.
    text = config.read_text()
    state_dir = tmp_path / "other-state"
    copy = tmp_path / "watchdog-other-state.toml"
    copy.write_text(re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{state_dir}"', text))
    StateStore(state_dir).save(
        WatchdogState().with_group(
            "broker-a", GroupRecord(epoch=3, blocked_until=time.time() + 600, block_reason="x")
        )
    )
    table = cli("status", "-c", str(copy)).stdout
    assert f"watchdog daemon: none answers on {state_dir / 'control.sock'}" in table
    assert "automatic failovers blocked until " in table and "(x); `rmq-watchdog ack`" in table
    assert "epoch 3, master on record -" in table


def group_state_after(d: Daemon, cycle: int, state: str, timeout: float) -> dict[str, Any]:
    return d.wait_event(
        lambda e: e.get("cycle", 0) > cycle and e.get("state") == state,
        timeout,
        f"group state {state} after cycle {cycle}",
    )


def test_verdicts_for_real_faults(fresh_sandbox: Any, tmp_path: Path) -> None:
    sandbox = fresh_sandbox()
    config = dry_run_config(sandbox, tmp_path)
    master, slave = "broker-a:0", "broker-a:1"
    ns1 = sandbox.info()["nameservers"][1]["addr"]
    with running_daemon(config, tmp_path / "daemon.log") as d:
        # Healthy: a few cycles, every line says HEALTHY with no_action.
        group_state_after(d, 3, "HEALTHY", 30)
        assert all(e["decision"] == "no_action" for e in cycle_lines(d))

        # A pause shorter than down_after: never SDOWN/ODOWN, never anything but no_action.
        before = last_cycle(d)
        sandbox.kill(master, "STOP")
        time.sleep(DOWN_AFTER_SECONDS / 2)
        sandbox.kill(master, "CONT")
        group_state_after(d, before + 3, "HEALTHY", 20)
        short_pause = cycle_lines(d, before)
        assert all(e["state"] in ("HEALTHY",) for e in short_pause), short_pause
        assert all(e["decision"] == "no_action" for e in short_pause)

        # One nameserver killed: the master verdict does not change.
        before = last_cycle(d)
        sandbox.kill_nameserver(ns1, "KILL")
        group_state_after(d, before + 4, "HEALTHY", 20)
        assert {e["state"] for e in cycle_lines(d, before)} == {"HEALTHY"}
        sandbox.start_nameserver(ns1)

        # Slave killed: DEGRADED; back to HEALTHY once it is started again.
        before = last_cycle(d)
        sandbox.kill(slave, "KILL")
        degraded = group_state_after(d, before, "DEGRADED", 20)
        assert "slave" in degraded["event"]
        sandbox.start(slave)
        group_state_after(d, degraded["cycle"], "HEALTHY", 60)

        # A hung master (SIGSTOP) stays registered on the nameservers for 120 s; the secondary
        # check from the local host confirms it: MASTER_ODOWN within down_after + one cycle.
        before = last_cycle(d)
        sandbox.kill(master, "STOP")
        hung = group_state_after(d, before, "MASTER_ODOWN", 30)
        assert hung["decision"] == "promote"
        assert hung["event"].startswith("dry run, would act: promoting broker-a id=1")
        sandbox.kill(master, "CONT")
        recovered = group_state_after(d, hung["cycle"], "HEALTHY", 30)

        assert "crashed" not in hung["event"]  # a hang waits down_after: no crash shortcut

        # kill -9: refused, and the nameservers drop it at once: a crash, ODOWN without
        # waiting down_after (within a cycle or two of the kill).
        sandbox.kill(master, "KILL")
        crashed = group_state_after(d, recovered["cycle"], "MASTER_ODOWN", 30)
        assert crashed["decision"] == "promote", crashed
        assert "because master crashed: it refuses connections" in crashed["event"], crashed
        match = re.search(r"down for ([0-9.]+) (ms|s)", crashed["event"])
        assert match, crashed["event"]
        down_for = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
        assert down_for < DOWN_AFTER_SECONDS, crashed["event"]

        # Dry run: nothing was changed.
        assert "brokerRole=SLAVE" in Path(sandbox.info()["brokers"][1]["properties"]).read_text()
        assert not any(e.get("event", "").startswith("failover started") for e in d.events())
    assert d.proc.returncode == 0
    assert d.events()[-1]["event"] == "rmq-watchdog stopped"


def test_systemd_notify_and_sighup_reload(sandbox_cluster: Any, tmp_path: Path) -> None:
    config = dry_run_config(sandbox_cluster, tmp_path)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    try:
        with running_daemon(
            config, tmp_path / "daemon.log", env={"NOTIFY_SOCKET": str(sock_path)}
        ) as d:
            messages: list[str] = []
            while not any("READY=1" in m for m in messages):
                messages.append(sock.recv(4096).decode())
            ready = next(m for m in messages if "READY=1" in m)
            assert "STATUS=cycle 1: broker-a HEALTHY" in ready
            assert_status_shows_the_daemon(config, d, tmp_path)
            watchdog_pings = 0
            while watchdog_pings < 3:
                if "WATCHDOG=1" in sock.recv(4096).decode():
                    watchdog_pings += 1

            # A bad config on SIGHUP is refused; the daemon keeps cycling on the old one.
            good = config.read_text()
            config.write_text(good.replace('cluster_name = "', 'cluster_name = 7 #"', 1))
            d.proc.send_signal(signal.SIGHUP)
            refused = d.wait_event(lambda e: "reload refused" in e.get("event", ""), 20, "refusal")
            assert str(config) in refused["error"]
            cycle = last_cycle(d)
            group_state_after(d, cycle + 2, "HEALTHY", 20)

            # A good one is applied.
            config.write_text(good.replace("[metrics]", '[detect]\ndown_after = "5s"\n\n[metrics]'))
            d.proc.send_signal(signal.SIGHUP)
            d.wait_event(lambda e: e.get("event") == "configuration reloaded", 20, "reload")
            group_state_after(d, last_cycle(d) + 1, "HEALTHY", 20)
        assert d.proc.returncode == 0
    finally:
        sock.close()


def test_prometheus_scrapes_the_daemon(sandbox_cluster: Any, tmp_path: Path) -> None:
    config = dry_run_config(sandbox_cluster, tmp_path)
    listen = re.search(r'listen = "([^"]+)"', config.read_text())
    assert listen, "the sandbox config sets [metrics] listen"
    with running_daemon(config, tmp_path / "daemon.log") as d:
        group_state_after(d, 1, "HEALTHY", 30)
        with run_prometheus([listen.group(1)], tmp_path / "prometheus") as prom:
            up = prom.wait_for(
                'rmq_watchdog_broker_up{broker_name="broker-a"}',
                lambda r: len(r) == 2 and all(float(s["value"][1]) == 1.0 for s in r),
            )
            assert {s["metric"]["broker_id"] for s in up} == {"0", "1"}
            state = prom.wait_for(
                'rmq_watchdog_group_state{broker_name="broker-a",state="HEALTHY"}',
                lambda r: len(r) == 1 and float(r[0]["value"][1]) == 1.0,
            )
            assert state
            decisions = prom.wait_for(
                'rmq_watchdog_decisions_total{broker_name="broker-a",decision="no_action"}',
                lambda r: len(r) == 1 and float(r[0]["value"][1]) >= 1.0,
            )
            assert decisions
