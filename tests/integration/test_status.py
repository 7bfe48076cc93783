"""`status` and `check` against a real RocketMQ 4.9.7 sandbox (killed and restarted for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients import send_messages

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def status(config: Path) -> dict[str, Any]:
    out = cli("status", "-c", str(config), "--json").stdout
    report: dict[str, Any] = json.loads(out)
    return report


def broker(report: dict[str, Any], key: str) -> dict[str, Any]:
    name, broker_id = key.split(":")
    brokers: list[dict[str, Any]] = report["brokers"]
    for b in brokers:
        if b["broker_name"] == name and b["broker_id"] == int(broker_id):
            return b
    raise AssertionError(f"{key} not in status: {report}")


def wait_for(predicate: Any, timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}; last: {last}")


def test_status_shows_master_and_slave_registered_everywhere(sandbox_cluster: Any) -> None:
    report = status(sandbox_cluster.config_path)
    assert [n["up"] for n in report["nameservers"]] == [True, True]
    master = broker(report, "broker-a:0")
    slave = broker(report, "broker-a:1")
    assert master["up"] and slave["up"]
    assert master["role"] == "ASYNC_MASTER" and master["is_master"]
    assert slave["role"] == "SLAVE" and not slave["is_master"]
    assert all(ids == [0] for ids in master["registered_ids"].values())
    assert all(ids == [1] for ids in slave["registered_ids"].values())
    assert len(master["registered_ids"]) == 2
    assert isinstance(master["commitlog_max_offset"], int)
    assert master["version"] == "V4_9_7"
    assert master["lag_bytes"] is None and isinstance(slave["lag_bytes"], int)


def test_table_output_names_every_node(sandbox_cluster: Any) -> None:
    out = cli("status", "-c", str(sandbox_cluster.config_path)).stdout
    for b in sandbox_cluster.info()["brokers"]:
        assert b["addr"] in out
    for n in sandbox_cluster.info()["nameservers"]:
        assert n["addr"] in out
    assert "ASYNC_MASTER" in out and "SLAVE" in out


def test_sent_messages_grow_master_offset_and_slave_catches_up(sandbox_cluster: Any) -> None:
    before = broker(status(sandbox_cluster.config_path), "broker-a:0")["commitlog_max_offset"]
    namesrv = ";".join(n["addr"] for n in sandbox_cluster.info()["nameservers"])
    outcome = send_messages(namesrv, "WatchdogStatusTopic", 50)
    assert outcome.sent == 50, outcome

    def caught_up() -> dict[str, Any] | None:
        report = status(sandbox_cluster.config_path)
        master, slave = broker(report, "broker-a:0"), broker(report, "broker-a:1")
        if master["commitlog_max_offset"] - before >= 50 * 200 and slave["lag_bytes"] == 0:
            return report
        return None

    report = wait_for(caught_up, 30, "master offset growth and slave lag 0")
    assert (
        broker(report, "broker-a:1")["commitlog_max_offset"]
        == broker(report, "broker-a:0")["commitlog_max_offset"]
    )


def test_check_passes_on_a_healthy_sandbox(sandbox_cluster: Any) -> None:
    result = cli("check", "-c", str(sandbox_cluster.config_path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "promotable slave(s): broker-a:1" in result.stdout
    assert "[ok  ] canary client: the rocketmq client (librocketmq) loads" in result.stdout
    assert "fence paths for broker-a:0: rewrite + stop on host local" in result.stdout
    assert "[ok  ] secondary check local-secondary: reaches" in result.stdout
    assert f"{sandbox_cluster.dir} writable on local" in result.stdout
    assert "FAIL" not in result.stdout


def test_check_names_a_secondary_check_that_cannot_run(
    sandbox_cluster: Any, tmp_path: Path
) -> None:
    """A missing rmq-watchdog-ping on the check's host would silently leave a hung master to
    the nameservers' 120 s: check says so (a failover itself could still run)."""
    text = Path(sandbox_cluster.config_path).read_text()
    bad = tmp_path / "watchdog.toml"
    start = text.index("[[secondary_checks]]")
    line_start = text.index("command = ", start)
    line_end = text.index("\n", line_start)
    bad.write_text(
        text[:line_start] + 'command = ["/nonexistent/rmq-watchdog-ping", "{addr}"]'
        + text[line_end:]
    )
    result = cli("check", "-c", str(bad), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if "secondary check" in ln]
    assert line.startswith("[FAIL] secondary check local-secondary: does not run on host local")
    assert "a failover could run, but 1 problem(s) need attention" in result.stdout


def test_check_fails_when_the_canary_client_cannot_load(
    sandbox_cluster: Any, tmp_path: Path
) -> None:
    """The install trap: without the client every failover would end failed at its canary,
    after the promotion. A `rocketmq` package that cannot load shadows the real one here."""
    fake = tmp_path / "rocketmq"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('librocketmq.so: cannot open')\n")
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "-c", str(sandbox_cluster.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [ln for ln in result.stdout.splitlines() if "canary client" in ln]
    assert line.startswith("[FAIL] canary client: the rocketmq client does not load"), line
    assert "librocketmq.so: cannot open" in line


def test_killed_slave_shows_down_within_one_probe_and_check_fails(fresh_sandbox: Any) -> None:
    sandbox = fresh_sandbox()
    sandbox.kill("broker-a:1", "KILL")
    report = status(sandbox.config_path)  # the very next probe
    slave = broker(report, "broker-a:1")
    assert slave["up"] is False and slave["error"]
    assert broker(report, "broker-a:0")["up"] is True
    result = cli("check", "-c", str(sandbox.config_path), check=False)
    assert result.returncode == 1
    assert "no promotable slave" in result.stdout


def test_killed_nameserver_shows_down_and_brokers_stay_up(fresh_sandbox: Any) -> None:
    sandbox = fresh_sandbox()
    ns = sandbox.info()["nameservers"][1]["addr"]
    sandbox.kill_nameserver(ns, "KILL")
    report = status(sandbox.config_path)
    by_addr = {n["addr"]: n for n in report["nameservers"]}
    assert by_addr[ns]["up"] is False
    assert all(n["up"] for a, n in by_addr.items() if a != ns)
    assert broker(report, "broker-a:0")["up"] and broker(report, "broker-a:1")["up"]
    assert report["problems"] == []  # one of two nameservers down is not a majority

    # A group without a master answering: status says so and exits 1.
    sandbox.kill("broker-a:0", "KILL")
    result = cli("status", "-c", str(sandbox.config_path), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEM: group broker-a: no broker answers as master" in result.stdout


def test_malformed_config_is_rejected_and_nothing_probed(
    sandbox_cluster: Any, tmp_path: Path
) -> None:
    text = Path(sandbox_cluster.config_path).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[[brokers]]", "[[brokers]]\nbroker_idd = 3", 1))
    result = cli("status", "-c", str(bad), check=False)
    assert result.returncode == 2
    assert "brokers[0].broker_idd: unknown key" in result.stderr
    assert str(bad) in result.stderr
    assert result.stdout == ""
