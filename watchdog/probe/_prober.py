"""Probe every nameserver, broker and secondary check concurrently into one ClusterSnapshot."""

from __future__ import annotations

import asyncio
import errno
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from ..config import BrokerConfig, WatchdogConfig
from ..model import (
    MASTER_ROLES,
    BrokerObservation,
    ClusterSnapshot,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)
from ..model._snapshot import BrokerFailure
from ..remoting import (
    AclRefused,
    ClientPool,
    RemoteError,
    RemotingClient,
    RemotingClosed,
    RemotingCommand,
    RemotingConnectError,
    RemotingError,
    RemotingTimeout,
    RequestCode,
    broker_config_of,
    broker_runtime_info_of,
    describe_error,
    get_broker_config,
    get_broker_runtime_info,
    invoke,
    parse_cluster_info,
)

__all__ = ["Prober", "SecondaryRunner", "client_pool", "failure_of"]

# A secondary check: (check name, master addr) -> observation. Runs on another host.
SecondaryRunner = Callable[[str, str], Awaitable[SecondaryObservation]]


def failure_of(exc: RemotingError) -> BrokerFailure:
    """How a probe failed, for detection: a refused connect (a crash leaves nothing listening)
    is told apart from a timeout (a hang, SIGSTOP or partition may end any moment)."""
    if isinstance(exc, RemotingConnectError):
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
        if exc.errno is not None:
            return "unreachable"
        return "timeout"  # the connect timed out, or did not finish within the request timeout
    if isinstance(exc, RemotingTimeout):
        return "timeout"
    if isinstance(exc, RemotingClosed):
        return "closed"
    if isinstance(exc, RemoteError):
        return "remote_error"
    return "protocol"


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


_RUNTIME_INFO = RequestCode.GET_BROKER_RUNTIME_INFO
_BROKER_CONFIG = RequestCode.GET_BROKER_CONFIG
_RUNTIME_INFO_REQUEST = RemotingCommand(code=_RUNTIME_INFO)
_BROKER_CONFIG_REQUEST = RemotingCommand(code=_BROKER_CONFIG)
# How each request's reply is read: the same functions the typed calls use.
_READERS: dict[int, Callable[[RemotingCommand], dict[str, str]]] = {
    _RUNTIME_INFO: broker_runtime_info_of,
    _BROKER_CONFIG: broker_config_of,
}


@dataclass(frozen=True)
class _InFlight:
    """One broker's requests written by _probe_brokers, waiting for their replies."""

    index: int
    broker: BrokerConfig
    client: RemotingClient
    started: float
    known: _KnownConfig | None
    runtime: asyncio.Future[RemotingCommand]
    config: asyncio.Future[RemotingCommand] | None


def _outcome(
    client: RemotingClient, future: asyncio.Future[RemotingCommand], code: int, timeout: float
) -> dict[str, str] | BaseException:
    """What the typed call for `code` would have returned or raised for this request."""
    if not future.done():
        return client.expire(future, code, timeout)
    if future.cancelled():  # not done by anyone but expire(); never a reply to read
        return RemotingTimeout(f"{client.addr}: request code {code} was given up")
    failure = future.exception()
    if failure is not None:
        return failure
    try:
        return _READERS[code](future.result())
    except RemotingError as exc:
        return exc


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
    brokerRole, which changes no bootTimestamp; for a broker in a master role it is 5 to 10
    intervals (`master_config_refresh_factor`).
    """

    config: WatchdogConfig
    pool: ClientPool
    secondary_runner: SecondaryRunner | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    config_refresh_cycles: int = 30
    master_config_refresh_factor: int = 3  # masters: every 5-10 intervals by default
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
        namesrvs, brokers = await asyncio.gather(
            asyncio.gather(*ns_tasks), self._probe_brokers(self.config.brokers, timeout)
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

    async def _probe_brokers(
        self, brokers: Sequence[BrokerConfig], timeout: float
    ) -> list[BrokerObservation]:
        """Every broker at once. Requests on live connections are written from this task and
        share one deadline; a broker without one gets a task of its own that connects first.
        A task and a timer per broker were a fifth of a 2,000-broker cycle's CPU."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out: list[BrokerObservation | None] = [None] * len(brokers)
        batch: list[_InFlight] = []
        connecting: dict[int, asyncio.Task[BrokerObservation]] = {}
        try:
            for i, broker in enumerate(brokers):
                client = self.pool.get(broker.addr)
                started = self.clock()
                known = self._take_known_config(broker.addr, started)
                runtime = client.send_nowait(_RUNTIME_INFO_REQUEST)
                config = None
                if runtime is not None and known is None:
                    config = client.send_nowait(_BROKER_CONFIG_REQUEST)
                    if config is None:  # the connection broke on the first write
                        client.expire(runtime, _RUNTIME_INFO, timeout)
                        runtime = None
                if runtime is None:
                    connecting[i] = loop.create_task(
                        self._probe_broker(broker, client, timeout, started, known)
                    )
                else:
                    batch.append(_InFlight(i, broker, client, started, known, runtime, config))
            answered_at = await self._until_answered(batch, deadline)
            restarted: list[tuple[_InFlight, dict[str, str]]] = []
            for entry in batch:
                runtime_result = _outcome(entry.client, entry.runtime, _RUNTIME_INFO, timeout)
                config_result = (
                    None
                    if entry.config is None
                    else _outcome(entry.client, entry.config, _BROKER_CONFIG, timeout)
                )
                if (
                    entry.known is not None
                    and isinstance(runtime_result, dict)
                    and runtime_result.get("bootTimestamp") != entry.known.boot_timestamp
                ):
                    restarted.append((entry, runtime_result))
                    continue
                ends = [answered_at.get(f) for f in (entry.runtime, entry.config) if f is not None]
                ended = self.clock() if None in ends else max(e for e in ends if e is not None)
                out[entry.index] = self._observation(
                    entry.broker,
                    entry.started,
                    ended - entry.started,
                    entry.known,
                    runtime_result,
                    config_result,
                )
            rechecked = await asyncio.gather(
                *(
                    self._after_restart(e.broker, e.client, timeout, e.started, runtime)
                    for e, runtime in restarted
                )
            )
            for (entry, _), observation in zip(restarted, rechecked, strict=True):
                out[entry.index] = observation
            for i, observation in zip(
                connecting, await asyncio.gather(*connecting.values()), strict=True
            ):
                out[i] = observation
        finally:
            for entry in batch:  # only after a cancellation can any still be waiting
                for future in (entry.runtime, entry.config):
                    if future is not None and not future.done():
                        entry.client.expire(future, _RUNTIME_INFO, timeout)
            for task in connecting.values():
                task.cancel()
        assert all(o is not None for o in out)
        return cast(list[BrokerObservation], out)

    async def _until_answered(
        self, batch: Sequence[_InFlight], deadline: float
    ) -> dict[asyncio.Future[RemotingCommand], float]:
        """Wait until every request of `batch` is answered or `deadline` (loop time) passes;
        returns when (prober clock) each answered one was."""
        loop = asyncio.get_running_loop()
        futures = [f for e in batch for f in (e.runtime, e.config) if f is not None]
        answered_at: dict[asyncio.Future[RemotingCommand], float] = {}
        if not futures:
            return answered_at
        everything: asyncio.Future[None] = loop.create_future()
        left = len(futures)

        def on_answer(future: asyncio.Future[RemotingCommand]) -> None:
            nonlocal left
            answered_at[future] = self.clock()
            left -= 1
            if left == 0 and not everything.done():
                everything.set_result(None)

        def on_deadline() -> None:
            if not everything.done():
                everything.set_result(None)

        for future in futures:
            future.add_done_callback(on_answer)
        timer = loop.call_at(deadline, on_deadline)
        try:
            await everything
        finally:
            timer.cancel()
            for future in futures:
                future.remove_done_callback(on_answer)
        return answered_at

    async def _probe_broker(
        self,
        broker: BrokerConfig,
        client: RemotingClient,
        timeout: float,
        started: float,
        known: _KnownConfig | None,
    ) -> BrokerObservation:
        """One broker in a task of its own: the way for one that needs a connection first."""
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
        if (
            known is not None
            and isinstance(runtime_result, dict)
            and runtime_result.get("bootTimestamp") != known.boot_timestamp
        ):
            return await self._after_restart(broker, client, timeout, started, runtime_result)
        latency = self.clock() - started
        return self._observation(broker, started, latency, known, runtime_result, config_result)

    async def _after_restart(
        self,
        broker: BrokerConfig,
        client: RemotingClient,
        timeout: float,
        started: float,
        runtime: dict[str, str],
    ) -> BrokerObservation:
        """Restarted between two probes that both answered: its role may have changed, so the
        config is fetched within what is left of the probe's timeout."""
        remaining = timeout - (self.clock() - started)
        config_result = (
            await self._fetch_config(client, remaining)
            if remaining > 0
            else RemotingTimeout(f"{broker.addr}: no time left for GET_BROKER_CONFIG")
        )
        latency = self.clock() - started
        return self._observation(broker, started, latency, None, runtime, config_result)

    def forget_config(self, addr: str) -> None:
        """Fetch `addr`'s config again at its next probe: a broker promoted in place (the
        broker plug-in) changed its role and id without a restart, so its bootTimestamp says
        nothing changed."""
        self._known_configs.pop(addr, None)

    def _take_known_config(self, addr: str, now: float) -> _KnownConfig | None:
        """The config last fetched from `addr` if it may be reused now; it is put back by
        _observation() only if the broker answers this cycle."""
        known = self._known_configs.pop(addr, None)
        if known is not None and now >= known.refresh_at:
            return None
        return known

    def _observation(
        self,
        broker: BrokerConfig,
        started: float,
        latency: float,
        known: _KnownConfig | None,
        runtime_result: dict[str, str] | BaseException,
        config_result: dict[str, str] | BaseException | None,
    ) -> BrokerObservation:
        if isinstance(runtime_result, AclRefused):
            # An answer, from the broker's request thread: it is alive. Its ACL refused this
            # account, so its role and offsets are unknown (and no failover can pick it).
            return BrokerObservation(
                broker_name=broker.broker_name,
                broker_id=broker.broker_id,
                addr=broker.addr,
                is_up=True,
                latency_seconds=latency,
                error=describe_error(runtime_result),
                acl_refusal=runtime_result.reason,
            )
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
                failure=failure_of(runtime_result),
            )
        boot = runtime_result.get("bootTimestamp")
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
                    boot, role, reported_id, started + self._config_age(broker.addr, role)
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
            acl_refusal=config_result.reason if isinstance(config_result, AclRefused) else None,
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

    def _config_age(self, addr: str, role: str | None = None) -> float:
        # Between half and all of the maximum age, fixed per address: brokers first fetched in
        # the same cycle refresh in different cycles instead of all at once. In cycles rather
        # than seconds, so a slower cadence does not re-read configs more often per cycle.
        # A master's role is what its replacement takes, and an operator may switch it live
        # between ASYNC_MASTER and SYNC_MASTER: masters are re-read
        # `master_config_refresh_factor` times as often.
        spread = zlib.crc32(addr.encode("utf-8")) / 2**32
        max_age = self.config_max_age_seconds
        if role in MASTER_ROLES:
            max_age /= self.master_config_refresh_factor
        return max_age * (0.5 + 0.5 * spread)

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
        by_role = [b.addr for b in group if b.role in MASTER_ROLES]
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
    """The connection pool every command probes with, as the config says (signing every
    request with the [acl] account, if any)."""
    return ClientPool(
        connect_timeout_seconds=config.probe.connect_timeout_seconds,
        source_address=config.probe.source_address,
        credentials=config.acl_credentials(),
    )
