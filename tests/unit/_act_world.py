"""The stand-in world the executor's tests run in: a `World` plays the sandbox.

Broker-a master and slave as stand-in brokers registered on two stand-in nameservers under the
brokerId their properties file says. Their start and stop commands (`fake-broker start|stop
KEY`) are caught by the host: the broker starts or stops listening and (un)registers, as a real
one would; every other command runs for real. test_act.py and the tests beside it (switchover,
restore, in-place promotion, unreachable hosts, the daemon's gate) run their plans in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from watchdog.act import Executor, Journal, StateStore, StepRecord
from watchdog.act._progress import Phase
from watchdog.act._run import FailoverRun
from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import Plan, Promote, Step, plan_promotion
from watchdog.hosts import CommandResult, LocalBackend
from watchdog.model import PropertiesFile
from watchdog.remoting import ClientPool
from watchdog.remoting.standin import StandinBroker, StandinServer

__all__ = [
    "A0",
    "A1",
    "Canary",
    "CrashingExecutor",
    "SimulatedCrash",
    "World",
    "WorldHost",
    "backups",
    "cut_off",
    "properties_text",
    "run",
]

A0, A1 = "broker-a:0", "broker-a:1"


def properties_text(broker_id: int, role: str, port: int) -> str:
    # Comments, odd separators and CRLF line ends: a rewrite must keep all of them.
    return (
        "# broker-a, kept by hand  \r\n"
        "brokerClusterName = DefaultCluster\r\n"
        "brokerName=broker-a\r\n"
        f"brokerId={broker_id}\r\n"
        "\r\n"
        "! old style comment\r\n"
        f"brokerRole : {role}\r\n"
        f"listenPort={port}\r\n"
        "flushDiskType=ASYNC_FLUSH\r\n"
    )


class WorldHost(LocalBackend):
    """LocalBackend for files and real commands; `fake-broker` commands act on the world."""

    def __init__(self, world: World) -> None:
        super().__init__("local")
        self.world = world
        self.commands: list[tuple[str, str]] = []

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        if argv and argv[0] == "fake-broker":
            action, key = argv[1], argv[2]
            self.commands.append((action, key))
            await asyncio.sleep(self.world.command_seconds.get((action, key), 0.0))
            if (
                action in self.world.failing_commands
                or (action, key) in self.world.failing_commands
            ):
                return CommandResult(tuple(argv), 1, "", f"{action} failed on purpose")
            if action == "kill":
                # As `kill -9 PID` does: an error when there is no process left to kill.
                if self.world.brokers[key].fault == "refuse":
                    return CommandResult(tuple(argv), 1, "", "no such process")
                await self.world.stop(key)
            elif action == "stop":
                await self.world.stop(key)
            else:
                await self.world.start(key)
            return CommandResult(tuple(argv), 0, "", "")
        return await super().run(argv, timeout_seconds=timeout_seconds)


@dataclass
class Canary:
    is_ok: bool
    detail: str


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.server = StandinServer()
        self.namesrvs = [self.server.add_namesrv(), self.server.add_namesrv()]
        self.brokers: dict[str, StandinBroker] = {
            A0: self.server.add_broker("broker-a", 0, register_with=self.namesrvs),
            A1: self.server.add_broker("broker-a", 1, register_with=self.namesrvs),
        }
        self.is_registering = True  # False: started brokers never show up on the nameservers
        self.failing_commands: set[str | tuple[str, str]] = set()
        self.command_seconds: dict[tuple[str, str], float] = {}  # how long a command takes
        self.host = WorldHost(self)
        self.pool = ClientPool(connect_timeout_seconds=0.3)
        self.canary_calls = 0
        self.canary_ok = True

    async def __aenter__(self) -> World:
        await self.server.start()
        self.brokers[A0].commitlog_max_offset = 5000
        self.brokers[A1].commitlog_max_offset = 4800
        for key, node in self.brokers.items():
            broker_id = int(key.split(":")[1])
            role = "ASYNC_MASTER" if broker_id == 0 else "SLAVE"
            self.props(key).write_bytes(properties_text(broker_id, role, node.port).encode())
        self.originals = {key: self.props(key).read_bytes() for key in self.brokers}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close_all()
        await self.server.stop()

    def props(self, key: str) -> Path:
        return self.tmp / f"{key.replace(':', '-')}.properties"

    def config(
        self, *, fence_command: Sequence[str] = (), has_kill: bool = False, **failover: Any
    ) -> WatchdogConfig:
        settings: dict[str, Any] = {
            "step_timeout": "3s",
            "promote_timeout": "1500ms",
            "canary_timeout": "1s",
        }
        settings.update(failover)
        return parse_config(
            {
                "cluster_name": "test",
                "nameservers": [ns.addr for ns in self.namesrvs],
                "state_dir": str(self.tmp / "state"),
                "hosts": {"local": {"kind": "local", "fence_command": list(fence_command)}},
                "probe": {"interval": "1s", "timeout": "500ms", "connect_timeout": "300ms"},
                "brokers": [
                    {
                        "broker_name": "broker-a",
                        "broker_id": int(key.split(":")[1]),
                        "addr": node.addr,
                        "properties": str(self.props(key)),
                        "start": ["fake-broker", "start", key],
                        "stop": ["fake-broker", "stop", key],
                        "kill": ["fake-broker", "kill", key] if has_kill else [],
                    }
                    for key, node in self.brokers.items()
                ],
                "failover": settings,
            }
        )

    async def stop(self, key: str) -> None:
        node = self.brokers[key]
        await node.set_fault("refuse")
        for ns in self.namesrvs:
            for name, ids in ns.registrations().items():
                for broker_id, addr in ids.items():
                    if addr == node.addr:
                        ns.unregister(name, broker_id)

    async def start(self, key: str) -> None:
        node = self.brokers[key]
        values = PropertiesFile.parse(self.props(key).read_text(encoding="latin-1"))
        node.broker_id = int(values.get("brokerId") or "-1")
        node.broker_role = values.get("brokerRole") or "?"
        await node.set_fault("ok")
        if self.is_registering:
            for ns in self.namesrvs:
                ns.register("broker-a", node.broker_id, node.addr)

    def executor(
        self,
        config: WatchdogConfig,
        *,
        cls: type[Executor] = Executor,
        **kw: Any,
    ) -> Executor:
        async def canary(
            namesrvs: Sequence[str], addr: str, name: str, topic: str, timeout: float
        ) -> Canary:
            self.canary_calls += 1
            return Canary(self.canary_ok, f"canary via {addr} on {topic}")

        return cls(
            config,
            {"local": self.host},
            self.pool,
            StateStore(config.state_dir),
            Journal(config.state_dir),
            canary=canary,
            **kw,
        )

    def decision(self, **decided: Any) -> Promote:
        """A1 promoted over A0: 4800 bytes against the master's 5000 unless `decided` says
        otherwise (any other Promote field too)."""
        fields: dict[str, Any] = {
            "broker_name": "broker-a",
            "old_master_key": A0,
            "old_master_addr": self.brokers[A0].addr,
            "candidate_key": A1,
            "candidate_addr": self.brokers[A1].addr,
            "candidate_offset": 4800,
            "expected_loss_bytes": 200,
            "new_role": "ASYNC_MASTER",
            "reason": "test promotion",
        }
        return Promote(**{**fields, **decided})

    def files(self) -> dict[str, str]:
        """Each broker's properties file as the planner reads it."""
        return {key: self.props(key).read_text(encoding="latin-1") for key in self.brokers}

    def promotion(self, config: WatchdogConfig, **decided: Any) -> Plan:
        plan = plan_promotion(self.decision(**decided), config, self.files(), current_epoch=0)
        assert isinstance(plan, Plan), plan
        return plan

    async def crash_after(self, config: WatchdogConfig, plan: Plan, step: int) -> None:
        """Run `plan` as failover fo-1 in a process that dies right after its main step number
        `step` (1-based) is journaled: what is left is the journal and the state file."""
        crashing = self.executor(config, cls=CrashingExecutor)
        assert isinstance(crashing, CrashingExecutor)
        crashing.crash_after = step
        with pytest.raises(SimulatedCrash):
            await crashing.run(plan, "fo-1")

    def masters(self) -> list[str | None]:
        return [ns.registrations().get("broker-a", {}).get(0) for ns in self.namesrvs]


def run(body: Callable[[World], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        async with World(tmp_path) as world:
            await body(world)

    asyncio.run(main())


def backups(world: World) -> list[Path]:
    return sorted(world.tmp.glob("*.bak"))


async def cut_off(world: World, key: str) -> None:
    """The broker is out of the watchdog's reach but still registered (a partition)."""
    await world.brokers[key].set_fault("refuse")


class SimulatedCrash(BaseException):
    """The process died right after a step was journaled (os._exit in the real hook)."""


class CrashingExecutor(Executor):
    """Dies right after the `crash_after`-th step (1-based) of `crash_phase` is journaled."""

    crash_after: int = 0
    crash_phase: Phase = "main"

    async def _run_logged(
        self,
        step: Step,
        index: int,
        phase: Phase,
        run: FailoverRun,
        *,
        restore_backup: bool = False,
    ) -> StepRecord:
        record = await super()._run_logged(step, index, phase, run, restore_backup=restore_backup)
        if phase == self.crash_phase and index + 1 == self.crash_after:
            raise SimulatedCrash
        return record
