"""One probe cycle's immutable view of the cluster; an unreachable node is a value, not an error."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from ._roles import is_master_role

__all__ = [
    "BrokerFailure",
    "Registration",
    "NamesrvObservation",
    "BrokerObservation",
    "SecondaryObservation",
    "ClusterSnapshot",
]


# Why a broker gave no answer, as the prober saw it (never read from error text by detection):
#   refused      the TCP connect was refused (ECONNREFUSED): nothing listens on the port, or
#                a firewall rejects it (so detection never takes it alone as a crash)
#   unreachable  the connect failed otherwise (no route, network down)
#   timeout      no connection or no reply within the timeout (a hang, SIGSTOP, a partition)
#   closed       the connection was lost while a request waited for its reply
#   protocol     bytes that are not a RocketMQ reply, or a reply that cannot be read
#   remote_error the broker answered, with an error code
BrokerFailure = Literal["refused", "unreachable", "timeout", "closed", "protocol", "remote_error"]


@dataclass(frozen=True)
class Registration:
    """One `brokerName -> {brokerId: addr}` entry as a nameserver lists it."""

    broker_name: str
    broker_id: int
    addr: str


@dataclass(frozen=True)
class NamesrvObservation:
    addr: str
    is_up: bool
    latency_seconds: float | None = None
    error: str | None = None
    registrations: tuple[Registration, ...] = ()

    # Indexes built once per observation: a cycle asks them per group and per broker, and a
    # linear scan each time made a 2,000-broker cycle quadratic (bench/results/scale.md).
    @cached_property
    def _ids_by_addr(self) -> dict[str, tuple[int, ...]]:
        index: dict[str, list[int]] = {}
        for r in self.registrations:
            index.setdefault(r.addr, []).append(r.broker_id)
        return {addr: tuple(ids) for addr, ids in index.items()}

    @cached_property
    def _by_group(self) -> dict[str, tuple[Registration, ...]]:
        index: dict[str, list[Registration]] = {}
        for r in self.registrations:
            index.setdefault(r.broker_name, []).append(r)
        return {name: tuple(regs) for name, regs in index.items()}

    def answered_again(self, latency_seconds: float) -> NamesrvObservation:
        """This nameserver answering the same registrations again, sharing the indexes."""
        fresh = replace(self, is_up=True, latency_seconds=latency_seconds, error=None)
        # The indexes depend on `registrations` alone, which the copy shares.
        for name in ("_ids_by_addr", "_by_group"):
            if name in self.__dict__:
                fresh.__dict__[name] = self.__dict__[name]
        return fresh

    def ids_of(self, addr: str) -> tuple[int, ...]:
        """Broker ids under which this nameserver lists `addr` (normally zero or one)."""
        return self._ids_by_addr.get(addr, ())

    def group_registrations(self, broker_name: str) -> tuple[Registration, ...]:
        return self._by_group.get(broker_name, ())

    def master_addr(self, broker_name: str) -> str | None:
        for r in self.group_registrations(broker_name):
            if r.broker_id == 0:
                return r.addr
        return None


@dataclass(frozen=True)
class BrokerObservation:
    """What one broker answered this cycle; `is_up` means it answered runtime info, not just TCP:
    with its info, or with its ACL's refusal of the watchdog's account (`acl_refusal`), which
    shows it alive as well but leaves its role and offsets unknown."""

    broker_name: str
    broker_id: int  # the configured id (identity), not necessarily its current role
    addr: str
    is_up: bool
    latency_seconds: float | None = None
    error: str | None = None
    role: str | None = None  # brokerRole from GET_BROKER_CONFIG: ASYNC_MASTER, SYNC_MASTER, SLAVE
    reported_broker_id: int | None = None  # brokerId from GET_BROKER_CONFIG
    commitlog_max_offset: int | None = None
    version: str | None = None
    runtime: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # How the probe failed (None while it answers): detection's evidence, where `error` is
    # for humans. Last, so positional construction elsewhere keeps its meaning.
    failure: BrokerFailure | None = None
    # The reason the broker's ACL (aclEnable=true) gave for refusing the watchdog's requests,
    # e.g. "Check signature failed for accessKey=X"; None when it did not refuse them.
    acl_refusal: str | None = None

    @property
    def key(self) -> str:
        return f"{self.broker_name}:{self.broker_id}"

    @property
    def is_master_role(self) -> bool:
        return is_master_role(self.role)


@dataclass(frozen=True)
class SecondaryObservation:
    """A check of a broker made from another host: True alive, False down, None unknown."""

    name: str
    target_addr: str
    is_alive: bool | None
    detail: str = ""
    started_at: float | None = None  # monotonic time the check began; it describes that moment


@dataclass(frozen=True)
class ClusterSnapshot:
    cluster_name: str
    taken_at: float  # monotonic seconds when the cycle started
    wall_time: float  # time.time() at the same moment, for humans and metrics
    nameservers: tuple[NamesrvObservation, ...]
    brokers: tuple[BrokerObservation, ...]
    secondary: tuple[SecondaryObservation, ...] = ()
    duration_seconds: float = 0.0

    @cached_property
    def _groups(self) -> dict[str, tuple[BrokerObservation, ...]]:
        index: dict[str, list[BrokerObservation]] = {}
        for b in self.brokers:
            index.setdefault(b.broker_name, []).append(b)
        return {name: tuple(group) for name, group in index.items()}

    def group_names(self) -> tuple[str, ...]:
        return tuple(self._groups)

    def group(self, broker_name: str) -> tuple[BrokerObservation, ...]:
        return self._groups.get(broker_name, ())

    def broker_at(self, addr: str) -> BrokerObservation | None:
        for b in self.brokers:
            if b.addr == addr:
                return b
        return None

    def nameservers_up(self) -> tuple[NamesrvObservation, ...]:
        return tuple(n for n in self.nameservers if n.is_up)

    def master_claimants(self, broker_name: str) -> tuple[BrokerObservation, ...]:
        """The group's brokers that answer in a master role; two or more is a split brain."""
        return tuple(b for b in self.group(broker_name) if b.is_up and b.is_master_role)

    def master_of(self, broker_name: str) -> BrokerObservation | None:
        """The group's master as every report (status, check, metrics) names it.

        The one broker answering in a master role; with none answering, the broker the
        answering nameservers register as id 0 (a master that is down is still the master);
        with two or more answering (a split brain), none: the reports then show each broker's
        role and no lag, because a lag against either claimant would mislead. Detection ranks
        claimants itself to decide which one to keep; that choice is a decision, not a report.
        """
        claimants = self.master_claimants(broker_name)
        if claimants:
            return claimants[0] if len(claimants) == 1 else None
        group = self.group(broker_name)
        for ns in self.nameservers_up():
            addr = ns.master_addr(broker_name)
            for b in group:
                if b.addr == addr:
                    return b
        return None

    def replication_lag(self, broker: BrokerObservation) -> int | None:
        """Bytes a slave is behind its group's master; None when there is no such number.

        None for a master, a broker in a master role, a group without one master (see
        `master_of`), or when either side does not answer or has no offset.
        """
        master = self.master_of(broker.broker_name)
        if master is None or master.addr == broker.addr or broker.is_master_role:
            return None
        if not master.is_up or not broker.is_up:
            return None
        if master.commitlog_max_offset is None or broker.commitlog_max_offset is None:
            return None
        return master.commitlog_max_offset - broker.commitlog_max_offset
