"""The executor runs a role restore (decide/_restore.py) against a stand-in master whose plug-in
side is played here: SET_MASTER_ROLE checked by the protocol (mac with the shared secret, an
epoch at least the last served, a master to switch). The real plug-in in real brokers:
tests/integration/test_role_restore.py."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.unit._act_world import A0, A1, CrashingExecutor, SimulatedCrash, World
from tests.unit.test_act_inplace import commands_on, secret_file
from watchdog.act import GroupRecord, Journal, StateStore, prepare_plan
from watchdog.config import WatchdogConfig
from watchdog.decide import Plan, RestoreRole, plan_role_restore
from watchdog.model import ClusterSnapshot
from watchdog.remoting import (
    PLUGIN_INFO,
    PROMOTION_REFUSED,
    SET_MASTER_ROLE,
    RemotingCommand,
    sign_request,
)
from watchdog.remoting.standin import StandinBroker

SECRET = b"0123456789abcdef0123456789abcdef"


@dataclass
class MasterPlugin:
    """The plug-in's PLUGIN_INFO and SET_MASTER_ROLE on the stand-in master."""

    node: StandinBroker
    last_epoch: int = 1
    requests: list[dict[str, str]] = field(default_factory=list)

    def attach(self) -> MasterPlugin:
        plain = self.node.handle

        def handle(cmd: RemotingCommand) -> RemotingCommand | None:
            if cmd.code in (PLUGIN_INFO, SET_MASTER_ROLE):
                return self.answer(cmd)
            return plain(cmd)

        self.node.handle = handle  # type: ignore[method-assign]
        return self

    def answer(self, cmd: RemotingCommand) -> RemotingCommand:
        node = self.node
        fields = dict(cmd.ext_fields)
        if cmd.code == PLUGIN_INFO:
            return node._reply(cmd, 0, ext_fields={
                "pluginVersion": "0.1.0", "rocketmqVersion": "4.9.7",
                "brokerRole": node.broker_role, "brokerId": str(node.broker_id),
                "lastEpoch": str(self.last_epoch), "maxPhyOffset": "5000",
                "dispatchBehindBytes": "0", "haMasterAddress": "", "secretLoaded": "true",
            })  # fmt: skip
        self.requests.append(fields)
        if not hmac.compare_digest(sign_request(SECRET, cmd.code, fields), fields.get("mac", "")):
            return node._reply(cmd, 16, remark="bad mac")
        if int(fields["epoch"]) < self.last_epoch:
            return self.refuse(cmd, "epoch_not_newer")
        if node.broker_role == "SLAVE":
            return self.refuse(cmd, "not_master")
        self.last_epoch = int(fields["epoch"])
        node.broker_role = fields["role"]  # MessageStoreConfig.setBrokerRole
        return node._reply(cmd, 0, ext_fields={"brokerRole": node.broker_role})

    def refuse(self, cmd: RemotingCommand, refusal: str) -> RemotingCommand:
        fields = {"refusal": refusal}
        return self.node._reply(cmd, PROMOTION_REFUSED, ext_fields=fields, remark="no")


def lowered(config: WatchdogConfig, epoch: int = 1) -> None:
    """state.json as the failover that lowered the group left it (A0 is the master here)."""
    store = StateStore(config.state_dir)
    record = GroupRecord(epoch=epoch, master_key=A0, lowered_from="SYNC_MASTER", lowered_by="F1")
    store.save(store.load().with_group("broker-a", record))


def restore_plan(world: World, config: WatchdogConfig, epoch: int = 1) -> Plan:
    decision = RestoreRole(
        broker_name="broker-a", master_key=A0, master_addr=world.brokers[A0].addr,
        role="SYNC_MASTER", current_role="ASYNC_MASTER", lowered_by="F1", slave_key=A1,
        slave_lag_bytes=0, plugin_version="0.1.0", reason="restoring broker-a's role",
    )  # fmt: skip
    files = {key: world.props(key).read_text(encoding="latin-1") for key in world.brokers}
    plan = plan_role_restore(decision, config, files, epoch)
    assert isinstance(plan, Plan), plan
    return plan


def run(body: Callable[[World, MasterPlugin, WatchdogConfig], Awaitable[None]], tmp: Path) -> None:
    async def main() -> None:
        async with World(tmp) as world:
            side = MasterPlugin(world.brokers[A0]).attach()
            config = world.config(
                promotion="inplace", plugin_secret_file=secret_file(world, SECRET)
            )
            lowered(config)
            await body(world, side, config)

    asyncio.run(main())


def file_role(world: World, key: str) -> str:
    text = world.props(key).read_text(encoding="latin-1")
    return next(line for line in text.splitlines() if line.startswith("brokerRole")).split()[-1]


def test_a_restore_switches_the_running_master_and_clears_the_record(tmp_path: Path) -> None:
    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        result = await world.executor(config).run(restore_plan(world, config), "rr-1")
        assert result.outcome == "succeeded", result
        assert result.detail == "restoring broker-a's role"
        assert world.brokers[A0].broker_role == "SYNC_MASTER"
        assert file_role(world, A0) == "SYNC_MASTER"
        assert commands_on(world, A0) == []  # neither stopped nor started
        [sent] = side.requests
        assert (sent["role"], sent["epoch"]) == ("SYNC_MASTER", "1")
        group = StateStore(config.state_dir).load().group("broker-a")
        assert (group.lowered_from, group.lowered_by, group.epoch) == (None, None, 1)
        switched = next(r for r in result.steps if r.kind == "set_master_role")
        assert switched.detail == (
            "ASYNC_MASTER -> SYNC_MASTER in the running JVM (epoch 1; no restart), "
            "GET_BROKER_CONFIG says brokerRole=SYNC_MASTER"
        )
        assert Journal(config.state_dir).progress("rr-1").is_finished

    run(body, tmp_path)


REFUSALS = [
    ("the plug-in served a newer epoch", {"last_epoch": 2}, "(epoch_not_newer)"),
    ("the watchdog's secret is not the broker's", {"secret": b"f" * 32}, "bad mac"),
]


@pytest.mark.parametrize(("fault", "why"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_refused_switch_fails_the_restore_once_and_keeps_the_record(
    tmp_path: Path, fault: dict[str, Any], why: str
) -> None:
    """Asked once (not retried: the next decision tries again later); the file already says
    SYNC_MASTER, so a restart would restore the role; the group stays recorded as lowered."""

    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        side.last_epoch = fault.get("last_epoch", 1)
        if "secret" in fault:
            other = secret_file(world, fault["secret"], "other.secret")
            config = world.config(promotion="inplace", plugin_secret_file=other)
        result = await world.executor(config).run(restore_plan(world, config), "rr-1")
        assert result.outcome == "failed", result
        assert (
            result.detail.startswith("step 2 (set_master_role) failed: ") and why in result.detail
        )
        assert len(side.requests) == 1
        assert world.brokers[A0].broker_role == "ASYNC_MASTER"
        assert file_role(world, A0) == "SYNC_MASTER"
        group = StateStore(config.state_dir).load().group("broker-a")
        assert (group.lowered_from, group.lowered_by) == ("SYNC_MASTER", "F1")

    run(body, tmp_path)


def test_a_master_that_became_a_slave_is_not_switched(tmp_path: Path) -> None:
    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        plan = restore_plan(world, config)
        world.brokers[A0].broker_role = "SLAVE"
        world.brokers[A0].broker_id = 1
        result = await world.executor(config).run(plan, "rr-1")
        assert result.outcome == "failed"
        assert "not switched: " in result.detail and "runs as SLAVE with id 1" in result.detail
        assert side.requests == []

    run(body, tmp_path)


@pytest.mark.parametrize("crash_after", [1, 2])
def test_a_restore_resumed_after_a_crash_finishes_once(tmp_path: Path, crash_after: int) -> None:
    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        crashing = world.executor(config, cls=CrashingExecutor)
        assert isinstance(crashing, CrashingExecutor)
        crashing.crash_after = crash_after
        with pytest.raises(SimulatedCrash):
            await crashing.run(restore_plan(world, config), "rr-1")
        progress = Journal(config.state_dir).progress("rr-1")
        result = await world.executor(config).run(progress.plan, "rr-1", resume=progress)
        assert result.outcome == "succeeded", result
        assert [r.index for r in result.steps] == list(range(crash_after, 3))
        assert len(side.requests) == 1  # switched once
        if crash_after == 2:
            assert not any(r.kind == "set_master_role" for r in result.steps)
        assert world.brokers[A0].broker_role == "SYNC_MASTER"
        assert StateStore(config.state_dir).load().group("broker-a").lowered_from is None

    run(body, tmp_path)


def test_a_master_switched_already_is_not_asked_again(tmp_path: Path) -> None:
    """A daemon killed while the request was out, or an operator quicker than the watchdog."""

    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        world.brokers[A0].broker_role = "SYNC_MASTER"
        result = await world.executor(config).run(restore_plan(world, config), "rr-1")
        assert result.outcome == "succeeded", result
        step = next(r for r in result.steps if r.kind == "set_master_role")
        assert step.detail == "already SYNC_MASTER (its plug-in's last epoch 1)"
        assert side.requests == []

    run(body, tmp_path)


def test_a_record_lowered_by_something_else_is_left_alone(tmp_path: Path) -> None:
    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        store = StateStore(config.state_dir)
        record = replace(store.load().group("broker-a"), lowered_from="SOMETHING_ELSE")
        store.save(store.load().with_group("broker-a", record))
        result = await world.executor(config).run(restore_plan(world, config), "rr-1")
        assert result.outcome == "succeeded", result
        step = next(r for r in result.steps if r.kind == "record_role")
        assert step.detail.startswith("left as it is: ")
        assert store.load().group("broker-a").lowered_from == "SOMETHING_ELSE"

    run(body, tmp_path)


def test_prepare_plan_plans_a_restore_at_the_group_s_epoch(tmp_path: Path) -> None:
    """What the daemon calls for any decision it acts on: the master's file read, the plan made
    at the epoch state.json holds, as plan_role_restore makes it."""

    async def body(world: World, side: MasterPlugin, config: WatchdogConfig) -> None:
        lowered(config, epoch=3)
        expected = restore_plan(world, config, epoch=3)
        decision = RestoreRole(
            broker_name="broker-a",
            master_key=A0,
            master_addr=world.brokers[A0].addr,
            role="SYNC_MASTER",
            current_role="ASYNC_MASTER",
            lowered_by="F1",
            slave_key=A1,
            slave_lag_bytes=0,
            plugin_version="0.1.0",
            reason="restoring broker-a's role",
        )
        state = StateStore(config.state_dir).load()
        unused = ClusterSnapshot("test", 0.0, 0.0, (), ())  # a Fence's plan reads it
        plan, files = await prepare_plan(decision, config, unused, {"local": world.host}, state)
        assert plan == expected and plan.epoch == 3
        assert files[A0] == world.props(A0).read_bytes().decode("latin-1")
        assert side.requests == []  # planning asks nothing of the plug-in

    run(body, tmp_path)
