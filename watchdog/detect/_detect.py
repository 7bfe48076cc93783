"""Failure detection: judge each broker group's master from a snapshot and the detector's memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..config import DetectSettings, ProbeSettings
from ..model import (
    DEFAULT_MASTER_ROLE,
    MASTER_ROLES,
    BrokerObservation,
    ClusterSnapshot,
    GroupState,
    NamesrvObservation,
    format_seconds,
)

__all__ = [
    "DEFAULT_MASTER_ROLE",
    "DetectorState",
    "GroupVerdict",
    "ClusterVerdict",
    "detect",
]


# (snapshot.taken_at, commitLogMaxOffset) of one broker at one cycle.
OffsetSample = tuple[float, int]
# (snapshot.taken_at, bytes per second the broker's log grew since it last answered).
RateSample = tuple[float, float]
# How far back the peak write rate looks: long enough to outlive a master's silence up to
# ODOWN and a failover, short enough to follow a producer that slowed down.
WRITE_RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class DetectorState:
    """What detection remembers between cycles; a new value is returned every cycle.

    `last_answered_at` is the last time a broker answered, or the time TILT forgave its silence.
    `first_failed_at` is the start of a broker's current run of failed probes.
    """

    last_cycle_at: float | None = None
    tilt_cycles_left: int = 0
    tilt_cause: str = ""
    last_answered_at: Mapping[str, float] = field(default_factory=dict)
    first_failed_at: Mapping[str, float] = field(default_factory=dict)
    last_offset: Mapping[str, int] = field(default_factory=dict)
    offset_history: Mapping[str, tuple[OffsetSample, ...]] = field(default_factory=dict)
    write_rates: Mapping[str, tuple[RateSample, ...]] = field(default_factory=dict)
    answered_as_master: frozenset[str] = frozenset()  # addrs whose last answer was as master
    known_master: Mapping[str, str] = field(default_factory=dict)  # broker_name -> addr
    master_role: Mapping[str, str] = field(default_factory=dict)  # broker_name -> role
    # addr -> since when no answering nameserver (a majority answering) lists it: the clock
    # of the nameservers' fence path (a broker heartbeating anywhere resets it)
    deregistered_since: Mapping[str, float] = field(default_factory=dict)
    # addr -> the log end a broker answered with when it came back after failed probes: what a
    # deposed master is judged by, not what it replicated from the new master since
    returned_offset: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def initial(cls) -> DetectorState:
        return cls()

    def with_master(self, broker_name: str, addr: str, role: str | None = None) -> DetectorState:
        """Follow a master the watchdog just promoted, so a returning old master that also
        answers as master is the one fenced, even if both show up in the same cycle."""
        roles = dict(self.master_role)
        if role is not None:
            roles[broker_name] = role
        return replace(
            self, known_master={**self.known_master, broker_name: addr}, master_role=roles
        )


@dataclass(frozen=True)
class GroupVerdict:
    """One broker group's judgement for one cycle; `reason` is the sentence to log."""

    broker_name: str
    state: GroupState
    master_addr: str | None
    master_key: str | None
    is_sdown: bool
    is_odown: bool
    down_for_seconds: float
    down_votes: int
    vantage_points: int
    alive_evidence: tuple[str, ...]
    down_evidence: tuple[str, ...]
    slaves_down: tuple[str, ...]  # broker keys
    reason: str
    quorum: int = 1
    master_role: str = DEFAULT_MASTER_ROLE  # the role a replacement master should take
    master_offset: int | None = None  # master's commitLogMaxOffset when it last answered
    # An estimate of what the master may have stored since it last answered: its peak write
    # rate over the last WRITE_RATE_WINDOW_SECONDS times its silence (0 while it answers).
    master_unseen_bytes: int | None = None
    # The master's peak write rate over the last WRITE_RATE_WINDOW_SECONDS (bytes per second):
    # what it may keep storing each second until it is fenced.
    master_peak_rate: float = 0.0
    other_masters: tuple[tuple[str, str], ...] = ()  # (key, addr) also answering as master
    # (broker key, log end) of group members as they came back after failed probes
    returned_offsets: tuple[tuple[str, int], ...] = ()
    registered_on: int = 0  # answering nameservers that still list the master
    # How long no answering nameserver (a majority answering) has listed the master; None
    # while one still does or too few answer to say.
    deregistered_for_seconds: float | None = None
    # Down by the crash rule (see _crash_confirmed): the master's probe was refused and a
    # majority of nameservers dropped it, so down_after was not waited for.
    is_crash_confirmed: bool = False

    @property
    def is_split_brain(self) -> bool:
        return bool(self.other_masters)


@dataclass(frozen=True)
class ClusterVerdict:
    taken_at: float
    is_isolated: bool
    is_tilted: bool
    groups: tuple[GroupVerdict, ...]
    reason: str = ""  # why the whole cluster is isolated or tilted; empty otherwise
    nameservers_up: int = 0
    nameservers_total: int = 0

    def group(self, broker_name: str) -> GroupVerdict | None:
        for g in self.groups:
            if g.broker_name == broker_name:
                return g
        return None


def _valid_offset(broker: BrokerObservation) -> int | None:
    # A broker sending garbage may report anything; only a non-negative int is an offset.
    value = broker.commitlog_max_offset
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class _Votes:
    is_sdown: bool = False
    is_odown: bool = False
    down_for_seconds: float = 0.0
    down_votes: int = 0
    vantage_points: int = 0
    alive_evidence: tuple[str, ...] = ()
    down_evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Tilt:
    is_tilted: bool
    is_forgiving: bool  # reset the clocks this cycle
    cycles_left_after: int
    cause: str


def _tilt(
    state: DetectorState, now: float, settings: DetectSettings, probe: ProbeSettings
) -> _Tilt:
    cause = ""
    if state.last_cycle_at is not None:
        gap = now - state.last_cycle_at
        late = gap - probe.interval_seconds
        if gap < 0:
            cause = f"clock went back {format_seconds(-gap)}"
        elif late > settings.tilt_late_seconds:
            cause = f"cycle started {format_seconds(late)} late (watchdog paused?)"
    left = settings.tilt_cycles if cause else state.tilt_cycles_left
    is_tilted = left > 0
    return _Tilt(
        is_tilted=is_tilted,
        # Every tilted cycle forgives, so "down" needs down_after of fresh silence after TILT;
        # a late cycle forgives even with tilt_cycles = 0, since its gap is our own fault.
        is_forgiving=is_tilted or bool(cause),
        cycles_left_after=max(left - 1, 0),
        cause=cause or state.tilt_cause,
    )


def _master_of(
    name: str,
    group: Sequence[BrokerObservation],
    answered: set[str],
    nameservers_up: Sequence[NamesrvObservation],
    known: str | None,
    offsets: Mapping[str, int],
) -> tuple[BrokerObservation | None, tuple[BrokerObservation, ...]]:
    """The group's master, and other brokers that also answer as master (split brain)."""
    by_addr = {b.addr: b for b in group}
    claimants = list(
        {b.addr: b for b in group if b.addr in answered and b.role in MASTER_ROLES}.values()
    )
    listed: dict[str, int] = {}
    for ns in nameservers_up:
        addr = ns.master_addr(name)
        if addr is not None and addr in by_addr:
            listed[addr] = listed.get(addr, 0) + 1
    if claimants:
        # Keep the one we already followed; else the one most nameservers route to; else the
        # one holding the most data.
        def rank(b: BrokerObservation) -> tuple[bool, int, int, int]:
            return (b.addr == known, listed.get(b.addr, 0), offsets.get(b.addr, -1), -b.broker_id)

        ordered = sorted(claimants, key=rank, reverse=True)
        return ordered[0], tuple(ordered[1:])

    # Nobody answers as master. A broker that answers explicitly as SLAVE is not the master.
    def eligible(addr: str) -> bool:
        b = by_addr.get(addr)
        return b is not None and not (addr in answered and b.role == "SLAVE")

    listed = {a: n for a, n in listed.items() if eligible(a)}
    if listed:
        if known is not None and known in listed:
            return by_addr[known], ()
        best = max(listed.values())
        return next(b for b in group if listed.get(b.addr) == best), ()
    if known is not None and eligible(known):
        return by_addr[known], ()
    for b in group:
        if b.broker_id == 0 and eligible(b.addr):
            return b, ()
    return None, ()


def detect(
    state: DetectorState,
    snapshot: ClusterSnapshot,
    settings: DetectSettings,
    probe: ProbeSettings,
) -> tuple[DetectorState, ClusterVerdict]:
    """Fold one snapshot into the detector state and judge every broker group."""
    now = snapshot.taken_at
    down_after = settings.down_after_seconds
    tilt = _tilt(state, now, settings, probe)

    # --- clocks and offsets -------------------------------------------------------------
    answered = {b.addr for b in snapshot.brokers if b.is_up}
    last_answered = dict(state.last_answered_at)
    first_failed = dict(state.first_failed_at)
    history = {a: list(s) for a, s in state.offset_history.items()}
    last_offset = dict(state.last_offset)
    rates = {a: list(s) for a, s in state.write_rates.items()}
    as_master = set(state.answered_as_master)
    for b in snapshot.brokers:
        if b.is_up and b.role not in MASTER_ROLES:
            # A slave's log grows by replication, by megabytes when it resyncs: not a rate a
            # master's clients ever wrote at. Only growth between two answers as master counts.
            rates.pop(b.addr, None)
            as_master.discard(b.addr)
            continue
        if b.is_up and b.addr not in as_master:
            as_master.add(b.addr)
            continue
        offset = _valid_offset(b) if b.is_up else None
        before, seen_at = state.last_offset.get(b.addr), state.last_answered_at.get(b.addr)
        if offset is None or before is None or seen_at is None or now <= seen_at:
            continue
        rate_samples = rates.setdefault(b.addr, [])
        if not rate_samples or rate_samples[-1][0] != now:
            rate_samples.append((now, max(offset - before, 0) / (now - seen_at)))
    # The window ends when the broker last answered: a master silent for minutes keeps the
    # rates it wrote at before its silence (what it may have gone on writing at, unseen).
    kept_rates = {
        a: tuple(
            r
            for r in rs
            if (now if a in answered else state.last_answered_at.get(a, now))
            - WRITE_RATE_WINDOW_SECONDS
            <= r[0]
            <= now
        )
        for a, rs in rates.items()
    }
    kept_rates = {a: r for a, r in kept_rates.items() if r}
    if tilt.is_forgiving:
        for addr in set(last_answered) | set(first_failed) | {b.addr for b in snapshot.brokers}:
            last_answered[addr] = now
        first_failed.clear()
        history.clear()  # offsets across the pause cannot show what happened when
    returned = dict(state.returned_offset)
    for b in snapshot.brokers:
        if b.addr in answered:
            if not b.is_up:
                continue  # a duplicate, failed entry of an addr that did answer
            last_answered[b.addr] = now
            first_failed.pop(b.addr, None)
            offset = _valid_offset(b)
            if offset is not None and b.addr in state.first_failed_at:
                returned[b.addr] = offset
            if offset is not None:
                last_offset[b.addr] = offset
                samples = history.setdefault(b.addr, [])
                if not samples or samples[-1][0] != now:
                    samples.append((now, offset))
        else:
            first_failed.setdefault(b.addr, now)
    window_start = now - down_after
    kept_history = {
        a: tuple(s for s in samples if window_start <= s[0] <= now)
        for a, samples in history.items()
    }
    kept_history = {a: s for a, s in kept_history.items() if s}

    def down_for(addr: str) -> float:
        if addr in answered:
            return 0.0
        since = last_answered.get(addr, first_failed.get(addr, now))
        return max(now - since, 0.0)

    # --- masters, then isolation --------------------------------------------------------
    ns_up = snapshot.nameservers_up()
    ns_total = len(snapshot.nameservers)
    masters: dict[str, tuple[BrokerObservation | None, tuple[BrokerObservation, ...]]] = {}
    for name in snapshot.group_names():
        masters[name] = _master_of(
            name,
            snapshot.group(name),
            answered,
            ns_up,
            state.known_master.get(name),
            last_offset,
        )
    master_addrs = {m.addr for m, _ in masters.values() if m is not None}
    slave_answered = any(
        b.is_up and b.role not in MASTER_ROLES and b.addr not in master_addrs
        for b in snapshot.brokers
    )
    majority = ns_total // 2 + 1
    is_isolated = len(ns_up) < majority and not slave_answered
    if is_isolated:
        cluster_reason = (
            f"watchdog isolated: reaches {len(ns_up)}/{ns_total} nameservers and no slave"
        )
    elif tilt.is_tilted:
        more = tilt.cycles_left_after
        cluster_reason = (
            f"TILT: {tilt.cause}; not trusting a down verdict for this and "
            f"{_plural(more, 'more cycle')}"
        )
    else:
        cluster_reason = ""

    deregistered_since: dict[str, float] = {}
    if len(ns_up) >= majority:
        for m, _ in masters.values():
            if m is not None and not any(ns.ids_of(m.addr) for ns in ns_up):
                deregistered_since[m.addr] = state.deregistered_since.get(m.addr, now)

    known_master = dict(state.known_master)
    master_role = dict(state.master_role)
    groups: list[GroupVerdict] = []
    for name in snapshot.group_names():
        master, others = masters[name]
        if master is not None:
            known_master[name] = master.addr
            if master.addr in answered and master.role in MASTER_ROLES:
                master_role[name] = str(master.role)
        groups.append(
            _judge_group(
                name=name,
                group=snapshot.group(name),
                master=master,
                others=others,
                snapshot=snapshot,
                answered=answered,
                down_for=down_for,
                first_failed=first_failed,
                history=kept_history,
                settings=settings,
                is_isolated=is_isolated,
                is_tilted=tilt.is_tilted,
                is_forgiving=tilt.is_forgiving,
                cluster_reason=cluster_reason,
                master_role=master_role.get(name, DEFAULT_MASTER_ROLE),
                master_offset=None if master is None else last_offset.get(master.addr),
                master_unseen_bytes=None
                if master is None
                else _unseen_bytes(
                    kept_rates.get(master.addr, ()), now - last_answered.get(master.addr, now)
                ),
                master_peak_rate=0.0
                if master is None
                else max((r for _, r in kept_rates.get(master.addr, ())), default=0.0),
                deregistered_for_seconds=None
                if master is None or master.addr not in deregistered_since
                else now - deregistered_since[master.addr],
                returned_offsets=tuple(
                    (b.key, returned[b.addr]) for b in snapshot.group(name) if b.addr in returned
                ),
            )
        )

    new_state = DetectorState(
        last_cycle_at=now,
        tilt_cycles_left=tilt.cycles_left_after,
        tilt_cause=tilt.cause if tilt.cycles_left_after > 0 else "",
        last_answered_at=last_answered,
        first_failed_at=first_failed,
        last_offset=last_offset,
        offset_history=kept_history,
        write_rates=kept_rates,
        answered_as_master=frozenset(as_master),
        known_master=known_master,
        master_role=master_role,
        deregistered_since=deregistered_since,
        returned_offset=returned,
    )
    verdict = ClusterVerdict(
        taken_at=now,
        is_isolated=is_isolated,
        is_tilted=tilt.is_tilted,
        groups=tuple(groups),
        reason=cluster_reason,
        nameservers_up=len(ns_up),
        nameservers_total=ns_total,
    )
    return new_state, verdict


def _unseen_bytes(rates: Sequence[RateSample], silent_seconds: float) -> int:
    """Bytes a silent broker may have stored since it last answered, at its peak rate."""
    if silent_seconds <= 0 or not rates:
        return 0
    return math.ceil(max(r for _, r in rates) * silent_seconds)


def _judge_group(
    *,
    name: str,
    group: Sequence[BrokerObservation],
    master: BrokerObservation | None,
    others: tuple[BrokerObservation, ...],
    snapshot: ClusterSnapshot,
    answered: set[str],
    down_for: Callable[[str], float],
    first_failed: Mapping[str, float],
    history: Mapping[str, tuple[OffsetSample, ...]],
    settings: DetectSettings,
    is_isolated: bool,
    is_tilted: bool,
    is_forgiving: bool,
    cluster_reason: str,
    master_role: str,
    master_offset: int | None,
    master_unseen_bytes: int | None,
    master_peak_rate: float,
    deregistered_for_seconds: float | None,
    returned_offsets: tuple[tuple[str, int], ...],
) -> GroupVerdict:
    now = snapshot.taken_at
    down_after = settings.down_after_seconds
    other_addrs = {b.addr for b in others}
    slaves = [
        b for b in group if (master is None or b.addr != master.addr) and b.addr not in other_addrs
    ]
    slaves_down = tuple(
        dict.fromkeys(
            b.key for b in slaves if b.addr not in answered and down_for(b.addr) >= down_after
        )
    )
    slaves_down_text = ", ".join(
        f"{b.key}@{b.addr} (no reply for {format_seconds(down_for(b.addr))})"
        for b in slaves
        if b.key in slaves_down
    )

    is_crash = False  # set below, once the master and the nameservers' view are known

    def verdict(state: GroupState, reason: str, votes: _Votes | None = None) -> GroupVerdict:
        v = votes or _Votes()
        return GroupVerdict(
            broker_name=name,
            state=state,
            master_addr=None if master is None else master.addr,
            master_key=None if master is None else master.key,
            is_sdown=v.is_sdown,
            is_odown=v.is_odown,
            down_for_seconds=v.down_for_seconds,
            down_votes=v.down_votes,
            vantage_points=v.vantage_points,
            alive_evidence=v.alive_evidence,
            down_evidence=v.down_evidence,
            slaves_down=slaves_down,
            reason=reason,
            quorum=settings.quorum,
            master_role=master_role,
            master_offset=master_offset,
            master_unseen_bytes=master_unseen_bytes,
            master_peak_rate=master_peak_rate,
            other_masters=tuple((b.key, b.addr) for b in others),
            registered_on=listed,
            deregistered_for_seconds=deregistered_for_seconds,
            returned_offsets=returned_offsets,
            is_crash_confirmed=is_crash,
        )

    ns_up = snapshot.nameservers_up()
    listed = 0 if master is None else sum(1 for ns in ns_up if ns.ids_of(master.addr))
    if master is None:
        reason = (
            f"no master known for {name}: no broker answers as master, "
            "none is listed as id 0 and none is configured as id 0"
        )
        state = GroupState.ISOLATED if is_isolated else GroupState.DEGRADED
        return verdict(state, cluster_reason or reason)

    who = f"{name}@{master.addr}"
    is_answering = master.addr in answered
    master_down_for = down_for(master.addr)

    # --- votes ----------------------------------------------------------------------------
    gone_from: list[str] = []
    for ns in ns_up:
        of_group = ns.group_registrations(name)
        # A nameserver that knows nothing of the group (e.g. just restarted) abstains: only
        # "lists the group but not the master" means it saw the master's connection close.
        if of_group and not any(r.addr == master.addr for r in of_group):
            gone_from.append(ns.addr)
    gone = len(gone_from)
    ns_down = len(snapshot.nameservers) - len(ns_up)
    is_crash = (
        not is_forgiving
        and not is_isolated
        and not is_answering
        and _crash_confirmed(
            [b for b in group if b.addr == master.addr], gone, listed, len(snapshot.nameservers)
        )
    )

    is_sdown = not is_tilted and not is_answering and (master_down_for >= down_after or is_crash)
    vantage_points = 1 + len(ns_up)
    down_votes = (1 if is_sdown else 0) + gone
    alive: list[str] = []
    down: list[str] = []
    if is_answering:
        alive.append("own probe answered")
    elif is_crash:
        down.append(f"connection refused (no reply for {format_seconds(master_down_for)})")
    elif is_sdown:
        down.append(f"no reply for {format_seconds(master_down_for)}")
    down.extend(f"gone from nameserver {addr}" for addr in gone_from)

    silent_since = first_failed.get(master.addr, now)
    for check in snapshot.secondary:
        if check.target_addr != master.addr or check.is_alive is None:
            continue
        if check.started_at is not None and check.started_at < silent_since:
            continue  # began before the master went silent: says nothing about the silence
        vantage_points += 1
        detail = f" ({check.detail})" if check.detail else ""
        if check.is_alive:
            alive.append(f"secondary check {check.name} reaches it{detail}")
        else:
            down_votes += 1
            down.append(f"secondary check {check.name} cannot reach it{detail}")

    if not is_answering:
        # A slave still receiving data while we cannot reach the master: the master is alive.
        streak_start = first_failed.get(master.addr, now)
        start = max(streak_start, now - down_after)
        for b in slaves:
            if b.addr in answered and b.role in MASTER_ROLES:
                continue
            samples = [s for s in history.get(b.addr, ()) if s[0] >= start]
            if len(samples) < 2:
                continue
            first_t, first_offset = samples[0]
            grown = max(o for _, o in samples[1:]) - first_offset
            if grown > 0:
                span = samples[-1][0] - first_t
                alive.append(
                    f"slave {b.key} offset grew by {grown} bytes in {format_seconds(span)}"
                )

    is_odown = is_sdown and not is_isolated and not alive and down_votes >= settings.quorum
    votes = _Votes(
        is_sdown=is_sdown,
        is_odown=is_odown,
        down_for_seconds=master_down_for,
        down_votes=down_votes,
        vantage_points=vantage_points,
        alive_evidence=tuple(alive),
        down_evidence=tuple(down),
    )

    # --- state and the one sentence ---------------------------------------------------------
    if is_isolated:
        return verdict(GroupState.ISOLATED, cluster_reason, votes)
    if is_tilted:
        return verdict(_quiet_state(slaves_down), f"{cluster_reason} ({who})", votes)
    if others:
        names = " and ".join(f"{b.key}@{b.addr}" for b in (master, *others))
        quantifier = "both" if len(others) == 1 else "all"
        return verdict(
            GroupState.DEGRADED,
            f"split brain in {name}: {names} {quantifier} answer as master",
            votes,
        )

    if ns_up:
        if gone:
            ns_text = f"gone from {gone}/{len(ns_up)} nameservers"
        elif listed:
            ns_text = f"still listed by {listed}/{len(ns_up)} nameservers"
        else:
            ns_text = f"{name} unknown to {len(ns_up)}/{len(ns_up)} nameservers"
        if ns_down:
            ns_text += f" ({ns_down} unreachable)"
    else:
        ns_text = f"no nameserver reachable (0/{len(snapshot.nameservers)})"
    secondary_down = [d for d in down if d.startswith("secondary check")]

    if is_crash:
        crash_text = _crash_text(name, gone, len(ns_up), ns_down)
        if is_odown:
            return verdict(
                GroupState.MASTER_ODOWN,
                f"master {who} objectively down: "
                + ", ".join(
                    [
                        f"{crash_text}: a crash, down without waiting down_after "
                        f"({format_seconds(down_after)})",
                        *secondary_down,
                    ]
                ),
                votes,
            )
        if alive:
            why = "but " + "; ".join(alive)
        else:
            why = (
                f"but only {down_votes} of {vantage_points} vantage points see it down "
                f"(quorum {settings.quorum})"
            )
        return verdict(
            GroupState.MASTER_SDOWN, f"master {who} subjectively down: {crash_text}, {why}", votes
        )
    if is_odown:
        parts = [f"no reply for {format_seconds(master_down_for)}", ns_text, *secondary_down]
        return verdict(
            GroupState.MASTER_ODOWN, f"master {who} objectively down: " + ", ".join(parts), votes
        )
    if is_sdown:
        if alive:
            why = "but " + "; ".join(alive)
        else:
            why = (
                f"but only {down_votes} of {vantage_points} vantage points see it down "
                f"(quorum {settings.quorum}): {ns_text}"
            )
        return verdict(
            GroupState.MASTER_SDOWN,
            f"master {who} subjectively down: no reply for {format_seconds(master_down_for)}, "
            + why,
            votes,
        )
    if is_answering:
        head = f"master {who} healthy"
    else:
        head = (
            f"master {who} not answering for {format_seconds(master_down_for)} "
            f"(down after {format_seconds(down_after)})"
        )
    if slaves_down:
        noun = "slave" if len(slaves_down) == 1 else "slaves"
        return verdict(GroupState.DEGRADED, f"{head}, {noun} {slaves_down_text} down", votes)
    refused = [b for b in group if b.acl_refusal is not None]
    if refused:
        # They answer (alive), but say nothing the watchdog could fail the group over with.
        reasons = "; ".join(sorted({str(b.acl_refusal) for b in refused}))
        return verdict(
            GroupState.DEGRADED,
            f"{head}, but the ACL of {', '.join(b.key for b in refused)} refuses the watchdog's "
            f"credentials ({reasons}): roles and offsets unknown, no slave can be promoted",
            votes,
        )
    return verdict(GroupState.HEALTHY, head, votes)


def _crash_confirmed(
    master_observations: Sequence[BrokerObservation],
    gone: int,
    listed: int,
    nameservers_total: int,
) -> bool:
    """The crash rule: a master that refuses connections and that a majority of the nameservers
    dropped is down at once, without waiting down_after.

    Precisely, in one cycle (its snapshot): this cycle's probe of the master was refused (a
    fresh connect, answered by the kernel because nothing listens on the port), at least a
    majority of all configured nameservers answer, list the group and not the master (each saw
    the master's channel close: a dead process's sockets are closed by the kernel, and the
    nameserver drops a broker whose channel closes), and no answering nameserver lists it.
    A nameserver that lists nothing of the group (just restarted) abstains: it is not evidence.

    The confirming probe is this cycle's own: the nameservers' drop is what the crash did, the
    refused connect is a second, independent witness made after it. Waiting for another cycle
    would add a probe interval and guard only against a master back within that interval,
    which no broker JVM boots in, and which the fence handles anyway (act refuses to stop a
    master that answers again; the old master's file is rewritten to SLAVE before its stop).
    Neither witness alone will do: a firewall REJECT also refuses connects (ICMP port
    unreachable is ECONNREFUSED) while the master heartbeats to the nameservers, and a
    nameserver drops a live master whose channel to it broke until its next heartbeat.
    Timeouts (a hang, SIGSTOP, a partition), a closed connection and silence keep down_after.
    """
    refused = bool(master_observations) and all(b.failure == "refused" for b in master_observations)
    majority = nameservers_total // 2 + 1
    return refused and listed == 0 and gone >= majority


def _crash_text(name: str, gone: int, answering: int, unreachable: int) -> str:
    details = [f"gone from {gone}/{answering}"]
    if answering > gone:
        abstaining = answering - gone
        verb = "knows" if abstaining == 1 else "know"
        details.append(f"{abstaining} {verb} nothing of {name}")
    if unreachable:
        details.append(f"{unreachable} unreachable")
    return (
        "it refuses connections and no answering nameserver lists it (" + ", ".join(details) + ")"
    )


def _quiet_state(slaves_down: tuple[str, ...]) -> GroupState:
    return GroupState.DEGRADED if slaves_down else GroupState.HEALTHY
