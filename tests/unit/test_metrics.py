"""WatchdogMetrics: mirrored state from a snapshot, direct counters, and the HTTP server."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watchdog.model import BrokerObservation, ClusterSnapshot, GroupState, NamesrvObservation
from watchdog.observe import MetricsServer, WatchdogMetrics, parse_listen

NS1, NS2 = "127.0.0.1:9876", "127.0.0.1:9877"
A0, A1, B0, B1 = "127.0.0.1:10911", "127.0.0.1:10921", "127.0.0.1:10931", "127.0.0.1:10941"


def broker(
    name: str,
    broker_id: int,
    addr: str,
    *,
    role: str | None = None,
    offset: int | None = None,
    latency: float | None = None,
) -> BrokerObservation:
    is_up = role is not None
    return BrokerObservation(
        broker_name=name,
        broker_id=broker_id,
        addr=addr,
        is_up=is_up,
        latency_seconds=latency,
        error=None if is_up else "connect timed out",
        role=role,
        reported_broker_id=broker_id if is_up else None,
        commitlog_max_offset=offset,
    )


def snapshot(*brokers: BrokerObservation, ns2_up: bool = False) -> ClusterSnapshot:
    return ClusterSnapshot(
        cluster_name="DefaultCluster",
        taken_at=100.0,
        wall_time=1_700_000_000.0,
        nameservers=(
            NamesrvObservation(NS1, is_up=True, latency_seconds=0.0012),
            NamesrvObservation(NS2, is_up=ns2_up, error=None if ns2_up else "refused"),
        ),
        brokers=brokers,
    )


HEALTHY_A = (
    broker("broker-a", 0, A0, role="ASYNC_MASTER", offset=1_048_576, latency=0.002),
    broker("broker-a", 1, A1, role="SLAVE", offset=1_000_000, latency=0.003),
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> WatchdogMetrics:
    return WatchdogMetrics(registry, version="9.9.9", include_process_metrics=False)


def labels(name: str, broker_id: int, addr: str) -> dict[str, str]:
    return {"broker_name": name, "broker_id": str(broker_id), "addr": addr}


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """All samples named `name` as {sorted label items: value}, parsed from the exposition."""
    text = generate_latest(registry).decode()
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                found[tuple(sorted(s.labels.items()))] = s.value
    return found


def test_broker_and_namesrv_up_mirror_the_snapshot(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.update(snapshot(*HEALTHY_A, broker("broker-b", 0, B0)), {}, is_isolated=False)

    up = registry.get_sample_value
    assert up("rmq_watchdog_broker_up", labels("broker-a", 0, A0)) == 1.0
    assert up("rmq_watchdog_broker_up", labels("broker-a", 1, A1)) == 1.0
    assert up("rmq_watchdog_broker_up", labels("broker-b", 0, B0)) == 0.0
    assert up("rmq_watchdog_namesrv_up", {"addr": NS1}) == 1.0
    assert up("rmq_watchdog_namesrv_up", {"addr": NS2}) == 0.0


def test_nothing_is_mirrored_before_the_first_update(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    text = generate_latest(registry).decode()
    # The families are declared (HELP/TYPE) but carry no samples yet.
    assert "# TYPE rmq_watchdog_broker_up gauge" in text
    assert samples(registry, "rmq_watchdog_broker_up") == {}
    assert samples(registry, "rmq_watchdog_isolated") == {}


def test_offsets_role_and_latency_only_where_known(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.update(snapshot(*HEALTHY_A, broker("broker-b", 0, B0)), {}, is_isolated=False)

    assert samples(registry, "rmq_watchdog_commitlog_max_offset_bytes") == {
        tuple(sorted(labels("broker-a", 0, A0).items())): 1_048_576.0,
        tuple(sorted(labels("broker-a", 1, A1).items())): 1_000_000.0,
    }
    roles = samples(registry, "rmq_watchdog_broker_role")
    assert roles == {
        tuple(sorted({**labels("broker-a", 0, A0), "role": "ASYNC_MASTER"}.items())): 1.0,
        tuple(sorted({**labels("broker-a", 1, A1), "role": "SLAVE"}.items())): 1.0,
    }
    assert samples(registry, "rmq_watchdog_probe_latency_seconds") == {
        (("addr", NS1),): 0.0012,
        (("addr", A0),): 0.002,
        (("addr", A1),): 0.003,
    }


def test_replication_lag_is_master_minus_slave_per_slave(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    second_slave = broker("broker-a", 2, "127.0.0.1:10951", role="SLAVE", offset=1_048_000)
    metrics.update(snapshot(*HEALTHY_A, second_slave), {}, is_isolated=False)

    assert samples(registry, "rmq_watchdog_replication_lag_bytes") == {
        tuple(sorted(labels("broker-a", 1, A1).items())): 48_576.0,
        tuple(sorted(labels("broker-a", 2, "127.0.0.1:10951").items())): 576.0,
    }


def test_replication_lag_follows_the_master_role_not_broker_id_zero(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    # After a failover broker id 1 is the master and the old master came back as a slave.
    after_failover = (
        broker("broker-a", 0, A0, role="SLAVE", offset=2_000),
        broker("broker-a", 1, A1, role="SYNC_MASTER", offset=5_000),
    )
    metrics.update(snapshot(*after_failover), {}, is_isolated=False)

    assert samples(registry, "rmq_watchdog_replication_lag_bytes") == {
        tuple(sorted(labels("broker-a", 0, A0).items())): 3_000.0,
    }


@pytest.mark.parametrize(
    "group",
    [
        pytest.param(
            (
                broker("broker-a", 0, A0),  # master down: its offset is unknown
                broker("broker-a", 1, A1, role="SLAVE", offset=1_000),
            ),
            id="master-down",
        ),
        pytest.param(
            (
                broker("broker-a", 0, A0, role="ASYNC_MASTER", offset=1_000),
                broker("broker-a", 1, A1),  # slave down
            ),
            id="slave-down",
        ),
        pytest.param(
            (
                broker("broker-a", 0, A0, role="ASYNC_MASTER", offset=1_000),
                broker("broker-a", 1, A1, role="SYNC_MASTER", offset=900),
            ),
            id="two-masters",
        ),
    ],
)
def test_no_replication_lag_without_one_known_master_and_slave(
    registry: CollectorRegistry,
    metrics: WatchdogMetrics,
    group: tuple[BrokerObservation, ...],
) -> None:
    metrics.update(snapshot(*group), {}, is_isolated=False)
    assert samples(registry, "rmq_watchdog_replication_lag_bytes") == {}


def test_group_state_is_one_hot_over_every_state(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    states = {"broker-a": GroupState.HEALTHY, "broker-b": GroupState.MASTER_ODOWN}
    metrics.update(snapshot(*HEALTHY_A), states, is_isolated=False)

    for name, current in states.items():
        for state in GroupState:
            value = registry.get_sample_value(
                "rmq_watchdog_group_state", {"broker_name": name, "state": state.value}
            )
            assert value == (1.0 if state is current else 0.0), (name, state)
    assert len(samples(registry, "rmq_watchdog_group_state")) == 2 * len(GroupState)


def test_group_states_must_be_group_states(metrics: WatchdogMetrics) -> None:
    with pytest.raises(TypeError, match="broker-a.*GroupState"):
        metrics.update(snapshot(), {"broker-a": "HEALTHY"}, is_isolated=False)  # type: ignore[dict-item]


def test_isolated_gauge(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    metrics.update(snapshot(*HEALTHY_A), {}, is_isolated=True)
    assert registry.get_sample_value("rmq_watchdog_isolated") == 1.0
    metrics.update(snapshot(*HEALTHY_A), {}, is_isolated=False)
    assert registry.get_sample_value("rmq_watchdog_isolated") == 0.0


def test_each_scrape_reflects_only_the_latest_update(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.update(snapshot(*HEALTHY_A, broker("broker-b", 0, B0)), {}, is_isolated=False)
    metrics.update(snapshot(broker("broker-b", 1, B1, role="SLAVE", offset=7)), {}, False)

    assert samples(registry, "rmq_watchdog_broker_up") == {
        tuple(sorted(labels("broker-b", 1, B1).items())): 1.0,
    }


def test_decision_counters_start_at_zero_for_known_groups(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.update(snapshot(*HEALTHY_A), {"broker-a": GroupState.HEALTHY}, is_isolated=False)
    metrics.record_decision("broker-a", "no_action")
    metrics.record_decision("broker-a", "no_action")
    metrics.record_decision("broker-a", "promote")

    def decisions(decision: str) -> float | None:
        return registry.get_sample_value(
            "rmq_watchdog_decisions_total", {"broker_name": "broker-a", "decision": decision}
        )

    assert (decisions("no_action"), decisions("promote"), decisions("fence")) == (2.0, 1.0, 0.0)


def test_unknown_decision_or_probe_target_is_rejected(metrics: WatchdogMetrics) -> None:
    with pytest.raises(ValueError, match="decision must be one of"):
        metrics.record_decision("broker-a", "reboot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probe target must be one of"):
        metrics.observe_probe("slave", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome"):
        metrics.record_failover("broker-a", "", 1.0, 1.0)


def test_probe_histogram_by_target(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    # Both targets exist before the first probe, so dashboards do not show "no data".
    assert (
        registry.get_sample_value(
            "rmq_watchdog_probe_duration_seconds_count", {"target": "namesrv"}
        )
        == 0.0
    )
    metrics.observe_probe("broker", 0.004)
    metrics.observe_probe("broker", 0.9)
    metrics.observe_probe("namesrv", 0.001)

    get = registry.get_sample_value
    assert get("rmq_watchdog_probe_duration_seconds_count", {"target": "broker"}) == 2.0
    assert get("rmq_watchdog_probe_duration_seconds_sum", {"target": "broker"}) == pytest.approx(
        0.904
    )
    assert (
        get("rmq_watchdog_probe_duration_seconds_bucket", {"target": "broker", "le": "0.005"})
        == 1.0
    )
    assert get("rmq_watchdog_probe_duration_seconds_count", {"target": "namesrv"}) == 1.0


def test_failover_metrics(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    metrics.record_failover("broker-a", "succeeded", duration_seconds=12.5, finished_at=1.7e9)
    metrics.record_failover("broker-a", "failed", duration_seconds=40.0, finished_at=1.8e9)

    get = registry.get_sample_value
    failovers = "rmq_watchdog_failovers_total"
    assert get(failovers, {"broker_name": "broker-a", "outcome": "succeeded"}) == 1.0
    assert get(failovers, {"broker_name": "broker-a", "outcome": "failed"}) == 1.0
    assert get("rmq_watchdog_failover_duration_seconds_count") == 2.0
    assert get("rmq_watchdog_failover_duration_seconds_sum") == 52.5
    assert get("rmq_watchdog_failover_duration_seconds_bucket", {"le": "20.0"}) == 1.0
    assert get("rmq_watchdog_last_failover_timestamp_seconds", {"broker_name": "broker-a"}) == 1.8e9


def test_switchover_metrics_are_not_failover_metrics(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.record_switchover(
        "broker-a", "succeeded", duration_seconds=14.0, finished_at=1.7e9, write_pause_seconds=1.3
    )
    metrics.record_switchover("broker-a", "refused", duration_seconds=31.0, finished_at=1.8e9)

    get = registry.get_sample_value
    switchovers = "rmq_watchdog_switchovers_total"
    assert get(switchovers, {"broker_name": "broker-a", "outcome": "succeeded"}) == 1.0
    assert get(switchovers, {"broker_name": "broker-a", "outcome": "refused"}) == 1.0
    assert get("rmq_watchdog_switchover_duration_seconds_count") == 2.0
    assert get("rmq_watchdog_switchover_duration_seconds_sum") == 45.0
    # The pause only when the writes were stopped (the refusal here stopped none).
    assert get("rmq_watchdog_switchover_write_pause_seconds_count") == 1.0
    assert get("rmq_watchdog_switchover_write_pause_seconds_bucket", {"le": "2.0"}) == 1.0
    assert get("rmq_watchdog_switchover_write_pause_seconds_bucket", {"le": "1.0"}) == 0.0
    name = "rmq_watchdog_last_switchover_timestamp_seconds"
    assert get(name, {"broker_name": "broker-a"}) == 1.8e9
    # Nothing of it in the failover families, which alerts page on.
    failovers = "rmq_watchdog_failovers_total"
    assert get(failovers, {"broker_name": "broker-a", "outcome": "succeeded"}) is None
    assert get("rmq_watchdog_failover_duration_seconds_count") == 0.0
    assert get("rmq_watchdog_last_failover_timestamp_seconds", {"broker_name": "broker-a"}) is None
    with pytest.raises(ValueError, match="non-empty"):
        metrics.record_switchover("broker-a", "", 1.0, 1.0)


def test_inplace_promotion_metrics(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    metrics.record_inplace_promotion("broker-a", "done")
    metrics.record_inplace_promotion("broker-a", "refused")
    metrics.record_inplace_promotion("broker-a", "done")
    get = registry.get_sample_value
    name = "rmq_watchdog_inplace_promotions_total"
    assert get(name, {"broker_name": "broker-a", "result": "done"}) == 2.0
    assert get(name, {"broker_name": "broker-a", "result": "refused"}) == 1.0
    assert get(name, {"broker_name": "broker-a", "result": "fallback"}) is None
    with pytest.raises(ValueError, match="done|refused|fallback"):
        metrics.record_inplace_promotion("broker-a", "succeeded")


def test_cycle_metrics(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    metrics.record_cycle(finished_at=1_700_000_001.0)
    metrics.record_cycle(finished_at=1_700_000_002.5, is_overrun=True)

    get = registry.get_sample_value
    assert get("rmq_watchdog_cycles_total") == 2.0
    assert get("rmq_watchdog_cycle_overruns_total") == 1.0
    assert get("rmq_watchdog_last_cycle_timestamp_seconds") == 1_700_000_002.5


def test_build_info(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    assert registry.get_sample_value("rmq_watchdog_build_info", {"version": "9.9.9"}) == 1.0


def test_process_metrics_are_included_by_default() -> None:
    registry = CollectorRegistry()
    WatchdogMetrics(registry)
    assert registry.get_sample_value("process_open_fds") is not None


def test_a_second_instance_on_the_same_registry_is_refused(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        WatchdogMetrics(registry, include_process_metrics=False)


def test_every_family_has_help_text(registry: CollectorRegistry, metrics: WatchdogMetrics) -> None:
    metrics.update(snapshot(*HEALTHY_A), {"broker-a": GroupState.HEALTHY}, is_isolated=False)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    ours = [f for f in families if f.name.startswith("rmq_watchdog_")]
    assert len(ours) >= 18
    for family in ours:
        assert len(family.documentation) > 30, family.name


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9108", ":9108", "127.0.0.1:", "127.0.0.1:x", "h:70000"])
def test_parse_listen_rejects_garbage(listen: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        parse_listen(listen)


def test_server_serves_the_registry_and_releases_the_port_on_stop(
    registry: CollectorRegistry, metrics: WatchdogMetrics
) -> None:
    metrics.update(snapshot(*HEALTHY_A), {"broker-a": GroupState.HEALTHY}, is_isolated=False)
    server = MetricsServer(registry)
    server.start("127.0.0.1:0")
    port = server.port
    assert port is not None and port > 0
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
        assert response.status_code == 200
        assert (
            f'rmq_watchdog_broker_up{{addr="{A1}",broker_id="1",broker_name="broker-a"}} 1.0'
            in response.text
        )
        with pytest.raises(RuntimeError, match="already listening"):
            server.start("127.0.0.1:0")
    finally:
        server.stop()
    assert not server.is_running
    server.stop()  # a second stop is harmless

    # Nothing listens any more, and a new server can bind the same port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    again = MetricsServer(registry)
    again.start(f"127.0.0.1:{port}")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).status_code == 200
    finally:
        again.stop()


def test_server_reports_a_taken_port(registry: CollectorRegistry) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = MetricsServer(registry)
        with pytest.raises(OSError):
            server.start(f"127.0.0.1:{port}")
        assert not server.is_running
