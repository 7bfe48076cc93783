"""Hand-built clusters for detect/decide tests: one broker group failing as a function of time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hypothesis import strategies as st

from watchdog.config import BrokerConfig, DetectSettings, ProbeSettings
from watchdog.detect import ClusterVerdict, DetectorState, detect
from watchdog.model import (
    BrokerObservation,
    ClusterSnapshot,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)
from watchdog.model._snapshot import BrokerFailure

NS1 = "127.0.0.1:9876"
NS2 = "127.0.0.1:9877"
NS3 = "127.0.0.1:9878"
A0 = "127.0.0.1:10911"
A1 = "127.0.0.1:10921"
A2 = "127.0.0.1:10931"
TIMEOUT = "TimeoutError: no reply in 800 ms"
GARBAGE = "ProtocolError: frame length 1195725856 exceeds 16 MiB"

PROBE = ProbeSettings.model_validate({"interval": "1s", "timeout": "800ms"})


def settings(**kw: object) -> DetectSettings:
    values: dict[str, object] = {"down_after": "3s", "quorum": 1, "tilt_late": "2s"}
    values.update(kw)
    return DetectSettings.model_validate(values)


def broker_config(broker_id: int, addr: str, **kw: object) -> BrokerConfig:
    values: dict[str, object] = {
        "broker_name": "broker-a",
        "broker_id": broker_id,
        "addr": addr,
        "properties": f"/etc/rocketmq/broker-a-{broker_id}.properties",
        "start": ("start",),
        "stop": ("stop",),
    }
    values.update(kw)
    return BrokerConfig.model_validate(values)


BROKERS = (broker_config(0, A0), broker_config(1, A1))


def _between(t: float, window: tuple[float, float] | None) -> bool:
    return window is not None and window[0] <= t < window[1]


FOREVER = 1e9


@dataclass(frozen=True)
class World:
    """broker-a: master A0 (id 0), slave A1 (id 1); two nameservers; what fails when.

    The master's commitlog grows 100 bytes a second while it runs; the slave follows it
    `slave_lag_bytes` behind (or keeps growing on its own if `is_slave_advancing`).
    """

    master_down: tuple[float, float] | None = None  # [from, until) the master does not answer
    master_error: str = TIMEOUT
    # How its probes fail while it is down: "refused" is a crash's (or a firewall REJECT's)
    master_failure: BrokerFailure = "timeout"
    deregistered_by: tuple[str, ...] = ()  # nameservers that drop the master while it is down
    nameservers: tuple[str, ...] = (NS1, NS2)
    # Nameservers that answer but list nothing at all (restarted, no heartbeat yet)
    ns_empty: tuple[str, ...] = ()
    secondary: bool | None | str = "none"  # verdict of check "dc2" while down; "none": no check
    is_slave_advancing: bool = False
    slave_lag_bytes: int = 0
    slave_down: tuple[float, float] | None = None
    ns_down: tuple[str, ...] = ()
    cut_off: tuple[float, float] | None = None  # watchdog reaches nothing at all
    master_role: str = "ASYNC_MASTER"
    extra_slaves: tuple[tuple[int, str, int], ...] = ()  # (id, addr, lag bytes)
    slave_role: str = "SLAVE"
    slave_is_master_from: float | None = None  # A1 answers as master from this time
    base_offset: int = 1000

    def master_offset(self, t: float) -> int:
        stop = self.master_down[0] if self.master_down is not None else FOREVER
        return self.base_offset + int(100 * min(t, stop))

    def snapshot(self, t: float) -> ClusterSnapshot:
        cut = _between(t, self.cut_off)
        master_up = not cut and not _between(t, self.master_down)
        slave_up = not cut and not _between(t, self.slave_down)
        offset = self.master_offset(t)
        slave_offset = self.base_offset + int(100 * t) if self.is_slave_advancing else offset
        slave_offset -= self.slave_lag_bytes
        slave_role = self.slave_role
        if self.slave_is_master_from is not None and t >= self.slave_is_master_from:
            slave_role = "ASYNC_MASTER"
        brokers = [
            _obs(
                0, A0, master_up, self.master_role, offset, self.master_error, self.master_failure
            ),
            _obs(1, A1, slave_up, slave_role, slave_offset, TIMEOUT),
        ]
        for broker_id, addr, lag in self.extra_slaves:
            brokers.append(_obs(broker_id, addr, not cut, "SLAVE", offset - lag, TIMEOUT))
        registered = {0: A0, 1: A1}
        if slave_role in ("ASYNC_MASTER", "SYNC_MASTER"):
            registered = {0: A1}
            if master_up:
                registered[1] = A0  # a stand-in: A0 also answers, so the route flips
        nameservers = []
        for ns in self.nameservers:
            regs = dict(registered)
            if _between(t, self.master_down) and ns in self.deregistered_by:
                regs = {i: a for i, a in regs.items() if a != A0}
            if not slave_up and self.slave_down is not None:
                regs = {i: a for i, a in regs.items() if a != A1}
            if ns in self.ns_empty:
                regs = {}
            nameservers.append(_ns(ns, not cut and ns not in self.ns_down, regs))
        secondary: tuple[SecondaryObservation, ...] = ()
        if self.secondary != "none":
            alive = True if master_up else self.secondary
            assert alive is None or isinstance(alive, bool)
            secondary = (SecondaryObservation("dc2", A0, alive),)
        return ClusterSnapshot(
            cluster_name="XdclassCluster",
            taken_at=t,
            wall_time=1_700_000_000.0 + t,
            nameservers=tuple(nameservers),
            brokers=tuple(brokers),
            secondary=secondary,
        )


def _obs(
    broker_id: int,
    addr: str,
    is_up: bool,
    role: str,
    offset: int,
    error: str,
    failure: BrokerFailure = "timeout",
) -> BrokerObservation:
    if not is_up:
        return BrokerObservation(
            "broker-a", broker_id, addr, is_up=False, error=error, failure=failure
        )
    return BrokerObservation(
        "broker-a",
        broker_id,
        addr,
        is_up=True,
        latency_seconds=0.002,
        role=role,
        reported_broker_id=0 if role != "SLAVE" else broker_id,
        commitlog_max_offset=offset,
    )


def _ns(addr: str, is_up: bool, regs: dict[int, str]) -> NamesrvObservation:
    if not is_up:
        return NamesrvObservation(addr, is_up=False, error=TIMEOUT)
    registrations = tuple(Registration("broker-a", i, a) for i, a in sorted(regs.items()))
    return NamesrvObservation(addr, is_up=True, latency_seconds=0.001, registrations=registrations)


@dataclass
class Replay:
    """Feeds snapshots through detect with a fake clock and keeps every verdict."""

    settings: DetectSettings = field(default_factory=settings)
    probe: ProbeSettings = PROBE
    state: DetectorState = field(default_factory=DetectorState.initial)
    verdicts: list[ClusterVerdict] = field(default_factory=list)
    snapshots: list[ClusterSnapshot] = field(default_factory=list)

    def feed(self, snapshot: ClusterSnapshot) -> ClusterVerdict:
        self.state, verdict = detect(self.state, snapshot, self.settings, self.probe)
        self.verdicts.append(verdict)
        self.snapshots.append(snapshot)
        return verdict

    def run(self, world: World, times: Iterable[float]) -> ClusterVerdict:
        verdict: ClusterVerdict | None = None
        for t in times:
            verdict = self.feed(world.snapshot(t))
        assert verdict is not None
        return verdict


def seconds(start: float, stop: float, step: float = 1.0) -> list[float]:
    """Cycle start times from start to stop inclusive."""
    n = round((stop - start) / step)
    return [start + i * step for i in range(n + 1)]


# --- arbitrary snapshot runs (hypothesis) ----------------------------------------------

_ADDRS = [A0, A1, "127.0.0.1:10951", "127.0.0.1:10961"]
_NAMES = ["broker-a", "broker-b"]
_ROLES = st.sampled_from(["ASYNC_MASTER", "SYNC_MASTER", "SLAVE", "BANANA", "", None])

_brokers = st.builds(
    BrokerObservation,
    broker_name=st.sampled_from(_NAMES),
    broker_id=st.integers(-1, 3),
    addr=st.sampled_from(_ADDRS),
    is_up=st.booleans(),
    error=st.one_of(st.none(), st.just(GARBAGE)),
    role=_ROLES,
    commitlog_max_offset=st.one_of(st.none(), st.integers(-(2**63), 2**63)),
    failure=st.sampled_from([None, "refused", "refused", "timeout", "closed"]),
)
_registrations = st.builds(
    Registration,
    broker_name=st.sampled_from(_NAMES),
    broker_id=st.integers(-1, 3),
    addr=st.sampled_from(_ADDRS),
)
_nameservers = st.builds(
    NamesrvObservation,
    addr=st.sampled_from([NS1, NS2, NS3]),
    is_up=st.booleans(),
    registrations=st.lists(_registrations, max_size=5).map(tuple),
)
_secondary = st.builds(
    SecondaryObservation,
    name=st.sampled_from(["dc2", "dc3"]),
    target_addr=st.sampled_from(_ADDRS),
    is_alive=st.one_of(st.none(), st.booleans()),
)


@st.composite
def snapshot_runs(draw: st.DrawFn) -> list[ClusterSnapshot]:
    """Runs of arbitrary (also nonsensical) snapshots, for properties of detect and decide."""
    t = draw(st.floats(0, 1e6, allow_nan=False))
    snaps = []
    for _ in range(draw(st.integers(1, 8))):
        t += draw(st.sampled_from([1.0, 1.0, 1.0, 0.0, 0.3, 5.0, -2.0]))
        snaps.append(
            ClusterSnapshot(
                cluster_name="c",
                taken_at=t,
                wall_time=t,
                nameservers=tuple(draw(st.lists(_nameservers, max_size=3))),
                brokers=tuple(draw(st.lists(_brokers, max_size=5))),
                secondary=tuple(draw(st.lists(_secondary, max_size=2))),
            )
        )
    return snaps
