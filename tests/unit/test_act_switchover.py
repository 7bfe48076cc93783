"""The switchover's steps run by the real executor against stand-in brokers (_act_world.World):
the write stop on the live master (its properties file, which UPDATE_BROKER_CONFIG rewrites
whole, put back), the catch-up bounds and their refusals (the writes given back, nothing else
changed, no block), a fence that fails, the rejoin verified, a crash after every step resumed.
The same on real 4.9.7 brokers: tests/integration/test_switchover.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit._act_world import A0, A1, World, run
from watchdog.act import FailoverResult, Journal, StateStore
from watchdog.config import WatchdogConfig
from watchdog.decide import Plan, plan_switchover
from watchdog.model import PropertiesFile
from watchdog.remoting import RemotingCommand, RequestCode, parse_properties


class PersistingMaster:
    """A0 answers UPDATE_BROKER_CONFIG as 4.9.7 does: applied live, then its whole config
    written over its `-c` properties file (Configuration.persist: every key, no comments).
    `last_write` bytes land in its log as the request is answered (a put that was already
    past the role check): the slave does not have them."""

    def __init__(self, world: World, *, last_write: int = 0) -> None:
        self.world = world
        self.last_write = last_write
        self.updates: list[dict[str, str]] = []
        node = world.brokers[A0]
        plain = node.handle

        def handle(cmd: RemotingCommand) -> RemotingCommand | None:
            reply = plain(cmd)
            if cmd.code == RequestCode.UPDATE_BROKER_CONFIG:
                self.updates.append(parse_properties(cmd.body, java_escapes=True))
                dump = "".join(f"{k}={v}\n" for k, v in sorted(node.config.items()))
                world.props(A0).write_text(dump)
                node.commitlog_max_offset += self.last_write
                self.last_write = 0
            return reply

        node.handle = handle  # type: ignore[method-assign]


def level(world: World) -> None:
    world.brokers[A1].commitlog_max_offset = world.brokers[A0].commitlog_max_offset


def switchover(world: World, config: WatchdogConfig, timeout: float = 0.6) -> Plan:
    decision = world.decision(
        candidate_offset=5000,
        expected_loss_bytes=0,
        max_loss_bytes=0,
        reason="switchover of broker-a",
        old_master_registered_on=2,
        requires_master_down=False,
    )
    plan = plan_switchover(decision, config, world.files(), 0, catch_up_timeout_seconds=timeout)
    assert isinstance(plan, Plan), plan
    return plan


def fenced_file(world: World) -> bytes:
    """A0's own file with only the fence's two keys changed."""
    text = world.originals[A0].decode("latin-1")
    edits = {"brokerId": "1", "brokerRole": "SLAVE"}
    return PropertiesFile.parse(text).with_values(edits).render().encode("latin-1")


def check_switched(world: World, config: WatchdogConfig, result: FailoverResult) -> None:
    assert result.outcome == "succeeded", result
    assert world.masters() == [world.brokers[A1].addr] * 2
    assert world.brokers[A1].broker_role == "ASYNC_MASTER"
    # The old master runs as a slave, from its own file with only the fence's edits: the
    # write stop's whole-file rewrite was undone at once.
    assert world.brokers[A0].broker_role == "SLAVE" and world.brokers[A0].broker_id == 1
    assert world.props(A0).read_bytes() == fenced_file(world)
    record = StateStore(config.state_dir).load().group("broker-a")
    assert (record.epoch, record.master_key, record.promotion_offset) == (1, A1, 5000)
    # A clean rejoin (it stopped at the promotion point): no check left for a later daemon,
    # and a planned switch blocks nothing.
    assert record.rejoin_check_key is None
    assert record.blocked_until is None
    (verify,) = [
        e
        for e in Journal(config.state_dir).read(result.failover_id)
        if e["event"] == "step_done" and e["kind"] == "verify_rejoin"
    ]
    assert "a clean rejoin" in verify["detail"], verify


def test_a_switchover_end_to_end(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        master = PersistingMaster(world)
        level(world)
        result = await world.executor(config).run(switchover(world, config), "fo-1")
        check_switched(world, config, result)
        assert master.updates == [{"brokerRole": "SLAVE", "brokerPermission": "4"}]
        stop = next(r for r in result.steps if r.kind == "stop_writes")
        assert "put back as it was" in stop.detail, stop
        events = Journal(config.state_dir).read("fo-1")
        assert [e["offset"] for e in events if e["event"] == "writes_stopped"] == [5000]
        # The old master killed (fenced) and the candidate stopped side by side, then started.
        commands = world.host.commands
        assert sorted(commands[:2]) == [("kill", A0), ("kill", A1)]
        assert commands[2:] == [("start", A1), ("start", A0)]

    run(body, tmp_path)


def test_refused_before_anything_changes(tmp_path: Path) -> None:
    """The slave 200 bytes behind and not growing (not replicating): no write is stopped."""

    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        master = PersistingMaster(world)
        result = await world.executor(config).run(switchover(world, config), "fo-1")
        assert result.outcome == "refused", result
        assert result.detail == (
            f"{A1}@{world.brokers[A1].addr} did not replicate to within 1048576 bytes of "
            f"{A0}'s log end within 0.6 s (its log end 4800, {A0}'s 5000: 200 bytes behind, "
            f"and not growing); {A0} takes writes again"
        )
        assert master.updates == [] and world.host.commands == []
        assert world.props(A0).read_bytes() == world.originals[A0]
        record = StateStore(config.state_dir).load().group("broker-a")
        assert record.blocked_until is None and record.epoch == 0

    run(body, tmp_path)


def test_refused_when_the_slave_does_not_catch_up_once_writes_stopped(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        master = PersistingMaster(world, last_write=300)  # a put that beat the role change
        level(world)
        result = await world.executor(config).run(switchover(world, config), "fo-1")
        assert result.outcome == "refused", result
        assert result.detail == (
            f"{A1}@{world.brokers[A1].addr} did not reach {A0}'s log end within 0.6 s (its "
            f"log end 5000, {A0}'s 5300: 300 bytes behind, and not growing); {A0} takes writes "
            "again"
        )
        # The writes given back in the running master, its own file byte for byte, nothing
        # else touched.
        assert master.updates == [
            {"brokerRole": "SLAVE", "brokerPermission": "4"},
            {"brokerRole": "ASYNC_MASTER", "brokerPermission": "6"},
        ]
        assert world.brokers[A0].config["brokerRole"] == "ASYNC_MASTER"
        assert world.brokers[A0].config["brokerPermission"] == "6"
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.host.commands == []
        assert world.masters() == [world.brokers[A0].addr] * 2
        state = StateStore(config.state_dir).load()
        assert state.running == {} and state.group("broker-a").blocked_until is None

    run(body, tmp_path)


def test_no_fence_gives_everything_back(tmp_path: Path) -> None:
    """The old master's kill fails and it still answers: no promotion. The candidate, stopped
    and rewritten side by side, is restored and started as a slave; the old master's file is
    put back and its writes given back in its running JVM."""

    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        world.failing_commands.add(("kill", A0))
        world.failing_commands.add(("stop", A0))
        master = PersistingMaster(world)
        level(world)
        result = await world.executor(config).run(switchover(world, config), "fo-1")
        assert result.outcome == "refused", result
        assert result.detail.endswith(f"{A0} takes writes again"), result.detail
        assert master.updates[-1] == {"brokerRole": "ASYNC_MASTER", "brokerPermission": "6"}
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert world.brokers[A1].broker_role == "SLAVE"
        assert world.masters() == [world.brokers[A0].addr] * 2
        epoch = Path(f"{world.props(A0)}.epoch")
        assert not epoch.exists() or "may_be_master=false" not in epoch.read_text()

    run(body, tmp_path)


@pytest.mark.parametrize("crash_after", range(1, 15))
def test_resume_after_each_step(tmp_path: Path, crash_after: int) -> None:
    async def body(world: World) -> None:
        config = world.config(has_kill=True)
        master = PersistingMaster(world)
        level(world)
        plan = switchover(world, config)
        assert len(plan.steps) == 14
        await world.crash_after(config, plan, crash_after)
        journal = Journal(config.state_dir)
        progress = journal.progress("fo-1")
        assert crash_after - 1 in progress.done_steps
        # A new process: only the journal and the state file.
        result = await world.executor(config).run(progress.plan, "fo-1", resume=progress)
        check_switched(world, config, result)
        # The write stop was asked once: a resumed run finds it taken.
        assert master.updates == [{"brokerRole": "SLAVE", "brokerPermission": "4"}]
        commands: list[Any] = world.host.commands
        assert commands.count(("start", A1)) == 1 and commands.count(("start", A0)) == 1

    run(body, tmp_path)
