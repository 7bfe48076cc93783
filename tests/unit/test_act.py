"""The executor against temp files (LocalBackend) and stand-in brokers and nameservers.

The `World` (tests/unit/_act_world.py) plays the sandbox: broker-a master and slave as stand-in
brokers on two stand-in nameservers, their start and stop commands caught by its host.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.unit._act_world import (
    A0,
    A1,
    SimulatedCrash,
    World,
    WorldHost,
    backups,
    cut_off,
    run,
)
from watchdog.act import (
    Executor,
    FailoverResult,
    Journal,
    StateError,
    StateStore,
    StepFailed,
    StepRecord,
)
from watchdog.act._commitlog import CommitLogError
from watchdog.act._progress import Phase
from watchdog.act._steps import is_step_failure
from watchdog.config import ConfigError, WatchdogConfig
from watchdog.decide import Plan, Step, StepKind
from watchdog.hosts import CommandResult, HostError
from watchdog.model import PropertiesFile, WatchdogError
from watchdog.remoting import RemoteError, RemotingTimeout


def journal_events(config: WatchdogConfig, failover_id: str) -> list[dict[str, Any]]:
    return Journal(config.state_dir).read(failover_id)


def rewrite_plan(world: World, *edits: tuple[str, str], times: int = 1) -> Plan:
    step = Step(
        StepKind.REWRITE,
        A1,
        "local",
        "edit the slave",
        path=str(world.props(A1)),
        edits=tuple(edits),
    )
    return Plan("fence", "broker-a", "test", 0, (step,) * times)


# --------------------------------------------------------------------------- rewrites


def test_rewrite_keeps_every_other_byte_and_writes_one_backup(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        plan = rewrite_plan(world, ("brokerId", "0"), ("brokerRole", "SYNC_MASTER"), times=2)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        original = world.originals[A1]
        expected = original.replace(b"brokerId=1\r\n", b"brokerId=0\r\n").replace(
            b"brokerRole : SLAVE\r\n", b"brokerRole : SYNC_MASTER\r\n"
        )
        assert world.props(A1).read_bytes() == expected
        # The second rewrite of the same file found nothing to do and wrote no second backup.
        assert [b.read_bytes() for b in backups(world)] == [original]
        assert "already has" in result.steps[1].detail
        events = [e["event"] for e in journal_events(config, "fo-1")]
        assert events.count("backup_written") == 1

    run(body, tmp_path)


def test_a_rerun_of_done_steps_is_a_no_op(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        stop = Step(StepKind.STOP, A1, "local", "stop", argv=("fake-broker", "stop", A1))
        start = Step(StepKind.START, A1, "local", "start", argv=("fake-broker", "start", A1))
        rewrite = rewrite_plan(world, ("brokerRole", "SLAVE")).steps[0]
        plan = Plan("fence", "broker-a", "test", 0, (stop, rewrite, start))
        first = await world.executor(config).run(plan, "fo-1")
        assert first.outcome == "succeeded"
        assert "already has brokerRole=SLAVE" in first.steps[1].detail
        mtime = world.props(A1).stat().st_mtime_ns
        commands = list(world.host.commands)
        # Running the start again: it answers already, so the start command is not run again.
        again = await world.executor(config).run(Plan("fence", "broker-a", "t", 0, (start,)), "2")
        assert again.outcome == "succeeded"
        assert again.steps[0].detail.endswith("already answers")
        assert world.host.commands == commands
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert world.props(A1).stat().st_mtime_ns == mtime
        assert backups(world) == []
        # Stopping a stopped broker succeeds: the goal (it does not answer) is reached.
        await world.stop(A1)
        stopped = await world.executor(config).run(Plan("fence", "broker-a", "t", 0, (stop,)), "3")
        assert stopped.outcome == "succeeded"

    run(body, tmp_path)


def test_a_failing_best_effort_step_is_skipped(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config(step_timeout="1s")
        world.failing_commands.add("stop")
        stop = Step(
            StepKind.STOP,
            A0,
            "local",
            "fence the old master",
            argv=("fake-broker", "stop", A0),
            is_best_effort=True,
        )
        rewrite = rewrite_plan(world, ("brokerRole", "SLAVE")).steps[0]
        plan = Plan("fence", "broker-a", "test", 0, (stop, rewrite))
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded"
        assert [r.status for r in result.steps] == ["skipped", "done"]
        assert "still answers after stop" in result.steps[0].detail
        events = [e["event"] for e in journal_events(config, "fo-1")]
        assert "step_skipped" in events and "step_failed" not in events

    run(body, tmp_path)


def test_a_fence_kill_of_a_crashed_master_falls_back_to_its_stop(tmp_path: Path) -> None:
    """A crashed master has no process left: its kill command fails, its stop command (which
    succeeds on a stopped broker) confirms it, and the promotion goes on at once."""

    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        await world.stop(A0)  # crashed: refuses connections, dropped by the nameservers
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "succeeded", result
        [fence] = [r for r in result.steps if r.kind == "stop" and r.broker_key == A0]
        assert fence.status == "done"
        assert fence.detail.startswith("stopped after a failed kill"), fence.detail
        assert world.host.commands[:2] == [("kill", A0), ("stop", A0)]
        assert world.masters() == [world.brokers[A1].addr] * 2

    run(body, tmp_path)


def test_a_fence_kill_of_a_live_master_needs_no_stop(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        plan = replace(world.promotion(config), requires_master_down=False)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        [fence] = [r for r in result.steps if r.kind == "stop" and r.broker_key == A0]
        assert fence.detail.startswith("killed;"), fence.detail
        assert ("stop", A0) not in world.host.commands

    run(body, tmp_path)


# --------------------------------------------------------------------------- promotions


def test_no_fence_no_promotion_in_a_partition(tmp_path: Path) -> None:
    """The old master cannot be stopped on its host and is still registered: nothing is
    promoted, the candidate is not touched, the old master's file is as it was, and the next
    attempt waits fence_retry; no anti-flap block is set (nothing changed)."""

    async def body(world: World) -> None:
        config = world.config(fence_retry="45s")
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "awaiting_fence", result
        assert "still registered on 2 nameserver(s)" in result.detail
        assert ("stop", A1) not in world.host.commands and ("start", A1) not in world.host.commands
        assert world.masters() == [world.brokers[A0].addr] * 2
        assert world.props(A0).read_bytes() == world.originals[A0]  # rewrite undone
        assert world.props(A1).read_bytes() == world.originals[A1]
        state = StateStore(config.state_dir).load()
        group = state.group("broker-a")
        assert group.fence_retry_at is not None and group.blocked_until is None
        assert group.fence_wait_reason.startswith("its properties were rewritten but its stop")
        assert state.running == {} and group.epoch == 0
        statuses = [(r.kind, r.status) for r in result.steps]
        assert statuses[:3] == [
            ("rewrite", "done"),
            ("stop", "skipped"),
            ("confirm_fenced", "failed"),
        ]

    run(body, tmp_path)


GATE = Path(__file__).resolve().parents[2] / "deploy" / "broker-gate" / "rmq-broker-gate"


def gate(properties: Path) -> subprocess.CompletedProcess[str]:
    """The real broker-host gate (deploy/broker-gate) on a properties file and its record."""
    return subprocess.run(
        ["sh", str(GATE), str(properties)], capture_output=True, text=True, check=False
    )


class StopWatcher(WorldHost):
    """Keeps the old master's properties and epoch record as they are when its stop runs."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.at_stop: tuple[bytes, bytes] | None = None

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        if list(argv) == ["fake-broker", "stop", A0] and self.at_stop is None:
            props = self.world.props(A0)
            self.at_stop = (props.read_bytes(), Path(f"{props}.epoch").read_bytes())
        return await super().run(argv, timeout_seconds=timeout_seconds)


@pytest.mark.parametrize("side_by_side", [True, False])
def test_the_fence_rewrites_properties_and_epoch_record_before_the_stop(
    tmp_path: Path, side_by_side: bool
) -> None:
    """By the time the old master's stop runs, its file says SLAVE with the freed id and its
    epoch record says it may not be master: the real gate refuses it as master even from its
    old master properties put back (a configuration tool), and lets it start as a slave."""

    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        watcher = StopWatcher(world)
        world.host = watcher
        decided = {"deregistered_for_seconds": 0.0} if side_by_side else {}
        plan = world.promotion(config, **decided)
        assert bool(plan.lanes) is side_by_side
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        assert watcher.at_stop is not None
        props, record = watcher.at_stop
        values = PropertiesFile.parse(props.decode("latin-1"))
        assert (values.get("brokerId"), values.get("brokerRole")) == ("1", "SLAVE")
        assert "may_be_master=false\n" in record.decode() and "master_addr=\n" in record.decode()
        fence_rewrite = next(r for r in result.steps if r.index == 0)
        assert fence_rewrite.detail.endswith(".epoch: may_be_master=false")
        put_back = tmp_path / "put-back" / "a0.properties"
        put_back.parent.mkdir()
        Path(f"{put_back}.epoch").write_bytes(record)
        put_back.write_bytes(world.originals[A0])
        refused = gate(put_back)
        assert refused.returncode == 1, refused
        put_back.write_bytes(props)
        assert gate(put_back).returncode == 0

    run(body, tmp_path)


@pytest.mark.parametrize("had_record", [True, False])
def test_no_fence_puts_the_old_masters_epoch_record_back(tmp_path: Path, had_record: bool) -> None:
    """Not fenced: the record is as it was, or, when it had none, one that lets it start as
    the master it still is; the real gate lets its master properties start either way."""

    async def body(world: World) -> None:
        config = world.config(fence_retry="45s")
        record = Path(f"{world.props(A0)}.epoch")
        before = (
            "# written by rmq-watchdog\nepoch=3\nbroker_name=broker-a\n"
            f"master_addr={world.brokers[A0].addr}\nthis_addr={world.brokers[A0].addr}\n"
            "may_be_master=true\nrecorded_at=1700000000\n"
        )
        if had_record:
            record.write_text(before)
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "awaiting_fence", result
        assert world.props(A0).read_bytes() == world.originals[A0]
        if had_record:
            assert record.read_text() == before
        else:
            assert "may_be_master=true\n" in record.read_text()
        allowed = gate(world.props(A0))
        assert allowed.returncode == 0 and "may start as master" in allowed.stdout, allowed

    run(body, tmp_path)


def test_a_fence_command_fences_when_the_host_cannot(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        marker = tmp_path / "fenced"
        config = world.config(fence_command=["touch", str(marker) + "-{broker_key}"])
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        # 1 MB/s: the bound grows by what the master may have stored while it was fenced.
        plan = world.promotion(config, max_loss_bytes=1000, master_write_rate=1e6)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        assert Path(f"{marker}-{A0}").exists()
        events = journal_events(config, "fo-1")
        fenced = [e for e in events if e["event"] == "fenced_by"]
        assert [e["path"] for e in fenced] == ["command"]
        ran = [e for e in events if e["event"] == "fence_command"]
        assert ran and ran[0]["exit_code"] == 0 and ran[0]["argv"][0] == "touch"
        [grown] = [e for e in events if e["event"] == "max_loss_bytes"]
        assert grown["planned"] == 1000 and grown["max_loss_bytes"] > 1000 + 1e6 * 0.1

    run(body, tmp_path)


def test_a_failing_fence_command_is_no_fence(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config(fence_command=["false"])
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "awaiting_fence", result

    run(body, tmp_path)


@pytest.mark.parametrize(("grace", "outcome"), [("0s", "succeeded"), ("1h", "awaiting_fence")])
def test_dropped_by_every_nameserver_fences_after_the_grace(
    tmp_path: Path, grace: str, outcome: str
) -> None:
    """The host cannot be reached, but no nameserver lists the master any more."""

    async def body(world: World) -> None:
        config = world.config(fence_grace=grace)
        await world.stop(A0)  # refuses and is dropped by both nameservers
        world.failing_commands.add(("stop", A0))
        plan = world.promotion(config, deregistered_for_seconds=5.0)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == outcome, result
        if outcome == "succeeded":
            fenced = [e for e in journal_events(config, "fo-1") if e["event"] == "fenced_by"]
            assert fenced[0]["path"] == "nameservers"
        else:
            assert "dropped by every answering nameserver only" in result.detail
            # Dropped everywhere: the candidate was stopped and rewritten side by side with
            # the fence; no fence, so it is a slave again, its file as it was, and the next
            # attempt waits fence_retry without an anti-flap block.
            assert plan.lanes == ("fence", "candidate")
            assert world.props(A1).read_bytes() == world.originals[A1]
            assert world.props(A0).read_bytes() == world.originals[A0]
            assert "may_be_master=true\n" in Path(f"{world.props(A0)}.epoch").read_text()
            slave = world.brokers[A1]
            assert (slave.broker_role, slave.broker_id, slave.fault) == ("SLAVE", 1, "ok")
            assert world.masters() == [None, None]
            group = StateStore(config.state_dir).load().group("broker-a")
            assert group.fence_retry_at is not None and group.blocked_until is None
            assert group.epoch == 0

    run(body, tmp_path)


def test_an_operator_confirmation_is_a_fence(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        plan = world.promotion(config, fenced_by_operator=True)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        fenced = [e for e in journal_events(config, "fo-1") if e["event"] == "fenced_by"]
        assert fenced[0]["path"] == "operator"

    run(body, tmp_path)


def test_a_promotion_end_to_end(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)  # the master died
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "succeeded", result
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert world.brokers[A1].broker_role == "ASYNC_MASTER"
        assert b"brokerId=1\r\n" in world.props(A0).read_bytes()  # fenced
        state = StateStore(config.state_dir).load()
        group = state.group("broker-a")
        assert (group.epoch, group.master_key, group.promotion_offset) == (1, A1, 4800)
        assert group.rejoin_check_key == A0 and group.is_blocked(1e12) is False
        assert state.running == {}
        epoch = Path(f"{world.props(A1)}.epoch").read_text()
        assert "epoch=1\n" in epoch and "may_be_master=true" in epoch
        kv = world.namesrvs[0].kv[("rmq-watchdog", "broker-a")]
        assert json.loads(kv)["master_key"] == A1
        assert world.canary_calls == 1

    run(body, tmp_path)


def test_a_failed_wait_master_rolls_back_and_restores_the_backups(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        world.is_registering = False  # the new master never shows up on a nameserver
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "rolled_back", result
        assert "wait_master" in result.detail and "not registered as master" in result.detail
        # Both files are back byte for byte; the candidate runs again, as a slave.
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.brokers[A1].fault == "ok"
        assert (world.brokers[A1].broker_id, world.brokers[A1].broker_role) == (1, "SLAVE")
        rolled = [r for r in result.steps if r.phase == "rollback"]
        assert [r.kind for r in rolled] == ["stop", "rewrite", "start", "rewrite"]
        assert all(r.status == "done" for r in rolled), rolled
        assert "restored" in rolled[1].detail
        assert world.canary_calls == 0
        state = StateStore(config.state_dir).load()
        group = state.group("broker-a")
        assert group.last_outcome == "rolled_back" and group.epoch == 0
        assert group.blocked_until is not None and state.running == {}

    run(body, tmp_path)


def test_a_failed_canary_fails_without_rollback(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        world.canary_ok = False
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "failed" and "canary" in result.detail
        # The group has a registered master: undoing that would leave it with none.
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert not any(r.phase == "rollback" for r in result.steps)

    run(body, tmp_path)


class Unnamed(WatchdogError):
    """A WatchdogError the executor did not name before it caught the root."""


@pytest.mark.parametrize(
    ("exc", "is_failure"),
    [
        # The three the executor named before: retried, then recorded.
        (StepFailed("x"), True),
        (HostError("x"), True),
        (RemotingTimeout("x"), True),
        (RemoteError(1, "x", 10), True),
        # The root means any of them, and whatever else rmq-watchdog raises on purpose...
        (CommitLogError("x"), True),
        (Unnamed("x"), True),
        # ...but its own state and config: they propagate out of the run, as before.
        (StateError("x"), False),
        (ConfigError("x"), False),
        # Not raised on purpose: a bug, which surfaces.
        (ValueError("x"), False),
        (KeyError("x"), False),
    ],
)
def test_which_errors_fail_a_step(exc: BaseException, is_failure: bool) -> None:
    assert is_step_failure(exc) is is_failure


def test_an_unreadable_state_file_ends_the_run_instead_of_rolling_back(tmp_path: Path) -> None:
    """record_epoch cannot read state.json: the error surfaces (as it did before the executor
    caught WatchdogError); recorded as a failed step it would roll back a promotion that the
    cluster has taken. The journal keeps the run to resume."""

    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        executor = world.executor(config)
        canary = executor.context.canary
        assert canary is not None

        async def canary_then_corrupt(*args: Any) -> Any:
            outcome = await canary(*args)
            StateStore(config.state_dir).path.write_text("{not json")
            return outcome

        executor.context = replace(executor.context, canary=canary_then_corrupt)
        with pytest.raises(StateError, match="not a valid state file"):
            await executor.run(world.promotion(config), "fo-1")
        events = [e["event"] for e in journal_events(config, "fo-1")]
        assert events[-1] == "step_started" and "rollback_started" not in events
        assert "step_failed" not in events
        assert world.masters() == [world.brokers[A1].addr] * 2

    run(body, tmp_path)


def test_an_unwritable_candidate_file_is_refused_before_any_step(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        plan = world.promotion(config)
        world.props(A1).unlink()
        world.props(A1).mkdir()  # neither readable nor replaceable as a file
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "refused" and result.steps == ()
        assert "refused before any step" in result.detail and str(world.props(A1)) in result.detail
        assert world.host.commands == []
        assert not Journal(config.state_dir).path("fo-1").exists()
        assert StateStore(config.state_dir).load().group("broker-a").blocked_until is None
        assert world.props(A0).read_bytes() == world.originals[A0]

    run(body, tmp_path)


# --------------------------------------------------------------------------- journals and resume


def test_journal_progress_ignores_a_torn_last_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    plan = rewrite_plan_for_journal()
    journal.append("fo", "planned", plan=plan.to_json())
    journal.append("fo", "step_done", index=0, phase="main", kind="stop")
    journal.append("fo", "backup_written", broker_key=A1, backup="/x.bak")
    journal.append("fo", "promotion_offset", offset=4800)
    with journal.path("fo").open("a") as fh:
        fh.write('{"at": 1, "event": "step_done", "index": 1, "pha')  # the crash, mid-write
    progress = journal.progress("fo")
    assert progress.plan == plan
    assert progress.done_steps == frozenset({0})
    assert progress.backups == {A1: "/x.bak"}
    assert progress.promotion_offset == 4800
    assert not progress.is_finished and not progress.is_rolling_back


def test_journal_without_its_plan_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("fo", "step_done", index=0, phase="main")
    with pytest.raises(ValueError, match="does not start with its plan"):
        journal.progress("fo")


def rewrite_plan_for_journal() -> Plan:
    steps = (
        Step(StepKind.STOP, A0, "local", "stop", argv=("stop",)),
        Step(StepKind.REWRITE, A1, "local", "edit", path="/p", edits=(("brokerId", "0"),)),
    )
    return Plan("promote", "broker-a", "test", 1, steps)


@pytest.mark.parametrize("crash_after", range(1, 10))
def test_resume_after_each_step(tmp_path: Path, crash_after: int) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        plan = world.promotion(config)
        assert len(plan.steps) == 9
        await world.crash_after(config, plan, crash_after)
        journal = Journal(config.state_dir)
        progress = journal.progress("fo-1")
        assert progress.done_steps == frozenset(range(crash_after))
        assert StateStore(config.state_dir).load().running == {"broker-a": "fo-1"}
        commands_before = list(world.host.commands)

        # A new process: nothing in memory, only the journal and the state file.
        result: FailoverResult = await world.executor(config).run(
            progress.plan, "fo-1", resume=progress
        )
        assert result.outcome == "succeeded", result
        resumed_indexes = [r.index for r in result.steps]
        assert resumed_indexes == list(range(crash_after, 9))
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert world.brokers[A1].broker_role == "ASYNC_MASTER"
        state = StateStore(config.state_dir).load()
        assert state.running == {} and state.group("broker-a").epoch == 1
        # Promotion point noted before the crash survives it.
        assert state.group("broker-a").promotion_offset == 4800
        # Every command ran once over both runs: nothing done was done again.
        all_commands = commands_before + world.host.commands[len(commands_before) :]
        assert all_commands.count(("start", A1)) == 1
        assert all_commands.count(("stop", A1)) == 1
        assert len(backups(world)) == 3  # both properties files and the old master's record
        assert journal.progress("fo-1").is_finished

    run(body, tmp_path)


@pytest.mark.parametrize("crash_after", range(1, 10))
def test_resume_after_each_step_side_by_side(tmp_path: Path, crash_after: int) -> None:
    """The master crashed and is dropped everywhere: the fence and the candidate's stop and
    rewrite run side by side. A crash right after any step, with the other lane's step still
    running (it dies with the process), is resumed to the end: nothing journaled done runs
    again, and the candidate starts once, after the gate."""

    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        plan = world.promotion(config, deregistered_for_seconds=0.0)
        assert plan.lanes == ("fence", "candidate") and len(plan.steps) == 9
        # The fence's stop is the slow one (a stop command on a dead broker's host), so the
        # candidate's lane is mid-way when a fence step ends, and the other way round.
        world.command_seconds[("stop", A0)] = 0.2
        world.command_seconds[("stop", A1)] = 0.1
        await world.crash_after(config, plan, crash_after)
        journal = Journal(config.state_dir)
        progress = journal.progress("fo-1")
        done = progress.done_steps
        assert crash_after - 1 in done
        assert all(plan.waits_for(i) <= done for i in done)
        result: FailoverResult = await world.executor(config).run(
            progress.plan, "fo-1", resume=progress
        )
        assert result.outcome == "succeeded", result
        assert sorted(r.index for r in result.steps) == sorted(set(range(9)) - done)
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert world.brokers[A1].broker_role == "ASYNC_MASTER"
        assert world.host.commands.count(("start", A1)) == 1
        events = journal.read("fo-1")
        gate = next(
            i
            for i, e in enumerate(events)
            if e["event"] == "step_done" and e.get("kind") == "confirm_fenced"
        )
        start = next(
            i
            for i, e in enumerate(events)
            if e["event"] == "step_started" and e.get("kind") == "start"
        )
        assert gate < start
        state = StateStore(config.state_dir).load()
        assert state.running == {} and state.group("broker-a").epoch == 1

    run(body, tmp_path)


class WaitingFence(WorldHost):
    """The old master's stop command runs until the candidate's file says brokerId=0 (at most
    5 s): a run that did not rewrite the candidate side by side would not get past it."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.saw_candidate_rewritten = False

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        if list(argv) == ["fake-broker", "stop", A0]:
            for _ in range(100):
                text = self.world.props(A1).read_text(encoding="latin-1")
                if PropertiesFile.parse(text).get("brokerId") == "0":
                    self.saw_candidate_rewritten = True
                    break
                await asyncio.sleep(0.05)
        return await super().run(argv, timeout_seconds=timeout_seconds)


def test_the_candidates_stop_runs_while_the_old_master_is_fenced(tmp_path: Path) -> None:
    """Side by side: the candidate is stopped and rewritten while the fence's stop runs, and
    started only once the gate is done; the journal names each step's lane."""

    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        waiting = WaitingFence(world)
        world.host = waiting
        plan = world.promotion(config, deregistered_for_seconds=0.0)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        assert waiting.saw_candidate_rewritten
        events = [
            (e["event"], e["index"], e["lane"])
            for e in journal_events(config, "fo-1")
            if e["event"] in ("step_started", "step_done") and e["phase"] == "main"
        ]
        assert events[:2] == [("step_started", 0, "fence"), ("step_started", 2, "candidate")]
        at = {(event, index): i for i, (event, index, _) in enumerate(events)}
        # The candidate's lane ends before the fence's stop; the gate waits for both.
        assert at[("step_done", 3)] < at[("step_done", 1)] < at[("step_started", 4)]
        assert at[("step_done", 4)] < at[("step_started", 5)]  # the candidate's start
        assert {lane for _, index, lane in events if index in (0, 1)} == {"fence"}
        assert {lane for _, index, lane in events if index in (2, 3)} == {"candidate"}
        assert {lane for _, index, lane in events if index >= 4} == {""}

    run(body, tmp_path)


def test_a_failed_candidate_stop_lets_the_fence_step_end_and_starts_nothing(
    tmp_path: Path,
) -> None:
    async def body(world: World) -> None:
        config = world.config(step_timeout="2s")
        await world.stop(A0)
        world.command_seconds[("stop", A0)] = 0.3
        world.failing_commands.add(("stop", A1))  # it keeps answering: the stop fails
        plan = world.promotion(config, deregistered_for_seconds=0.0)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "failed", result
        assert result.detail.startswith("step 3 (stop) failed: ")
        kinds = {(e["event"], e.get("index")) for e in journal_events(config, "fo-1")}
        assert ("step_failed", 2) in kinds and ("step_done", 1) in kinds
        assert not {i for e, i in kinds if e == "step_started"} & {3, 4, 5}
        assert world.brokers[A1].broker_role == "SLAVE"

    run(body, tmp_path)


def test_resume_of_an_interrupted_rollback_finishes_it(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        world.is_registering = False
        plan = world.promotion(config)

        class CrashInRollback(Executor):
            async def _run_logged(
                self, step: Step, index: int, phase: Phase, *a: Any, **k: Any
            ) -> Any:
                record: StepRecord = await super()._run_logged(step, index, phase, *a, **k)
                if phase == "rollback" and index == 0:
                    raise SimulatedCrash
                return record

        with pytest.raises(SimulatedCrash):
            await world.executor(config, cls=CrashInRollback).run(plan, "fo-1")
        progress = Journal(config.state_dir).progress("fo-1")
        assert progress.is_rolling_back and not progress.is_finished
        result = await world.executor(config).run(plan, "fo-1", resume=progress)
        assert result.outcome == "rolled_back"
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.brokers[A1].broker_role == "SLAVE" and world.brokers[A1].fault == "ok"

    run(body, tmp_path)


def test_a_new_process_follows_the_recorded_master(tmp_path: Path) -> None:
    from watchdog.act import RecordedMaster, recorded_masters

    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "succeeded"
        state = StateStore(config.state_dir).load()
        journal = Journal(config.state_dir)
        assert recorded_masters(state, journal, config) == {
            "broker-a": RecordedMaster(world.brokers[A1].addr, "ASYNC_MASTER")
        }
        # A group the config no longer has is not followed.
        other = config.model_copy(update={"brokers": config.brokers[:0]})
        assert recorded_masters(state, journal, other) == {}

    run(body, tmp_path)


# --------------------------------------------------------------------------- stores moved aside


def test_a_store_moved_aside_is_counted_in_bytes_and_messages(tmp_path: Path) -> None:
    """The deposed master's log past the promotion point: how many bytes and messages went
    aside, and where, in the step detail, the journal and the fence's webhook event."""
    from tests.unit.test_commitlog import build_log

    async def body(world: World) -> None:
        config = world.config()
        store = tmp_path / "store-a0"
        (store / "commitlog").mkdir(parents=True)
        log, spans = build_log([("T", b"x" * 100)] * 5 + [("LATE", b"y" * 50)] * 3)
        (store / "commitlog" / f"{0:020d}").write_bytes(log + bytes(4096))
        with world.props(A0).open("a") as fh:
            fh.write(f"storePathRootDir={store}\r\n")
        point = spans[5][0]  # the new master was promoted after the fifth message
        step = Step(
            StepKind.MOVE_STORE_ASIDE, A0, "local", "move it aside", path=str(world.props(A0))
        )
        plan = Plan(
            "fence",
            "broker-a",
            "test",
            1,
            (step,),
            details=(("target_offset", str(len(log))), ("promotion_offset", str(point))),
        )
        events: list[tuple[str, dict[str, Any]]] = []
        executor = world.executor(config, emit=lambda e, f: events.append((e, dict(f))))
        result = await executor.run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        aside = f"{store}.rmq-watchdog-aside-fo-1"
        assert Path(aside).is_dir() and not store.exists()
        assert f"3 message(s), {len(log) - point} bytes past the promotion point" in (
            result.steps[0].detail
        )
        [entry] = [e for e in journal_events(config, "fo-1") if e["event"] == "store_moved_aside"]
        assert (entry["messages"], entry["bytes"], entry["path"]) == (3, len(log) - point, aside)
        assert "LATE 3" in entry["summary"]
        assert [f["messages"] for e, f in events if e == "store_moved_aside"] == [3]

    run(body, tmp_path)


def test_a_master_answering_again_before_its_stop_calls_the_promotion_off(
    tmp_path: Path,
) -> None:
    """Decided while the master was unreachable; by its fence it answers again (a partition
    healed): it is not stopped, its file is restored, the slave is not touched."""

    async def body(world: World) -> None:
        config = world.config()
        result = await world.executor(config).run(world.promotion(config), "fo-1")
        assert result.outcome == "awaiting_fence", result
        assert "answers again" in result.detail
        assert ("stop", A0) not in world.host.commands and ("stop", A1) not in world.host.commands
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.masters() == [world.brokers[A0].addr] * 2

    run(body, tmp_path)


def test_an_operators_forced_promotion_of_a_live_master_goes_on(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        plan = world.promotion(config, requires_master_down=False)
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        assert world.masters() == [world.brokers[A1].addr] * 2

    run(body, tmp_path)


def test_a_sync_master_promoted_as_async_is_recorded_as_lowered(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config()
        await world.stop(A0)
        plan = world.promotion(config, new_role="SYNC_MASTER")
        assert plan.new_role == "ASYNC_MASTER" and plan.lowered_from == "SYNC_MASTER"
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        group = StateStore(config.state_dir).load().group("broker-a")
        assert (group.lowered_from, group.lowered_by) == ("SYNC_MASTER", "fo-1")

    run(body, tmp_path)


def test_history_lists_failovers_and_waits_for_a_fence_from_the_journals(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from watchdog.commands._cli import cli
    from watchdog.observe import read_history, render_history

    async def body(world: World) -> None:
        config = world.config()
        await cut_off(world, A0)
        world.failing_commands.add(("stop", A0))
        await world.executor(config).run(world.promotion(config), "fo-1")  # awaiting_fence
        world.failing_commands.clear()
        await world.stop(A0)
        await world.executor(config).run(world.promotion(config), "fo-2")  # succeeded

    run(body, tmp_path)
    config_path = tmp_path / "watchdog.toml"
    rows = read_history(tmp_path / "state")
    assert [(r.failover_id, r.outcome, r.fenced_by) for r in rows] == [
        ("fo-1", "awaiting_fence", None),
        ("fo-2", "succeeded", "host"),
    ]
    assert rows[1].steps_done == rows[1].steps == 9 and rows[1].new_master == A1
    table = render_history(rows)
    assert table.splitlines()[0].split()[:3] == ["started", "(UTC)", "id"]
    assert "awaiting_fence" in table and "broker-a:0 -> broker-a:1" in table
    # The command: a config whose state_dir holds these journals.
    config_path.write_text(
        "\n".join(
            [
                'cluster_name = "c"',
                'nameservers = ["127.0.0.1:1"]',
                f'state_dir = "{tmp_path / "state"}"',
                "[[brokers]]",
                'broker_name = "broker-a"',
                "broker_id = 0",
                'addr = "127.0.0.1:2"',
                'properties = "/p"',
                'start = ["x"]',
                'stop = ["y"]',
            ]
        )
    )
    result = CliRunner().invoke(cli, ["history", "-c", str(config_path), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["outcome"] for r in json.loads(result.output)] == ["awaiting_fence", "succeeded"]
    bad = CliRunner().invoke(cli, ["history", "-c", str(config_path), "--broker-name", "nope"])
    assert bad.exit_code == 2 and "unknown broker group 'nope'" in bad.output


def test_a_store_moved_aside_keeps_the_plug_ins_secret_and_epoch(tmp_path: Path) -> None:
    """The plug-in's files live in the store root by default: the fresh store gets copies, so
    the rejoined broker can still be promoted in place and does not re-open old epochs."""

    async def body(world: World) -> None:
        config = world.config()
        store = tmp_path / "store-a0"
        (store / "commitlog").mkdir(parents=True)
        (store / "watchdog-plugin.secret").write_text("s" * 32)
        (store / "watchdog-plugin.secret").chmod(0o600)
        (store / "watchdog-plugin.epoch").write_text("3\n")
        with world.props(A0).open("a") as fh:
            fh.write(f"storePathRootDir={store}\r\n")
        step = Step(
            StepKind.MOVE_STORE_ASIDE, A0, "local", "move it aside", path=str(world.props(A0))
        )
        plan = Plan("fence", "broker-a", "test", 1, (step,))
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        aside = Path(f"{store}.rmq-watchdog-aside-fo-1")
        assert (aside / "commitlog").is_dir() and not (store / "commitlog").exists()
        assert (store / "watchdog-plugin.secret").read_text() == "s" * 32
        assert (store / "watchdog-plugin.secret").stat().st_mode & 0o777 == 0o600
        assert (store / "watchdog-plugin.epoch").read_text() == "3\n"
        assert (aside / "watchdog-plugin.secret").exists()  # the moved store keeps its own
        assert "the plug-in's watchdog-plugin.secret, watchdog-plugin.epoch kept" in (
            result.steps[0].detail
        )
        # Run again (a resumed run): nothing moved twice, nothing copied over the copies.
        (store / "watchdog-plugin.epoch").write_text("4\n")
        again = await world.executor(config).run(plan, "fo-1")
        assert again.steps[0].detail.startswith(f"store already moved to {aside}")
        assert (store / "watchdog-plugin.epoch").read_text() == "4\n"

    run(body, tmp_path)
