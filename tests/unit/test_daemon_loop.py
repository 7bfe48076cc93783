"""The daemon's cycle with a fake clock and scripted snapshots: verdicts, logs, notify, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.unit._worlds import A0, A1, NS1, NS2, World
from watchdog.act import (
    FailoverResult,
    GroupRecord,
    JournalProgress,
    StateStore,
    StepRecord,
    WatchdogState,
)
from watchdog.commands import run_ack, run_failover
from watchdog.config import WatchdogConfig, parse_config
from watchdog.daemon import (
    ControlConnection,
    Daemon,
    DaemonLock,
    FailoverEvents,
    LockHeld,
)
from watchdog.decide import Plan
from watchdog.hosts import CommandResult, Host
from watchdog.model import ClusterSnapshot


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


class ScriptedProber:
    def __init__(self, world: World, clock: FakeClock) -> None:
        self.world = world
        self.clock = clock

    async def snapshot(self, known_masters: Any = None) -> ClusterSnapshot:
        return self.world.snapshot(self.clock.t)


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str | None = None) -> bool:
        self.sent.append(f"READY=1 {status}")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS={text}")
        return True

    def watchdog(self) -> bool:
        self.sent.append("WATCHDOG=1")
        return True

    def stopping(self, status: str | None = None) -> bool:
        self.sent.append("STOPPING=1")
        return True

    def reloading(self, status: str | None = None) -> bool:
        self.sent.append("RELOADING=1")
        return True


def make_config(tmp_path: Path, **extra: Any) -> WatchdogConfig:
    data: dict[str, Any] = {
        "cluster_name": "XdclassCluster",
        "nameservers": [NS1, NS2],
        "state_dir": str(tmp_path / "state"),
        "dry_run": True,
        "detect": {"down_after": "3s", "quorum": 2},
        "metrics": {"enabled": False},
        "brokers": [
            {
                "broker_name": "broker-a",
                "broker_id": i,
                "addr": a,
                "properties": f"/p{i}",
                "start": ["true"],
                "stop": ["true"],
            }
            for i, a in ((0, A0), (1, A1))
        ],
    }
    data.update(extra)
    return parse_config(data)


def make_daemon(tmp_path: Path, world: World, **extra: Any) -> tuple[Daemon, FakeClock, Any]:
    clock = FakeClock()
    notifier = RecordingNotifier()
    d = Daemon(
        "watchdog.toml",
        make_config(tmp_path, **extra),
        prober=ScriptedProber(world, clock),
        notifier=notifier,
        registry=CollectorRegistry(),
        clock=clock.now,
        wall_clock=clock.wall,
    )
    return d, clock, notifier


def run_cycles(d: Daemon, clock: FakeClock, until: float) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        while clock.t <= until:
            with capture_logs() as logs:
                await d.run_cycle()
            lines.extend(dict(e) for e in logs if "decision" in e)
            clock.t += 1.0
        return lines

    return asyncio.run(go())


def test_one_canonical_line_per_group_per_cycle_and_kill_detected_in_time(tmp_path: Path) -> None:
    world = World(master_down=(10.0, 1e9), deregistered_by=(NS1, NS2))
    d, clock, notifier = make_daemon(tmp_path, world)
    lines = run_cycles(d, clock, until=20.0)
    assert len(lines) == 21  # one group, one line per cycle
    assert [line["cycle"] for line in lines] == list(range(1, 22))
    assert lines[0]["event"] == f"no action: master broker-a@{A0} healthy"
    first_down = next(i for i, line in enumerate(lines) if line["state"] == "MASTER_ODOWN")
    # it last answered at t=9 and stops at t=10: down 3 s after its last answer at the
    # earliest, and never later than down_after + one cycle after the kill
    assert 9 + 3 <= first_down <= 10 + 3 + 1
    assert lines[first_down]["decision"] == "promote"
    assert lines[first_down]["event"].startswith("dry run, would act: promoting broker-a id=1")
    assert all(line["decision"] == "no_action" for line in lines[:first_down])


def test_a_pause_shorter_than_down_after_gives_no_down_verdict(tmp_path: Path) -> None:
    world = World(master_down=(10.0, 12.0))
    d, clock, _ = make_daemon(tmp_path, world)
    lines = run_cycles(d, clock, until=20.0)
    assert {line["state"] for line in lines} == {"HEALTHY"}
    assert {line["decision"] for line in lines} == {"no_action"}


def test_isolated_watchdog_decides_nothing(tmp_path: Path) -> None:
    world = World(cut_off=(5.0, 1e9))
    d, clock, _ = make_daemon(tmp_path, world)
    lines = run_cycles(d, clock, until=15.0)
    assert {line["state"] for line in lines[6:]} == {"ISOLATED"}
    assert {line["decision"] for line in lines} == {"no_action"}
    assert d.metrics.registry.get_sample_value("rmq_watchdog_isolated") == 1.0


def test_notify_ready_once_then_status_and_watchdog_every_cycle(tmp_path: Path) -> None:
    d, clock, notifier = make_daemon(tmp_path, World())
    run_cycles(d, clock, until=2.0)
    ready = [m for m in notifier.sent if m.startswith("READY=1")]
    assert ready == ["READY=1 cycle 1: broker-a HEALTHY"]
    assert notifier.sent.count("WATCHDOG=1") == 3
    assert "STATUS=cycle 3: broker-a HEALTHY" in notifier.sent


def test_metrics_mirror_the_last_cycle(tmp_path: Path) -> None:
    world = World(slave_down=(3.0, 1e9))
    d, clock, _ = make_daemon(tmp_path, world)
    run_cycles(d, clock, until=6.0)
    sample = d.metrics.registry.get_sample_value
    assert (
        sample("rmq_watchdog_group_state", {"broker_name": "broker-a", "state": "DEGRADED"}) == 1.0
    )
    assert (
        sample("rmq_watchdog_group_state", {"broker_name": "broker-a", "state": "HEALTHY"}) == 0.0
    )
    assert (
        sample("rmq_watchdog_broker_up", {"broker_name": "broker-a", "broker_id": "1", "addr": A1})
        == 0.0
    )
    assert (
        sample("rmq_watchdog_decisions_total", {"broker_name": "broker-a", "decision": "no_action"})
        == 7.0
    )


def test_a_second_actor_cannot_take_the_lock(tmp_path: Path) -> None:
    first = DaemonLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(LockHeld, match="held by another"):
            DaemonLock(tmp_path).acquire()
    finally:
        first.release()
    again = DaemonLock(tmp_path)
    again.acquire()
    again.release()


def test_gc_is_tuned_while_cycling_and_restored_after() -> None:
    import gc

    from watchdog.daemon._daemon import _GC_THRESHOLDS, _gc_tuned_for_cycles

    before = gc.get_threshold()
    with _gc_tuned_for_cycles():
        assert gc.get_threshold() == _GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


# --- the control socket: `rmq-watchdog failover` and `ack` ask the running daemon ----------


class TickingProber:
    """One second of the world per snapshot, so a daemon running on its own reaches ODOWN."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.t = 0.0

    async def snapshot(self, known_masters: Mapping[str, str] | None = None) -> ClusterSnapshot:
        snapshot = self.world.snapshot(self.t)
        self.t += 1.0
        return snapshot


class PropertiesHost:
    """A host holding the group's properties files; it runs nothing."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.name = "local"
        self.files = dict(files)

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        raise AssertionError(f"the fake executor runs no command: {argv}")

    async def read_file(self, path: str) -> bytes:
        return self.files[path].encode()

    async def write_file(self, path: str, data: bytes) -> None:
        raise AssertionError(f"the fake executor writes no file: {path}")

    async def has_command(self, name: str) -> bool:
        return False

    async def close(self) -> None:
        pass


class ScriptedExecutor:
    """Reports the first step done and the failover succeeded, changing nothing."""

    def __init__(self, emit: FailoverEvents) -> None:
        self.emit = emit
        self.plans: list[Plan] = []

    async def run(
        self, plan: Plan, failover_id: str, *, resume: JournalProgress | None = None
    ) -> FailoverResult:
        self.plans.append(plan)
        step = plan.steps[0]
        record = StepRecord(0, "main", step.kind, step.broker_key, "done", "as scripted", 0.25)
        result = FailoverResult(
            failover_id, plan.broker_name, plan.kind, "succeeded", "scripted", 0.5, (record,)
        )
        self.emit("failover_started", {"failover_id": failover_id, "plan": plan})
        self.emit("step_done", {"failover_id": failover_id, "record": record, "step": step})
        self.emit("failover_finished", {"failover_id": failover_id, "result": result})
        return result


class Executors:
    """The executor factory: one ScriptedExecutor per configuration."""

    def __init__(self) -> None:
        self.made: list[ScriptedExecutor] = []

    def __call__(
        self, config: WatchdogConfig, hosts: Mapping[str, Host], emit: FailoverEvents
    ) -> ScriptedExecutor:
        self.made.append(ScriptedExecutor(emit))
        return self.made[-1]


def properties(broker_id: int, role: str) -> str:
    return (
        "brokerClusterName=DefaultCluster\n"
        "brokerName=broker-a\n"
        f"brokerId={broker_id}\n"
        f"brokerRole={role}\n"
    )


def test_failover_and_ack_through_the_running_daemon(tmp_path: Path) -> None:
    """The CLI finds the lock held and asks the daemon: refused while the group is blocked,
    `ack` lifts the block, then the daemon plans the promotion and streams its run back."""
    config = make_config(
        tmp_path,
        dry_run=False,
        probe={"interval": "20ms", "timeout": "10ms"},
        failover={"auto_failover": False},  # only the operator fails over
    )
    world = World(master_down=(10.5, 1e9), deregistered_by=(NS1, NS2))
    executors = Executors()
    daemon = Daemon(
        "watchdog.toml",
        config,
        prober=TickingProber(world),
        notifier=RecordingNotifier(),
        hosts={
            "local": PropertiesHost(
                {"/p0": properties(0, "ASYNC_MASTER"), "/p1": properties(1, "SLAVE")}
            )
        },
        executor=executors,
        registry=CollectorRegistry(),
    )
    store = StateStore(config.state_dir)
    store.save(
        WatchdogState().with_group(
            "broker-a", GroupRecord(blocked_until=4e9, block_reason="failed over 5.0 min ago")
        )
    )

    def failover(out: list[str]) -> Any:
        return run_failover(
            config, "broker-a", dry_run=False, to_key=None, force=False, as_json=False,
            echo=out.append,
        )  # fmt: skip

    json_out: list[str] = []

    async def go() -> tuple[list[int], list[str], dict[str, Any] | None]:
        running = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(20):
                while daemon.cycle.verdict is None or not daemon.cycle.verdict.groups[0].is_odown:
                    await asyncio.sleep(0.02)
            out: list[str] = []
            codes = [
                await failover(out),
                await run_ack(config, "broker-a", echo=out.append),
                await failover(out),
                await run_failover(
                    config, "broker-a", dry_run=False, to_key=None, force=False, as_json=True,
                    echo=json_out.append,
                ),
            ]  # fmt: skip
            raw = await ControlConnection.open(config)
            await raw.send({"op": "ack", "broker_name": "broker-zz"})
            answer = await raw.answer()
            raw.close()
            return codes, out, answer
        finally:
            daemon.request_stop()
            await running

    with capture_logs():
        codes, out, answer = asyncio.run(go())
    plan, second = executors.made[-1].plans  # the second: the --json run
    assert plan.new_master_key == "broker-a:1"
    assert plan.reason.startswith("promoting broker-a id=1")
    # The daemon cycles on while the CLI asks: down for 3 s or a cycle or two more.
    assert " because master objectively down for " in plan.reason
    asking = "a running daemon holds the lock; asking it to fail over"
    assert out[:3] == [
        asking,
        "refused by the daemon: automatic and manual failovers of broker-a are blocked "
        "(failed over 5.0 min ago); `rmq-watchdog ack` or --force",
        "automatic failover of broker-a re-enabled",
    ]
    assert out[3] == asking
    assert out[4].endswith(f" accepted: {plan.reason}") and out[4].startswith("failover ")
    assert out[5:] == [
        f"  step 1 done: {plan.steps[0].purpose} — as scripted",
        "failover succeeded: scripted",
    ]
    # --json through the daemon: JSON lines only, and the exit code follows the result.
    assert second.new_master_key == "broker-a:1"
    assert json.loads(json_out[-1]) == {
        "event": "result", "outcome": "succeeded", "detail": "scripted"
    }  # fmt: skip
    assert codes[3] == 0, json_out  # was 1: the JSON branch never read the result
    assert codes[:3] == [1, 0, 0]
    assert store.load().group("broker-a").blocked_until is None
    assert answer == {"error": "unknown broker group 'broker-zz'"}
