"""A real Prometheus scrapes the watchdog's metrics server and sees what the snapshot said."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.integration.prometheus_harness import DEFAULT_PORTS, Vector, free_port, run_prometheus
from watchdog.model import BrokerObservation, ClusterSnapshot, GroupState, NamesrvObservation
from watchdog.observe import MetricsServer, WatchdogMetrics

pytestmark = pytest.mark.integration

MASTER = BrokerObservation(
    broker_name="broker-a",
    broker_id=0,
    addr="127.0.0.1:10911",
    is_up=True,
    latency_seconds=0.002,
    role="ASYNC_MASTER",
    reported_broker_id=0,
    commitlog_max_offset=1_048_576,
)
SLAVE = BrokerObservation(
    broker_name="broker-a",
    broker_id=1,
    addr="127.0.0.1:10921",
    is_up=True,
    latency_seconds=0.003,
    role="SLAVE",
    reported_broker_id=1,
    commitlog_max_offset=1_000_000,
)
DOWN = BrokerObservation(
    broker_name="broker-b",
    broker_id=0,
    addr="127.0.0.1:10931",
    is_up=False,
    error="connect timed out after 0.5 s",
)


def cluster(*brokers: BrokerObservation) -> ClusterSnapshot:
    return ClusterSnapshot(
        cluster_name="DefaultCluster",
        taken_at=10.0,
        wall_time=1_700_000_000.0,
        nameservers=(NamesrvObservation("127.0.0.1:9876", is_up=True, latency_seconds=0.001),),
        brokers=brokers,
    )


@pytest.fixture
def metrics_server() -> Iterator[tuple[WatchdogMetrics, str]]:
    registry = CollectorRegistry()
    metrics = WatchdogMetrics(registry)
    server = MetricsServer(registry)
    for _ in range(20):  # another process may take the port between the check and the bind
        try:
            server.start(f"127.0.0.1:{free_port(DEFAULT_PORTS)}")
            break
        except OSError:
            continue
    assert server.is_running, "could not bind a metrics port in 24000-24999"
    try:
        yield metrics, f"127.0.0.1:{server.port}"
    finally:
        server.stop()


def by_broker(result: Vector) -> dict[tuple[str, str, str], float]:
    return {
        (s["metric"]["broker_name"], s["metric"]["broker_id"], s["metric"]["addr"]): float(
            s["value"][1]
        )
        for s in result
    }


def test_prometheus_scrapes_what_the_snapshot_said(
    metrics_server: tuple[WatchdogMetrics, str], tmp_path: Path
) -> None:
    metrics, target = metrics_server
    snap = cluster(MASTER, SLAVE, DOWN)
    metrics.update(
        snap,
        {"broker-a": GroupState.HEALTHY, "broker-b": GroupState.MASTER_SDOWN},
        is_isolated=False,
    )
    metrics.observe_probe("broker", 0.002)
    metrics.record_decision("broker-a", "no_action")

    expected_up = {(b.broker_name, str(b.broker_id), b.addr): float(b.is_up) for b in snap.brokers}
    assert expected_up == {
        ("broker-a", "0", "127.0.0.1:10911"): 1.0,
        ("broker-a", "1", "127.0.0.1:10921"): 1.0,
        ("broker-b", "0", "127.0.0.1:10931"): 0.0,
    }

    with run_prometheus([target], tmp_path / "prometheus") as prom:
        up = prom.wait_for("rmq_watchdog_broker_up", lambda r: len(r) == len(expected_up))
        assert by_broker(up) == expected_up
        assert {s["metric"]["job"] for s in up} == {"rmq-watchdog"}
        assert {s["metric"]["instance"] for s in up} == {target}

        lag = prom.query("rmq_watchdog_replication_lag_bytes")
        assert by_broker(lag) == {("broker-a", "1", "127.0.0.1:10921"): 48_576.0}
        state = prom.query("rmq_watchdog_group_state == 1")
        assert {(s["metric"]["broker_name"], s["metric"]["state"]) for s in state} == {
            ("broker-a", "HEALTHY"),
            ("broker-b", "MASTER_SDOWN"),
        }
        decisions = prom.query('rmq_watchdog_decisions_total{decision="no_action"}')
        assert {s["metric"]["broker_name"]: float(s["value"][1]) for s in decisions} == {
            "broker-a": 1.0,
            "broker-b": 0.0,
        }

        # The collector reads the newest snapshot on every scrape: broker-b coming back shows.
        back = BrokerObservation(
            broker_name="broker-b",
            broker_id=0,
            addr=DOWN.addr,
            is_up=True,
            role="ASYNC_MASTER",
            commitlog_max_offset=0,
        )
        metrics.update(cluster(MASTER, SLAVE, back), {}, is_isolated=False)
        recovered = prom.wait_for(
            'rmq_watchdog_broker_up{broker_name="broker-b"}',
            lambda r: len(r) == 1 and float(r[0]["value"][1]) == 1.0,
        )
        assert float(recovered[0]["value"][1]) == 1.0
        health = prom.query(f'up{{instance="{target}"}}')
        assert [float(s["value"][1]) for s in health] == [1.0]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed: `make test` installs it (Debian package prometheus)"
    return found


def test_promtool_accepts_the_exposition(metrics_server: tuple[WatchdogMetrics, str]) -> None:
    metrics, target = metrics_server
    metrics.update(
        cluster(MASTER, SLAVE, DOWN),
        {"broker-a": GroupState.HEALTHY, "broker-b": GroupState.MASTER_ODOWN},
        is_isolated=True,
    )
    metrics.observe_probe("namesrv", 0.001)
    metrics.record_decision("broker-b", "promote")
    metrics.record_failover("broker-b", "succeeded", duration_seconds=8.0, finished_at=1.7e9)
    metrics.record_cycle(finished_at=1.7e9, is_overrun=True)

    text = httpx.get(f"http://{target}/metrics", timeout=5.0).text
    assert "rmq_watchdog_failovers_total" in text
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    # Exit 0 and no findings: neither parse errors nor lint problems (suffixes, units, help).
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_promtool_check_rejects_a_broken_exposition() -> None:
    # Shows the check above can fail: promtool does parse what it is given.
    broken = "# TYPE rmq_watchdog_broker_up gauge\nrmq_watchdog_broker_up{addr=} one\n"
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=broken, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode != 0
    assert "error" in (checked.stdout + checked.stderr).lower()
