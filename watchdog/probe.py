"""Probe every nameserver, broker and secondary check once, concurrently, into one ClusterSnapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .config import BrokerConfig, WatchdogConfig
from .remoting import (
    ClientPool,
    RemotingError,
    get_broker_config,
    get_broker_runtime_info,
    get_cluster_info,
)
from .snapshot import (
    BrokerObservation,
    ClusterSnapshot,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)

__all__ = ["Prober", "SecondaryRunner", "describe_error", "probe_broker_alive"]

# A secondary check: (check name, master addr) -> observation. Runs on another host.
SecondaryRunner = Callable[[str, str], Awaitable[SecondaryObservation]]

_MASTER_ROLES = ("ASYNC_MASTER", "SYNC_MASTER")


def describe_error(exc: BaseException) -> str:
    """One short phrase for an exception, as it appears in snapshots, reasons and status."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass
class Prober:
    """Takes snapshots; owns the connection pool so connections survive between cycles."""

    config: WatchdogConfig
    pool: ClientPool
    secondary_runner: SecondaryRunner | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    async def snapshot(self) -> ClusterSnapshot:
        taken_at = self.clock()
        wall = self.wall_clock()
        timeout = self.config.probe.timeout_seconds
        ns_tasks = [self._probe_namesrv(addr, timeout) for addr in self.config.nameservers]
        broker_tasks = [self._probe_broker(b, timeout) for b in self.config.brokers]
        namesrvs, brokers = await asyncio.gather(
            asyncio.gather(*ns_tasks), asyncio.gather(*broker_tasks)
        )
        secondary = await self._secondary(brokers)
        return ClusterSnapshot(
            cluster_name=self.config.cluster_name,
            taken_at=taken_at,
            wall_time=wall,
            nameservers=tuple(namesrvs),
            brokers=tuple(brokers),
            secondary=secondary,
            duration_seconds=self.clock() - taken_at,
        )

    async def _probe_namesrv(self, addr: str, timeout: float) -> NamesrvObservation:
        started = self.clock()
        try:
            info = await get_cluster_info(self.pool.get(addr), timeout_seconds=timeout)
        except RemotingError as exc:
            return NamesrvObservation(addr=addr, is_up=False, error=describe_error(exc))
        registrations = tuple(
            Registration(broker_name=name, broker_id=int(broker_id), addr=broker_addr)
            for name, addrs in sorted(info.broker_addrs.items())
            for broker_id, broker_addr in sorted(addrs.items())
        )
        return NamesrvObservation(
            addr=addr,
            is_up=True,
            latency_seconds=self.clock() - started,
            registrations=registrations,
        )

    async def _probe_broker(self, broker: BrokerConfig, timeout: float) -> BrokerObservation:
        client = self.pool.get(broker.addr)
        started = self.clock()
        runtime_result, config_result = await asyncio.gather(
            get_broker_runtime_info(client, timeout_seconds=timeout),
            get_broker_config(client, timeout_seconds=timeout),
            return_exceptions=True,
        )
        latency = self.clock() - started
        if isinstance(runtime_result, BaseException):
            if not isinstance(runtime_result, RemotingError):
                raise runtime_result
            return BrokerObservation(
                broker_name=broker.broker_name,
                broker_id=broker.broker_id,
                addr=broker.addr,
                is_up=False,
                error=describe_error(runtime_result),
            )
        role: str | None = None
        reported_id: int | None = None
        error: str | None = None
        if isinstance(config_result, BaseException):
            if not isinstance(config_result, RemotingError):
                raise config_result
            error = "broker config: " + describe_error(config_result)
        else:
            role = config_result.get("brokerRole")
            reported_id = _to_int(config_result.get("brokerId"))
        return BrokerObservation(
            broker_name=broker.broker_name,
            broker_id=broker.broker_id,
            addr=broker.addr,
            is_up=True,
            latency_seconds=latency,
            error=error,
            role=role,
            reported_broker_id=reported_id,
            commitlog_max_offset=_to_int(runtime_result.get("commitLogMaxOffset")),
            version=runtime_result.get("brokerVersionDesc"),
            runtime=tuple(sorted(runtime_result.items())),
        )

    async def _secondary(
        self, brokers: Sequence[BrokerObservation]
    ) -> tuple[SecondaryObservation, ...]:
        if self.secondary_runner is None or not self.config.secondary_checks:
            return ()
        targets = _master_addrs(self.config, brokers)
        runner = self.secondary_runner
        jobs = [runner(check.name, addr) for check in self.config.secondary_checks for addr in targets]
        return tuple(await asyncio.gather(*jobs))


def _master_addrs(config: WatchdogConfig, brokers: Sequence[BrokerObservation]) -> list[str]:
    """Addresses a secondary check should look at: each group's master, by role or by config."""
    targets: list[str] = []
    for name in config.group_names():
        group = [b for b in brokers if b.broker_name == name]
        by_role = [b.addr for b in group if b.role in _MASTER_ROLES]
        if by_role:
            targets.extend(by_role)
            continue
        configured = config.broker(name, 0)
        if configured is not None:
            targets.append(configured.addr)
    return targets


async def probe_broker_alive(
    addr: str, *, timeout_seconds: float, connect_timeout_seconds: float
) -> tuple[bool, str]:
    """Ask one broker for its runtime info: (answered, detail). The `ping` command and checks use it."""
    pool = ClientPool(connect_timeout_seconds=connect_timeout_seconds)
    try:
        info = await get_broker_runtime_info(pool.get(addr), timeout_seconds=timeout_seconds)
    except RemotingError as exc:
        return False, describe_error(exc)
    finally:
        await pool.close_all()
    return True, f"commitLogMaxOffset={info.get('commitLogMaxOffset', '?')}"
