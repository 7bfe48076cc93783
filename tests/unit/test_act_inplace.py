"""The executor's in-place path against stand-in brokers whose plug-in side is played here.

The stand-in candidate answers the plug-in's codes (30900-30903) by the protocol
(broker-plugin/README.md): it checks the mac with the shared secret and the epoch rule, and a
promotion makes it id 0 on the stand-in nameservers, as the plug-in's synchronous registration
does. Faults: a refusal, a wrong secret, a log not fully dispatched, a request that never gets
an answer, no plug-in at all. The real plug-in in real brokers: tests/integration.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.unit._act_world import A0, A1, CrashingExecutor, SimulatedCrash, World, backups
from watchdog.act import FailoverResult, Journal, StateStore
from watchdog.act._inplace import set_ha_master_step
from watchdog.act._prepare import ask_plugins
from watchdog.act._run import FailoverRun, StepFailed
from watchdog.config import WatchdogConfig
from watchdog.decide import Plan, Promote, Step, StepKind, plan_promotion
from watchdog.remoting import (
    PLUGIN_INFO,
    PROMOTE_IN_PLACE,
    PROMOTION_REFUSED,
    SET_HA_MASTER,
    RemotingCommand,
    sign_request,
)
from watchdog.remoting.standin import StandinBroker

SECRET = b"0123456789abcdef0123456789abcdef"


@dataclass
class PluginSide:
    """The plug-in's answers on one stand-in broker (its other codes answer as before)."""

    world: World
    node: StandinBroker
    refusal: str | None = None  # refuse every promotion with this
    is_present: bool = True  # False: REQUEST_CODE_NOT_SUPPORTED, as a broker without it
    is_hanging: bool = False  # the promote request is never answered
    last_epoch: int = 0
    requests: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def attach(self) -> PluginSide:
        plain = self.node.handle

        def handle(cmd: RemotingCommand) -> RemotingCommand | None:
            if cmd.code in (PLUGIN_INFO, PROMOTE_IN_PLACE, SET_HA_MASTER) and self.is_present:
                return self.answer(cmd)
            return plain(cmd)

        self.node.handle = handle  # type: ignore[method-assign]
        return self

    def reply(self, cmd: RemotingCommand, code: int, **fields: str) -> RemotingCommand:
        return self.node._reply(cmd, code, ext_fields=fields, remark=fields.get("remark"))

    def answer(self, cmd: RemotingCommand) -> RemotingCommand | None:
        fields = dict(cmd.ext_fields)
        self.requests.append((cmd.code, fields))
        node = self.node
        if cmd.code == PLUGIN_INFO:
            return self.reply(
                cmd,
                0,
                pluginVersion="0.1.0",
                rocketmqVersion="4.9.7",
                brokerRole=node.broker_role,
                brokerId=str(node.broker_id),
                lastEpoch=str(self.last_epoch),
                maxPhyOffset=str(node.commitlog_max_offset),
                dispatchBehindBytes=node.runtime_info()["dispatchBehindBytes"],
                haMasterAddress="",
                secretLoaded="true",
            )
        mac = sign_request(SECRET, cmd.code, fields)
        if not hmac.compare_digest(mac, fields.get("mac", "")):
            return self.node._reply(cmd, 16, remark="bad mac")
        epoch = int(fields["epoch"])
        if cmd.code == SET_HA_MASTER:
            return self.reply(cmd, 0)
        if self.is_hanging:
            return None
        if self.refusal is not None:
            return self.reply(cmd, PROMOTION_REFUSED, refusal=self.refusal, remark="no")
        if epoch <= self.last_epoch:
            return self.reply(cmd, PROMOTION_REFUSED, refusal="epoch_not_newer", remark="old")
        if int(fields["expectMaxPhyOffset"]) != node.commitlog_max_offset:
            return self.reply(cmd, PROMOTION_REFUSED, refusal="log_moved", remark="moved")
        self.last_epoch = epoch
        self.promote(fields["role"])
        return self.reply(
            cmd,
            0,
            promotionPoint=str(node.commitlog_max_offset),
            epoch=str(epoch),
            brokerRole=fields["role"],
        )

    def promote(self, role: str) -> None:
        """changeToMaster and the synchronous registration as id 0."""
        node = self.node
        for ns in self.world.namesrvs:
            ns.unregister("broker-a", node.broker_id)
            ns.register("broker-a", 0, node.addr)
        node.broker_id, node.broker_role = 0, role


def secret_file(world: World, content: bytes = SECRET, name: str = "plugin.secret") -> str:
    path = world.tmp / name
    path.write_bytes(content + b"\n")
    os.chmod(path, 0o600)
    return str(path)


def inplace_config(world: World, **failover: Any) -> WatchdogConfig:
    if "plugin_secret_file" not in failover:
        failover["plugin_secret_file"] = secret_file(world)
    return world.config(promotion="inplace", **failover)


async def inplace_plan(world: World, config: WatchdogConfig) -> Plan:
    """The plan as prepare_plan makes it: the plug-ins asked over the world's pool."""
    decision = Promote(
        broker_name="broker-a",
        old_master_key=A0,
        old_master_addr=world.brokers[A0].addr,
        candidate_key=A1,
        candidate_addr=world.brokers[A1].addr,
        candidate_offset=4800,
        expected_loss_bytes=200,
        new_role="ASYNC_MASTER",
        reason="test promotion",
        deregistered_for_seconds=0.0,
    )
    files = {key: world.props(key).read_text(encoding="latin-1") for key in world.brokers}
    plugins = await ask_plugins(config, world.pool, {A1: world.brokers[A1].addr})
    plan = plan_promotion(decision, config, files, 0, plugins=plugins)
    assert isinstance(plan, Plan), plan
    return plan


@dataclass
class Events:
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, event: str, fields: Any) -> None:
        self.seen.append((event, dict(fields)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for e, f in self.seen if e == name]


def run(body: Callable[[World, PluginSide], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        async with World(tmp_path) as world:
            await world.stop(A0)  # the master died
            side = PluginSide(world, world.brokers[A1]).attach()
            await body(world, side)

    asyncio.run(main())


def commands_on(world: World, key: str) -> list[str]:
    return [action for action, k in world.host.commands if k == key]


def promote_requests(side: PluginSide) -> int:
    return sum(1 for code, _ in side.requests if code == PROMOTE_IN_PLACE)


# --------------------------------------------------------------------------- promoted in place


def test_promoted_in_place_without_a_restart(tmp_path: Path) -> None:
    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        assert dict(plan.details)["path"].startswith("in place: ")
        events = Events()
        result = await world.executor(config, emit=events).run(plan, "fo-1")
        assert result.outcome == "succeeded", result
        assert result.detail == "test promotion; promoted in place"
        # Neither stopped nor started: the same process is the master now.
        assert commands_on(world, A1) == []
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert world.brokers[A1].broker_role == "ASYNC_MASTER"
        assert b"brokerId=0\r\n" in world.props(A1).read_bytes()
        assert b"brokerRole : ASYNC_MASTER\r\n" in world.props(A1).read_bytes()
        assert b"brokerId=1\r\n" in world.props(A0).read_bytes()  # fenced
        [sent] = [f for code, f in side.requests if code == PROMOTE_IN_PLACE]
        assert (sent["role"], sent["expectMaxPhyOffset"], sent["epoch"]) == (
            "ASYNC_MASTER",
            "4800",
            "1",
        )
        journal = Journal(config.state_dir).read("fo-1")
        assert [e["offset"] for e in journal if e["event"] == "promotion_offset"] == [4800]
        assert not [e for e in journal if e["event"] == "fallback_started"]
        group = StateStore(config.state_dir).load().group("broker-a")
        assert (group.epoch, group.master_key, group.promotion_offset) == (1, A1, 4800)
        [done] = events.named("inplace_promotion")
        assert done["result"] == "done" and "at offset 4800" in done["detail"]
        promoted = next(r for r in result.steps if r.kind == "promote_in_place")
        assert promoted.detail.startswith("promoted in place as ASYNC_MASTER at offset 4800")

    run(body, tmp_path)


# --------------------------------------------------------------------------- the fallback

FALLBACKS: list[tuple[str, dict[str, Any], str, str, int]] = [
    ("the plug-in refuses", {"refusal": "partial_tail"}, "refused", "(partial_tail)", 1),
    ("the watchdog's secret is not the broker's", {}, "refused", "bad mac", 1),
    (
        "the log is not fully dispatched: the watchdog does not ask",
        {"behind": "1024"},
        "fallback",
        "dispatchBehindBytes 1024",
        0,
    ),
    ("the promote request gets no answer", {"is_hanging": True}, "fallback", "outcome unknown", 1),
]


@pytest.mark.parametrize(
    ("fault", "result", "why", "asked"),
    [r[1:] for r in FALLBACKS],
    ids=[r[0] for r in FALLBACKS],
)
def test_a_failed_in_place_promotion_falls_back_to_a_restart(
    tmp_path: Path, fault: dict[str, Any], result: str, why: str, asked: int
) -> None:
    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world, step_timeout="2s")
        if fault.get("refusal"):
            side.refusal = fault["refusal"]
        side.is_hanging = bool(fault.get("is_hanging"))
        if "behind" in fault:
            world.brokers[A1].extra_runtime["dispatchBehindBytes"] = fault["behind"]
        plan = await inplace_plan(world, config)
        if result == "refused" and "mac" in why:
            wrong = secret_file(world, b"another-secret-of-32-bytes------", "wrong.secret")
            config = inplace_config(world, step_timeout="2s", plugin_secret_file=wrong)
        events = Events()
        done = await world.executor(config, emit=events).run(plan, "fo-1")
        assert done.outcome == "succeeded", done
        assert promote_requests(side) == asked
        # The restart path ran instead: stopped (its log end noted first), rewritten, started.
        assert commands_on(world, A1) == ["stop", "start"]
        assert world.masters() == [world.brokers[A1].addr] * 2
        assert world.brokers[A1].broker_role == "ASYNC_MASTER"
        journal = Journal(config.state_dir).read("fo-1")
        [fell] = [e for e in journal if e["event"] == "fallback_started"]
        assert fell["reason"].startswith("the in-place promotion (step 4) failed: ")
        assert why in fell["reason"]
        assert done.detail == f"test promotion; promoted by restart: {fell['reason']}"
        fallback = [e for e in journal if e.get("phase") == "fallback" and "status" not in e]
        assert [e["kind"] for e in fallback if e["event"] == "step_done"] == [
            "stop",
            "rewrite",
            "start",
        ]
        assert [e["offset"] for e in journal if e["event"] == "promotion_offset"] == [4800]
        order = ("promotion_offset", "fallback_started")
        noted = [e["event"] for e in journal if e["event"] in order]
        # Outcome unknown: the point is the log end it was asked at, noted before the fallback
        # (whose stop would read a log the broker may have written to as master since).
        assert noted[0] == ("promotion_offset" if "unknown" in why else "fallback_started")
        [tried] = events.named("inplace_promotion")
        assert tried["result"] == result and why in tried["detail"]
        # The main rewrite after the fallback finds the file as the fallback left it.
        rewrite = next(
            r for r in done.steps if (r.phase, r.kind, r.broker_key) == ("main", "rewrite", A1)
        )
        assert "already has" in rewrite.detail
        assert len(backups(world)) == 3

    run(body, tmp_path)


def test_a_broker_without_the_plug_in_is_planned_for_a_restart(tmp_path: Path) -> None:
    async def body(world: World, side: PluginSide) -> None:
        side.is_present = False
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        assert dict(plan.details)["path"] == (
            "restart: promotion = inplace but broker-a:1 has no plug-in (it answered "
            "REQUEST_CODE_NOT_SUPPORTED)"
        )
        assert plan.in_place_index is None
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "succeeded" and result.detail == "test promotion"
        assert commands_on(world, A1) == ["stop", "start"]

    run(body, tmp_path)


def test_promoted_in_place_but_never_registered_is_restarted_as_a_slave(
    tmp_path: Path,
) -> None:
    """No demote in place: the rollback stops it, restores its file and starts it again."""

    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        side.promote = lambda role: setattr(world.brokers[A1], "broker_role", role)  # type: ignore[method-assign]
        world.is_registering = False
        result = await world.executor(config).run(plan, "fo-1")
        assert result.outcome == "rolled_back", result
        assert commands_on(world, A1) == ["stop", "start"]
        assert world.brokers[A1].broker_role == "SLAVE"
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert world.props(A0).read_bytes() == world.originals[A0]

    run(body, tmp_path)


# --------------------------------------------------------------------------- crash and resume


@pytest.mark.parametrize("crash_after", range(1, 9))
def test_resume_after_each_step_in_place(tmp_path: Path, crash_after: int) -> None:
    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        assert len(plan.steps) == 8
        crashing = world.executor(config, cls=CrashingExecutor)
        assert isinstance(crashing, CrashingExecutor)
        crashing.crash_after = crash_after
        with pytest.raises(SimulatedCrash):
            await crashing.run(plan, "fo-1")
        progress = Journal(config.state_dir).progress("fo-1")
        assert progress.done_steps == frozenset(range(crash_after))
        result: FailoverResult = await world.executor(config).run(
            progress.plan, "fo-1", resume=progress
        )
        assert result.outcome == "succeeded", result
        assert [r.index for r in result.steps] == list(range(crash_after, 8))
        assert commands_on(world, A1) == [] and promote_requests(side) == 1
        assert world.masters() == [world.brokers[A1].addr] * 2
        group = StateStore(config.state_dir).load().group("broker-a")
        assert (group.epoch, group.promotion_offset) == (1, 4800)

    run(body, tmp_path)


def test_a_promotion_taken_but_not_journaled_is_not_sent_again(tmp_path: Path) -> None:
    """The daemon died while the promote request was out: the broker took it (lastEpoch is the
    plan's, it runs as master with id 0), the journal says only that the step started."""

    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        crashing = world.executor(config, cls=CrashingExecutor)
        assert isinstance(crashing, CrashingExecutor)
        crashing.crash_after = 3  # the gate
        with pytest.raises(SimulatedCrash):
            await crashing.run(plan, "fo-1")
        journal = Journal(config.state_dir)
        journal.append("fo-1", "step_started", index=3, phase="main", kind="promote_in_place")
        side.last_epoch = plan.epoch
        side.promote("ASYNC_MASTER")
        progress = journal.progress("fo-1")
        events = Events()
        result = await world.executor(config, emit=events).run(
            progress.plan, "fo-1", resume=progress
        )
        assert result.outcome == "succeeded", result
        assert promote_requests(side) == 0 and commands_on(world, A1) == []
        step = next(r for r in result.steps if r.kind == "promote_in_place")
        assert step.detail.startswith("already promoted in place at epoch 1")
        assert events.named("inplace_promotion")[0]["result"] == "done"
        # The promotion point is unknown: the plan's candidate offset stands in (the lower).
        assert StateStore(config.state_dir).load().group("broker-a").promotion_offset == 4800

    run(body, tmp_path)


def test_a_resumed_fallback_goes_on_where_it_stood(tmp_path: Path) -> None:
    async def body(world: World, side: PluginSide) -> None:
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        side.refusal = "busy"

        crashing = world.executor(config, cls=CrashingExecutor)
        assert isinstance(crashing, CrashingExecutor)
        crashing.crash_phase, crashing.crash_after = "fallback", 1  # after its first step
        with pytest.raises(SimulatedCrash):
            await crashing.run(plan, "fo-1")
        assert commands_on(world, A1) == ["stop"]
        progress = Journal(config.state_dir).progress("fo-1")
        assert progress.fallback_done == {0} and "(busy)" in (progress.fallback_reason or "")
        result = await world.executor(config).run(progress.plan, "fo-1", resume=progress)
        assert result.outcome == "succeeded", result
        assert [(r.phase, r.kind) for r in result.steps][:2] == [
            ("fallback", "rewrite"),
            ("fallback", "start"),
        ]
        assert promote_requests(side) == 1  # not asked again
        assert commands_on(world, A1) == ["stop", "start"]
        assert "promoted by restart" in result.detail

    run(body, tmp_path)


# --------------------------------------------------------------------------- SET_HA_MASTER


@pytest.mark.parametrize(
    ("slave_end", "expected"),
    [(4800, "replicates from"), (4700, "replicates from"), (4801, "past the promotion point")],
)
def test_set_ha_master_re_points_a_slave_not_past_the_promotion_point(
    tmp_path: Path, slave_end: int, expected: str
) -> None:
    async def body(world: World, side: PluginSide) -> None:
        # broker-a:0 plays a second slave here: the step asks its plug-in.
        other = PluginSide(world, world.brokers[A0]).attach()
        await world.start(A0)
        world.brokers[A0].commitlog_max_offset = slave_end
        config = inplace_config(world)
        plan = await inplace_plan(world, config)
        run_ = FailoverRun("fo-1", plan, 0.0, promotion_offset=4800)
        ctx = world.executor(config).context
        step = Step(StepKind.SET_HA_MASTER, A0, "local", "re-point", is_best_effort=True)
        if expected.startswith("past"):
            with pytest.raises(StepFailed, match=expected):
                await set_ha_master_step(ctx, run_, step)
            assert [c for c, _ in other.requests if c == SET_HA_MASTER] == []
            return
        detail = await set_ha_master_step(ctx, run_, step)
        assert detail.startswith(expected)
        [(_, sent)] = [(c, f) for c, f in other.requests if c == SET_HA_MASTER]
        host, _, port = world.brokers[A1].addr.rpartition(":")
        assert sent["haMasterAddress"] == f"{host}:{int(port) + 1}"
        assert (sent["masterAddress"], sent["epoch"]) == (world.brokers[A1].addr, "1")

    run(body, tmp_path)
