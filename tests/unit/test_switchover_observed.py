"""A planned switchover as operators see it afterwards, apart from failovers: its kind and write
pause in `history`, its own counters (not rmq_watchdog_failovers_total), switchover_* webhook
events and daemon log lines. Runs the real executor against _act_world.py's stand-in brokers and
the daemon with a scripted executor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.unit._act_world import World, run
from tests.unit._worlds import World as ProbeWorld
from tests.unit.test_act_switchover import PersistingMaster, level, switchover
from tests.unit.test_daemon_loop import Executors, PropertiesHost, TickingProber, make_config
from watchdog.act import Journal
from watchdog.daemon import Daemon
from watchdog.daemon._events import log_failover_event
from watchdog.decide import Plan, Step, StepKind
from watchdog.observe import (
    Event,
    WatchdogMetrics,
    WebhookNotifier,
    journal_kind,
    read_history,
    render_history,
)

FAILOVERS = "rmq_watchdog_failovers_total"
SWITCHOVERS = "rmq_watchdog_switchovers_total"


class Dispatched(WebhookNotifier):
    """Keeps the events the executor dispatches, sends nothing."""

    def __init__(self) -> None:
        super().__init__(())
        self.events: list[Event] = []

    def dispatch(self, event: Event) -> None:
        self.events.append(event)


def counted(metrics: WatchdogMetrics, name: str, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"broker_name": "broker-a", "outcome": outcome})


@pytest.mark.parametrize(
    ("plan", "kind"),
    [
        ({"kind": "promote", "steps": [{"kind": "stop"}, {"kind": "start"}]}, "promote"),
        ({"kind": "promote", "steps": [{"kind": "catch_up"}, {"kind": "stop_writes"}]},
         "switchover"),
        ({"kind": "fence", "steps": [{"kind": "stop"}]}, "fence"),
        ({"kind": "restore_role", "steps": []}, "restore_role"),
        ({"steps": [{}, {}]}, "promote"),  # a journal from before plans had a kind
        ({"kind": "promote", "steps": "garbage"}, "promote"),
    ],
)  # fmt: skip
def test_the_kind_a_journaled_plan_shows(plan: dict[str, Any], kind: str) -> None:
    assert journal_kind(plan) == kind


def test_an_old_journal_without_a_kind_reads_as_a_failover(tmp_path: Path) -> None:
    journal = Journal(tmp_path, clock=lambda: 1_700_000_000.0)
    journal.append("fo-old", "planned", plan={"broker_name": "broker-a", "steps": [{}]})
    journal.append("fo-old", "step_done", index=0)
    journal.append("fo-old", "finished", outcome="succeeded", duration_seconds=3.0)
    [row] = read_history(tmp_path)
    assert (row.kind, row.outcome, row.steps_done, row.write_pause_seconds) == (
        "promote",
        "succeeded",
        1,
        None,
    )
    assert row.to_json()["kind"] == "promote"


async def _run_switchover(
    world: World, *, caught_up: bool
) -> tuple[Path, WatchdogMetrics, Dispatched, list[dict[str, Any]]]:
    """A switchover by the real executor, its events fed to the daemon's event handler as
    the daemon feeds them (a planned switch); the state dir, metrics, webhooks, log lines."""
    config = world.config(has_kill=True)
    PersistingMaster(world, last_write=0 if caught_up else 300)
    level(world)
    metrics = WatchdogMetrics(CollectorRegistry(), include_process_metrics=False)
    journal = Journal(config.state_dir)

    def emit(event: str, fields: Mapping[str, Any]) -> None:
        log_failover_event(
            event, fields, metrics, 1_700_000_100.0, is_planned_switch=True, journal=journal
        )

    webhooks = Dispatched()
    with capture_logs() as logs:
        await world.executor(config, notifier=webhooks, emit=emit).run(
            switchover(world, config), "fo-1"
        )
    return Path(config.state_dir), metrics, webhooks, [dict(e) for e in logs]


def test_a_switchover_is_counted_named_and_listed_as_one(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        state_dir, metrics, webhooks, logs = await _run_switchover(world, caught_up=True)
        # Metrics: a switchover, not a failover.
        assert counted(metrics, SWITCHOVERS, "succeeded") == 1.0
        assert counted(metrics, FAILOVERS, "succeeded") is None
        get = metrics.registry.get_sample_value
        assert get("rmq_watchdog_switchover_duration_seconds_count") == 1.0
        assert get("rmq_watchdog_failover_duration_seconds_count") == 0.0
        assert get("rmq_watchdog_switchover_write_pause_seconds_count") == 1.0
        group = {"broker_name": "broker-a"}
        assert get("rmq_watchdog_last_switchover_timestamp_seconds", group) == 1_700_000_100.0
        assert get("rmq_watchdog_last_failover_timestamp_seconds", group) is None
        # Webhooks: switchover_* names and kind.
        names = [e.name for e in webhooks.events]
        assert names[0] == "switchover_started" and names[-1] == "switchover_succeeded", names
        assert {n for n in names if n.startswith("failover")} == set(), names
        assert {e.details["kind"] for e in webhooks.events} == {"switchover"}
        # The daemon's lines say switchover.
        said = [str(e["event"]) for e in logs]
        assert "switchover started" in said, said
        assert any(s.startswith("switchover succeeded: switchover of broker-a") for s in said)
        assert not any(s.startswith("failover ") for s in said), said
        # History: the kind, and the write pause from the journal.
        [row] = read_history(state_dir)
        assert (row.kind, row.outcome) == ("switchover", "succeeded")
        pause = row.write_pause_seconds
        assert pause is not None and row.duration_seconds is not None
        assert 0.0 <= pause <= row.duration_seconds
        assert get("rmq_watchdog_switchover_write_pause_seconds_sum") == pytest.approx(pause)
        header, line = render_history([row]).splitlines()
        assert " switchover " in line and "pause s" in header
        assert line[header.index("pause s") :].split()[0] == f"{pause:.2f}"
        assert json.loads(json.dumps(row.to_json()))["kind"] == "switchover"

    run(body, tmp_path)


def test_a_refused_switchover_does_not_read_as_a_failed_failover(tmp_path: Path) -> None:
    """The slave never reaches the stopped master's log end: writes given back, refused."""

    async def body(world: World) -> None:
        state_dir, metrics, webhooks, _ = await _run_switchover(world, caught_up=False)
        assert counted(metrics, SWITCHOVERS, "refused") == 1.0
        assert counted(metrics, FAILOVERS, "refused") is None
        # The writes were stopped, then given back: that pause is measured too.
        assert (
            metrics.registry.get_sample_value("rmq_watchdog_switchover_write_pause_seconds_count")
            == 1.0
        )
        assert [e.name for e in webhooks.events][-1] == "switchover_blocked"
        [row] = read_history(state_dir)
        assert (row.kind, row.outcome) == ("switchover", "refused")
        assert row.write_pause_seconds is not None

    run(body, tmp_path)


def _plan(*kinds: StepKind) -> Plan:
    return Plan(
        kind="promote",
        broker_name="broker-a",
        reason="as scripted",
        epoch=1,
        steps=tuple(Step(k, "broker-a:0", "local", f"{k}") for k in kinds),
        new_master_key="broker-a:1",
    )


def test_the_daemon_counts_its_switchovers_apart_from_its_failovers(tmp_path: Path) -> None:
    """Daemon._execute marks a switchover's run; its result (kind "promote", as a failover's)
    is then counted as a switchover, with the pause from the journal in the state dir."""
    config = make_config(tmp_path, dry_run=False)
    executors = Executors()
    daemon = Daemon(
        "watchdog.toml",
        config,
        prober=TickingProber(ProbeWorld()),
        hosts={"local": PropertiesHost({})},
        executor=executors,
        registry=CollectorRegistry(),
        wall_clock=lambda: 1_700_000_000.0,
    )
    journal = Journal(config.state_dir, clock=lambda: 1_700_000_010.0)
    journal.append("so-1", "writes_stopped", offset=5000)
    Journal(config.state_dir, clock=lambda: 1_700_000_011.5).append(
        "so-1", "step_done", kind="wait_master", index=5, phase="main"
    )

    async def go() -> None:
        await daemon._execute(_plan(StepKind.CATCH_UP, StepKind.STOP_WRITES), "so-1")
        await daemon._execute(_plan(StepKind.STOP, StepKind.START), "fo-2")

    with capture_logs() as logs:
        asyncio.run(go())
    metrics = daemon.metrics
    assert counted(metrics, SWITCHOVERS, "succeeded") == 1.0
    assert counted(metrics, FAILOVERS, "succeeded") == 1.0  # fo-2 only
    get = metrics.registry.get_sample_value
    assert get("rmq_watchdog_switchover_write_pause_seconds_sum") == pytest.approx(1.5)
    assert get("rmq_watchdog_failover_duration_seconds_count") == 1.0
    said = [str(e["event"]) for e in logs]
    assert said.count("switchover started") == 1 and said.count("failover started") == 1
    assert "switchover succeeded: scripted" in said and "failover succeeded: scripted" in said
    assert daemon._switchovers == set()  # forgotten once it ended
