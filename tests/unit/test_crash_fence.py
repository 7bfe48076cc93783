"""A crash called down within one probe, then a supervisor restart: the fence, not detection,
keeps a second id 0 out.

The stand-in world of tests/unit/_act_world.py (stand-in brokers and nameservers, the executor on
temp files) is probed by the real prober, judged by detect and decide, and the promotion run by
the executor, while a "supervisor" brings the old master back. A monitor samples the brokers
every few milliseconds: at no moment may two of them answer as master.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tests.unit._act_world import A0, A1, WorldHost
from tests.unit._act_world import World as StandinWorld
from watchdog.config import WatchdogConfig
from watchdog.decide import Plan, Policy, Promote, decide, plan_promotion
from watchdog.detect import DetectorState, detect
from watchdog.hosts import CommandResult
from watchdog.model import MASTER_ROLES, GroupState
from watchdog.probe import Prober


class Monitor:
    """Which brokers answer as master, sampled until stopped; the worst moment is kept."""

    def __init__(self, world: StandinWorld) -> None:
        self.world = world
        self.most_masters: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def masters_now(self) -> list[str]:
        return sorted(
            key
            for key, node in self.world.brokers.items()
            if node.fault == "ok" and node.broker_role in MASTER_ROLES
        )

    async def _sample(self) -> None:
        while True:
            now = self.masters_now()
            if len(now) > len(self.most_masters):
                self.most_masters = now
            await asyncio.sleep(0.005)

    def __enter__(self) -> Monitor:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def crash_decision(world: StandinWorld, config: WatchdogConfig) -> Promote:
    """One healthy cycle, kill -9 of the master (it refuses and both nameservers drop it), and
    the first cycle after: a promotion decided by the crash rule."""
    prober = Prober(config, world.pool)
    state = DetectorState.initial()
    state, verdict = detect(state, await prober.snapshot(), config.detect, config.probe)
    assert verdict.groups[0].state is GroupState.HEALTHY, verdict.groups[0].reason
    await world.stop(A0)
    await asyncio.sleep(config.probe.interval_seconds)
    snapshot = await prober.snapshot()
    state, verdict = detect(state, snapshot, config.detect, config.probe)
    (group,) = verdict.groups
    assert group.is_odown and group.is_crash_confirmed, group.reason
    assert group.down_for_seconds < config.detect.down_after_seconds
    (decision,) = decide(snapshot, verdict, config.brokers, Policy(), now=time.time())
    assert isinstance(decision, Promote), decision
    assert "because master crashed: it refuses connections" in decision.reason
    return decision


def plan_of(world: StandinWorld, config: WatchdogConfig, decision: Promote) -> Plan:
    files = {key: world.props(key).read_text(encoding="latin-1") for key in world.brokers}
    plan = plan_promotion(decision, config, files, current_epoch=0)
    assert isinstance(plan, Plan), plan
    return plan


def run(body: Callable[[StandinWorld], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        async with StandinWorld(tmp_path) as world:
            await body(world)

    asyncio.run(main())


def test_back_as_master_before_its_fence_calls_the_promotion_off(tmp_path: Path) -> None:
    """The supervisor had it back, with its old master properties, by the time the fence
    comes to stop it: the promotion is called off, the old master stays the one master, its
    file is as it was. The slave, stopped and rewritten side by side with the fence (a crash:
    the plan fences in a lane of its own), never started as master: it is rolled back, its file
    as it was, and serves as a slave again."""

    async def body(world: StandinWorld) -> None:
        config = world.config()
        decision = await crash_decision(world, config)
        await world.start(A0)  # the supervisor's restart, reading brokerRole=ASYNC_MASTER
        with Monitor(world) as monitor:
            result = await world.executor(config).run(plan_of(world, config, decision), "fo-1")
        assert result.outcome == "awaiting_fence", result
        assert "answers again" in result.detail
        assert monitor.most_masters == [A0]
        assert world.masters() == [world.brokers[A0].addr] * 2
        assert world.props(A0).read_bytes() == world.originals[A0]
        assert world.props(A1).read_bytes() == world.originals[A1]
        assert [c for c in world.host.commands if c[1] == A1][-1] == ("start", A1)
        slave = world.brokers[A1]
        assert (slave.broker_role, slave.broker_id, slave.fault) == ("SLAVE", 1, "ok")

    run(body, tmp_path)


class SupervisedHost(WorldHost):
    """The old master runs under a supervisor: `boot_seconds` after any stop it is started
    again, from whatever its properties file says then."""

    def __init__(self, world: StandinWorld, boot_seconds: float) -> None:
        super().__init__(world)
        self.boot_seconds = boot_seconds
        self.restarts: list[asyncio.Task[None]] = []

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        result = await super().run(argv, timeout_seconds=timeout_seconds)
        if list(argv[:3]) == ["fake-broker", "stop", A0] and result.is_ok:
            self.restarts.append(asyncio.get_running_loop().create_task(self._restart()))
        return result

    async def _restart(self) -> None:
        await asyncio.sleep(self.boot_seconds)
        await self.world.start(A0)


def test_restarted_by_its_supervisor_after_the_fence_it_is_a_slave(tmp_path: Path) -> None:
    """Still booting when the fence comes (refusing connections, as a JVM does until it
    registers): the fence rewrites its file to SLAVE, then its stop kills the boot; the
    supervisor's next restart, a boot later, reads SLAVE and the freed id. One master, the
    promoted one, at every moment."""

    async def body(world: StandinWorld) -> None:
        config = world.config()
        decision = await crash_decision(world, config)
        supervised = SupervisedHost(world, boot_seconds=0.5)
        world.host = supervised
        with Monitor(world) as monitor:
            result = await world.executor(config).run(plan_of(world, config, decision), "fo-1")
            await asyncio.gather(*supervised.restarts)
        assert result.outcome == "succeeded", result
        assert monitor.most_masters == [A1]  # the old master never came back as one
        assert world.masters() == [world.brokers[A1].addr] * 2
        old = world.brokers[A0]
        assert (old.broker_role, old.broker_id, old.fault) == ("SLAVE", 1, "ok")
        assert monitor.masters_now() == [A1]

    run(body, tmp_path)
