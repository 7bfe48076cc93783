"""Probe every nameserver, broker and secondary check concurrently into one ClusterSnapshot."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .config import BrokerConfig, WatchdogConfig
from .hosts import Host
from .remoting import (
    ClientPool,
    RemotingClient,
    RemotingError,
    RemotingTimeout,
    RequestCode,
    get_broker_config,
    get_broker_runtime_info,
    invoke,
    parse_cluster_info,
)
from .snapshot import (
    BrokerObservation,
    ClusterSnapshot,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)

__all__ = [
    "BackgroundSecondaryChecks",
    "Prober",
    "client_pool",
    "SecondaryRunner",
    "describe_error",
]

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


@dataclass(frozen=True)
class _KnownConfig:
    """What a broker's GET_BROKER_CONFIG said, valid while its bootTimestamp stays the same."""

    boot_timestamp: str
    role: str | None
    reported_broker_id: int | None
    refresh_at: float  # prober clock: fetch again from then on even if nothing changed


@dataclass
class Prober:
    """Takes snapshots; owns the connection pool so connections survive between cycles.

    A broker's config (role, id) is fetched when the broker is new, answered with another
    bootTimestamp, failed its last probe or config fetch, or was last fetched 15 to 30 (per
    broker; `config_refresh_cycles`) probe intervals ago; otherwise the config of its last
    fetch is reused: a role change takes a restart (which changes bootTimestamp), and
    re-reading ~100 properties from every broker every cycle was a third of a cycle's CPU
    (bench/results/scale.md). The age bound catches a live UPDATE_BROKER_CONFIG of
    brokerRole, which changes no bootTimestamp.
    """

    config: WatchdogConfig
    pool: ClientPool
    secondary_runner: SecondaryRunner | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    config_refresh_cycles: int = 30
    _known_configs: dict[str, _KnownConfig] = field(default_factory=dict, init=False, repr=False)
    # Per nameserver: its last GET_BROKER_CLUSTER_INFO body and what it was read as.
    _last_cluster_info: dict[str, tuple[bytes, NamesrvObservation]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def snapshot(self, known_masters: Mapping[str, str] | None = None) -> ClusterSnapshot:
        """Probe everything once; `known_masters` (group -> addr, from detection) aims the
        secondary checks at the broker detection follows, also while it does not answer."""
        taken_at = self.clock()
        wall = self.wall_clock()
        timeout = self.config.probe.timeout_seconds
        ns_tasks = [self._probe_namesrv(addr, timeout) for addr in self.config.nameservers]
        broker_tasks = [self._probe_broker(b, timeout) for b in self.config.brokers]
        namesrvs, brokers = await asyncio.gather(
            asyncio.gather(*ns_tasks), asyncio.gather(*broker_tasks)
        )
        secondary = await self._secondary(brokers, known_masters or {})
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
        last = self._last_cluster_info.pop(addr, None)
        try:
            reply = await invoke(
                self.pool.get(addr), RequestCode.GET_BROKER_CLUSTER_INFO, timeout_seconds=timeout
            )
            if last is not None and reply.body == last[0]:
                # Unchanged since the last cycle (the usual case): parsing a 2,000-broker body
                # and indexing it again cost ~40 ms a cycle.
                observation = last[1].answered_again(self.clock() - started)
            else:
                info = parse_cluster_info(reply.body)
                observation = NamesrvObservation(
                    addr=addr,
                    is_up=True,
                    latency_seconds=self.clock() - started,
                    registrations=tuple(
                        Registration(broker_name=name, broker_id=int(broker_id), addr=broker_addr)
                        for name, addrs in sorted(info.broker_addrs.items())
                        for broker_id, broker_addr in sorted(addrs.items())
                    ),
                )
        except RemotingError as exc:
            return NamesrvObservation(addr=addr, is_up=False, error=describe_error(exc))
        self._last_cluster_info[addr] = (reply.body, observation)
        return observation

    async def _probe_broker(self, broker: BrokerConfig, timeout: float) -> BrokerObservation:
        client = self.pool.get(broker.addr)
        started = self.clock()
        known = self._known_configs.pop(broker.addr, None)
        if known is not None and started >= known.refresh_at:
            known = None
        config_result: dict[str, str] | BaseException | None = None
        if known is None:
            runtime_result, config_result = await asyncio.gather(
                get_broker_runtime_info(client, timeout_seconds=timeout),
                get_broker_config(client, timeout_seconds=timeout),
                return_exceptions=True,
            )
        else:
            try:
                runtime_result = await get_broker_runtime_info(client, timeout_seconds=timeout)
            except RemotingError as exc:
                runtime_result = exc
        if isinstance(runtime_result, BaseException):
            if not isinstance(runtime_result, RemotingError):
                raise runtime_result
            # Not kept: a broker that stopped answering may come back restarted, reconfigured.
            return BrokerObservation(
                broker_name=broker.broker_name,
                broker_id=broker.broker_id,
                addr=broker.addr,
                is_up=False,
                error=describe_error(runtime_result),
            )
        boot = runtime_result.get("bootTimestamp")
        if known is not None and boot != known.boot_timestamp:
            # Restarted between two probes that both answered: its role may have changed.
            remaining = timeout - (self.clock() - started)
            config_result = (
                await self._fetch_config(client, remaining)
                if remaining > 0
                else RemotingTimeout(f"{broker.addr}: no time left for GET_BROKER_CONFIG")
            )
            known = None
        latency = self.clock() - started
        role: str | None = None
        reported_id: int | None = None
        error: str | None = None
        if known is not None:
            role, reported_id = known.role, known.reported_broker_id
            self._known_configs[broker.addr] = known
        elif isinstance(config_result, BaseException):
            if not isinstance(config_result, RemotingError):
                raise config_result
            error = "broker config: " + describe_error(config_result)
        elif config_result is not None:
            role = config_result.get("brokerRole")
            reported_id = _to_int(config_result.get("brokerId"))
            if boot is not None:
                self._known_configs[broker.addr] = _KnownConfig(
                    boot, role, reported_id, started + self._config_age(broker.addr)
                )
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

    @staticmethod
    async def _fetch_config(
        client: RemotingClient, timeout: float
    ) -> dict[str, str] | RemotingError:
        try:
            return await get_broker_config(client, timeout_seconds=timeout)
        except RemotingError as exc:
            return exc

    @property
    def config_max_age_seconds(self) -> float:
        return self.config_refresh_cycles * self.config.probe.interval_seconds

    def _config_age(self, addr: str) -> float:
        # Between half and all of the maximum age, fixed per address: brokers first fetched in
        # the same cycle refresh in different cycles instead of all at once. In cycles rather
        # than seconds, so a slower cadence does not re-read configs more often per cycle.
        spread = zlib.crc32(addr.encode("utf-8")) / 2**32
        return self.config_max_age_seconds * (0.5 + 0.5 * spread)

    async def _secondary(
        self, brokers: Sequence[BrokerObservation], known_masters: Mapping[str, str]
    ) -> tuple[SecondaryObservation, ...]:
        if self.secondary_runner is None or not self.config.secondary_checks:
            return ()
        answering = {b.addr for b in brokers if b.is_up}
        # Only a master that stopped answering needs a second opinion (as MHA does); checking
        # healthy masters every cycle would cost a process per check per second for nothing.
        targets = [
            a for a in _master_addrs(self.config, brokers, known_masters) if a not in answering
        ]
        runner = self.secondary_runner
        jobs = [
            runner(check.name, addr) for check in self.config.secondary_checks for addr in targets
        ]
        return tuple(await asyncio.gather(*jobs))


def _master_addrs(
    config: WatchdogConfig, brokers: Sequence[BrokerObservation], known: Mapping[str, str]
) -> list[str]:
    """Addresses a secondary check should look at: each group's master as detection knows it,
    else the one answering with a master role, else the configured id 0."""
    targets: list[str] = []
    for name in config.group_names():
        group = [b for b in brokers if b.broker_name == name]
        by_role = [b.addr for b in group if b.role in _MASTER_ROLES]
        if name in known:
            targets.append(known[name])
            targets.extend(a for a in by_role if a != known[name])
            continue
        if by_role:
            targets.extend(by_role)
            continue
        configured = config.broker(name, 0)
        if configured is not None:
            targets.append(configured.addr)
    return targets


def client_pool(config: WatchdogConfig) -> ClientPool:
    """The connection pool every command probes with, as the config says."""
    return ClientPool(
        connect_timeout_seconds=config.probe.connect_timeout_seconds,
        source_address=config.probe.source_address,
    )


class BackgroundSecondaryChecks:
    """Secondary checks run from other hosts in the background; a cycle reads the latest result.

    A check over SSH can take longer than a probe interval; running it inline would stall the
    loop. Each (check, target) pair has at most one run in flight; a result older than
    `max_age_seconds` counts as unknown, so a stale "alive" cannot veto a down verdict for long.
    """

    def __init__(
        self,
        config: WatchdogConfig,
        hosts: Mapping[str, Host],
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = {c.name: c for c in config.secondary_checks}
        self.hosts = hosts
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._latest: dict[tuple[str, str], tuple[float, SecondaryObservation]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def __call__(self, name: str, addr: str) -> SecondaryObservation:
        key = (name, addr)
        task = self._running.get(key)
        if task is None or task.done():
            self._running[key] = asyncio.create_task(self._run(name, addr))
        latest = self._latest.get(key)
        if latest is None or self.clock() - latest[0] > self.max_age_seconds:
            return SecondaryObservation(name, addr, None, "no recent result")
        # Detection weighs it only if it began after the master went silent (started_at).
        return latest[1]

    async def _run(self, name: str, addr: str) -> None:
        started = self.clock()
        check = self.checks[name]
        argv = [part.replace("{addr}", addr) for part in check.command]
        host = self.hosts[check.host]
        try:
            result = await host.run(argv, timeout_seconds=check.timeout_seconds)
        except Exception as exc:  # a check must never take the loop down with it
            observation = SecondaryObservation(
                name, addr, None, describe_error(exc), started_at=started
            )
        else:
            is_alive: bool | None
            if result.exit_code == 0:
                is_alive, detail = True, "answered"
            elif result.exit_code == 1:
                is_alive, detail = False, result.stdout.strip()[:200]
            else:
                is_alive, detail = None, result.summary()
            observation = SecondaryObservation(name, addr, is_alive, detail, started_at=started)
        # Stamp with the start: the answer describes the master as it was when the check began.
        self._latest[(name, addr)] = (started, observation)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()
