"""Decisions: turn a cycle's verdict and the failover policy into one explained action per group."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..config import BrokerConfig, WatchdogConfig
from ..detect import ClusterVerdict, GroupVerdict
from ..model import BrokerObservation, ClusterSnapshot, GroupState, format_seconds

__all__ = [
    "FENCE_PATHS",
    "FenceEvidence",
    "FencePath",
    "NoAction",
    "Promote",
    "Fence",
    "Decision",
    "GroupFailoverPolicy",
    "Policy",
    "decide",
    "choose_candidate",
    "describe_loss",
    "fenced_by",
    "rejoin_offset",
    "role_lowered",
    "max_loss_bytes",
    "promotion",
    "log_fields",
]


@dataclass(frozen=True)
class NoAction:
    broker_name: str
    reason: str
    state: GroupState = GroupState.HEALTHY

    kind: ClassVar[Literal["no_action"]] = "no_action"


@dataclass(frozen=True)
class Promote:
    """Make `candidate` the group's master; the old master must be stopped first (act's job)."""

    broker_name: str
    old_master_key: str | None
    old_master_addr: str | None
    candidate_key: str
    candidate_addr: str
    candidate_offset: int
    expected_loss_bytes: int | None  # None: the master's offset was never seen
    new_role: str  # ASYNC_MASTER or SYNC_MASTER, as the old master was
    reason: str
    state: GroupState = GroupState.MASTER_ODOWN
    # expected_loss_bytes plus what the master may have stored since it last answered, at its
    # peak write rate (an estimate, not a guarantee: a burst faster than any rate seen escapes it)
    max_loss_bytes: int | None = None
    # What the nameservers said of the old master when this was decided (the fence's
    # nameserver path): how many still list it, and how long none has.
    old_master_registered_on: int = 0
    deregistered_for_seconds: float | None = None
    fenced_by_operator: bool = False  # an operator confirmed the old master cannot take writes
    # The old master's peak write rate (bytes/s): until it is fenced it may go on storing
    # writes at this rate, so max_loss_bytes grows by it for every second the fence takes.
    master_write_rate: float = 0.0
    # False for an operator's promotion of a master that answers (failover --force): then a
    # master answering during the fence does not call the promotion off.
    requires_master_down: bool = True
    decided_at: float | None = None  # wall time of the decision (the loss bound counts from it)

    kind: ClassVar[Literal["promote"]] = "promote"


@dataclass(frozen=True)
class Fence:
    """Stop `target`, a second broker answering as master; `keep` stays master."""

    broker_name: str
    target_key: str
    target_addr: str
    keep_key: str
    reason: str
    state: GroupState = GroupState.DEGRADED

    kind: ClassVar[Literal["fence"]] = "fence"


Decision = NoAction | Promote | Fence


@dataclass(frozen=True)
class GroupFailoverPolicy:
    """What a failover of one group may do right now."""

    max_lag_bytes: int | None = None  # refuse a candidate further behind; None = no limit
    is_auto_failover: bool = True  # False: report what would be done, do nothing
    blocked_until: float | None = None  # monotonic seconds; anti-flap after a failover
    blocked_reason: str = ""
    is_failover_running: bool = False
    # The deposed master still to be checked when it shows up again: (broker key, the offset
    # at which the current master was promoted). 4.x cannot truncate a longer slave log.
    rejoin_check: tuple[str, int] | None = None
    # A failover ended waiting for the old master's fence: no new attempt before this wall
    # time, and the sentence that said why.
    fence_retry_at: float | None = None
    fence_wait_reason: str = ""
    # (role the master had, failover id): a failover lowered the group's master role.
    lowered: tuple[str, str] | None = None


FencePath = Literal["host", "command", "nameservers", "operator"]
FENCE_PATHS: tuple[FencePath, ...] = ("host", "command", "nameservers", "operator")


@dataclass(frozen=True)
class FenceEvidence:
    """What is known, right before a promotion, of the old master's ability to take writes."""

    is_rewritten: bool = False  # its properties now say SLAVE (a restart cannot make it master)
    is_stopped: bool = False  # its stop command succeeded on its host and it no longer answers
    is_command_fenced: bool = False  # a configured fence command exited 0
    deregistered_for_seconds: float | None = None  # no answering nameserver (a majority) lists it
    registered_on: int = 0  # answering nameservers still listing it
    is_operator_confirmed: bool = False


def fenced_by(evidence: FenceEvidence, fence_grace_seconds: float) -> tuple[FencePath | None, str]:
    """The rule no promotion may bypass: which path fenced the old master, or None and why not.

    A master that cannot be stopped on its host and is still registered on a nameserver may be
    serving clients on the far side of a partition; promoting then gives two masters.
    """
    if evidence.is_rewritten and evidence.is_stopped:
        return "host", "fenced on its host: properties rewritten to SLAVE, stopped, not answering"
    if evidence.is_command_fenced:
        return "command", "fenced by the configured fence command"
    gone = evidence.deregistered_for_seconds
    if gone is not None and gone >= fence_grace_seconds:
        return "nameservers", (
            f"dropped by every answering nameserver {format_seconds(gone)} ago "
            f"(fence_grace {format_seconds(fence_grace_seconds)}): it heartbeats nowhere"
        )
    if evidence.is_operator_confirmed:
        return "operator", "an operator confirmed it is fenced (--fenced-by-operator)"
    host = (
        "its properties were rewritten but its stop did not succeed"
        if evidence.is_rewritten
        else "its host could not be reached to rewrite and stop it"
    )
    if gone is not None:
        nameservers = (
            f"dropped by every answering nameserver only {format_seconds(gone)} ago "
            f"(fence_grace {format_seconds(fence_grace_seconds)})"
        )
    elif evidence.registered_on:
        nameservers = f"still registered on {evidence.registered_on} nameserver(s)"
    else:
        nameservers = "too few nameservers answer to say it is dropped"
    return None, f"{host}, no fence command succeeded, {nameservers}"


@dataclass(frozen=True)
class Policy:
    default: GroupFailoverPolicy = GroupFailoverPolicy()
    groups: Mapping[str, GroupFailoverPolicy] = field(default_factory=dict)

    def for_group(self, broker_name: str) -> GroupFailoverPolicy:
        return self.groups.get(broker_name, self.default)

    @classmethod
    def from_config(
        cls,
        config: WatchdogConfig,
        *,
        blocked_until: Mapping[str, float] | None = None,
        blocked_reason: Mapping[str, str] | None = None,
        running: Collection[str] = (),
        rejoin_checks: Mapping[str, tuple[str, int]] | None = None,
        fence_retry_at: Mapping[str, float] | None = None,
        fence_wait_reason: Mapping[str, str] | None = None,
        lowered: Mapping[str, tuple[str, str]] | None = None,
    ) -> Policy:
        """Per-group policy from [failover]/[groups.*] plus the anti-flap and actor state."""
        blocked_until = blocked_until or {}
        blocked_reason = blocked_reason or {}
        return cls(
            groups={
                name: GroupFailoverPolicy(
                    max_lag_bytes=config.max_lag_bytes(name),
                    is_auto_failover=config.is_auto_failover(name),
                    blocked_until=blocked_until.get(name),
                    blocked_reason=blocked_reason.get(name, ""),
                    is_failover_running=name in running,
                    rejoin_check=(rejoin_checks or {}).get(name),
                    fence_retry_at=(fence_retry_at or {}).get(name),
                    fence_wait_reason=(fence_wait_reason or {}).get(name, ""),
                    lowered=(lowered or {}).get(name),
                )
                for name in config.group_names()
            }
        )


def decide(
    snapshot: ClusterSnapshot,
    verdict: ClusterVerdict,
    brokers: tuple[BrokerConfig, ...],
    policy: Policy,
    now: float,
) -> tuple[Decision, ...]:
    """One decision per group in the verdict, each with the sentence that explains it."""
    return tuple(
        _decide_group(snapshot, verdict, g, brokers, policy.for_group(g.broker_name), now)
        for g in verdict.groups
    )


def _decide_group(
    snapshot: ClusterSnapshot,
    verdict: ClusterVerdict,
    g: GroupVerdict,
    brokers: tuple[BrokerConfig, ...],
    gp: GroupFailoverPolicy,
    now: float,
) -> Decision:
    name = g.broker_name
    if verdict.is_isolated:
        return NoAction(name, f"no action: {g.reason}", GroupState.ISOLATED)
    if verdict.is_tilted:
        return NoAction(name, f"no action: {g.reason}", g.state)
    if gp.is_failover_running:
        return NoAction(
            name,
            f"no action: failover of {name} still running; {g.reason}",
            GroupState.FAILOVER_RUNNING,
        )

    if g.is_split_brain and g.master_key is not None:
        target_key, target_addr = g.other_masters[0]
        why = f"{g.reason}; keeping {g.master_key}@{g.master_addr}"
        if not gp.is_auto_failover:
            return NoAction(
                name,
                f"no action: automatic failover off for {name}, would fence "
                f"{target_key}@{target_addr}: {why}",
                g.state,
            )
        # Anti-flap does not block fencing: a returning old master right after a failover is
        # exactly the split brain it must end.
        return Fence(
            name,
            target_key,
            target_addr,
            g.master_key,
            f"fencing {target_key}@{target_addr}: {why}",
            g.state,
        )

    rejoined = _rejoined_ahead(snapshot, g, gp)
    if rejoined is not None:
        return rejoined

    if not g.is_odown:
        few = _few_nameservers(verdict)
        if few and g.state is GroupState.HEALTHY:
            return NoAction(name, f"no action: {g.reason}; {few}", GroupState.DEGRADED)
        lowered = role_lowered(g, gp)
        if lowered and g.state is GroupState.HEALTHY:
            return NoAction(name, f"no action: {g.reason}; {lowered}", GroupState.DEGRADED)
        return NoAction(
            name, f"no action: {g.reason}" + (f"; {lowered}" if lowered else ""), g.state
        )

    if gp.blocked_until is not None and now < gp.blocked_until:
        left = format_seconds(gp.blocked_until - now)
        because = f" ({gp.blocked_reason})" if gp.blocked_reason else ""
        return NoAction(
            name,
            f"no action: {g.reason}; failover blocked for {left} more{because}",
            GroupState.FAILOVER_BLOCKED,
        )

    if gp.fence_retry_at is not None and now < gp.fence_retry_at:
        left = format_seconds(gp.fence_retry_at - now)
        return NoAction(
            name,
            f"{_unreachable_sentence(g)}; not promoting until it is fenced: "
            f"{gp.fence_wait_reason or 'the last fence attempt failed'}; "
            f"next fence attempt in {left}",
            GroupState.AWAITING_FENCE,
        )

    chosen, rejected = choose_candidate(snapshot, g, brokers, gp)
    if chosen is None:
        detail = "; ".join(rejected) if rejected else "the group has no slave"
        return NoAction(
            name,
            f"no action: {g.reason}; no slave can be promoted: {detail}",
            GroupState.FAILOVER_BLOCKED,
        )
    promote = promotion(g, chosen, _why_down(g), now=now)
    if not gp.is_auto_failover:
        return NoAction(
            name,
            f"no action: automatic failover off for {name}, would be {promote.reason}",
            GroupState.FAILOVER_BLOCKED,
        )
    return promote


def promotion(
    g: GroupVerdict,
    chosen: tuple[BrokerObservation, int, int | None],
    because: str,
    *,
    now: float,
    fenced_by_operator: bool = False,
    requires_master_down: bool = True,
) -> Promote:
    """The promotion of `chosen` (a `choose_candidate` pick) in group `g`, decided at `now`:
    the one place a `Promote` is built, for the daemon's decision and an operator's alike."""
    obs, offset, loss = chosen
    max_loss = max_loss_bytes(g, offset)
    behind = describe_loss(loss, max_loss)
    return Promote(
        broker_name=g.broker_name,
        old_master_key=g.master_key,
        old_master_addr=g.master_addr,
        candidate_key=obs.key,
        candidate_addr=obs.addr,
        candidate_offset=offset,
        expected_loss_bytes=loss,
        new_role=g.master_role,
        reason=(
            f"promoting {g.broker_name} id={obs.broker_id} (offset {offset}, {behind}) "
            f"because {because}"
        ),
        max_loss_bytes=max_loss,
        old_master_registered_on=g.registered_on,
        deregistered_for_seconds=g.deregistered_for_seconds,
        fenced_by_operator=fenced_by_operator,
        master_write_rate=g.master_peak_rate,
        requires_master_down=requires_master_down,
        decided_at=now,
    )


def _why_down(g: GroupVerdict) -> str:
    """The promotion's "because": how long and from where the master was seen down, or, for
    a crash (detect's crash rule), what made waiting down_after needless."""
    seen = f"{g.down_votes} of {g.vantage_points} vantage points"
    if g.is_crash_confirmed:
        return (
            "master crashed: it refuses connections and no answering nameserver lists it "
            f"(down for {format_seconds(g.down_for_seconds)} from {seen}, "
            "without waiting down_after)"
        )
    return f"master unreachable for {format_seconds(g.down_for_seconds)} from {seen}"


def _few_nameservers(verdict: ClusterVerdict) -> str:
    """Why a group cannot be called healthy when most nameservers do not answer: clients get
    no routes from them, and a promotion could not be verified on a majority."""
    up, total = verdict.nameservers_up, verdict.nameservers_total
    if total == 0 or up * 2 >= total:
        return ""
    return f"only {up}/{total} nameservers answer: a promotion could not be verified"


def role_lowered(g: GroupVerdict, gp: GroupFailoverPolicy) -> str:
    """The sentence for a group whose master role a failover lowered and nobody restored
    ("" when it was not, or when the master has its role again): such a group is not
    HEALTHY, since its next failover may lose what its operator believes protected."""
    if gp.lowered is None:
        return ""
    was, failover_id = gp.lowered
    if g.master_role == was:
        return ""
    return (
        f"{was} lowered to {g.master_role} since failover {failover_id} (no slave was left); "
        f"set brokerRole={was} again once a slave is in sync"
    )


def _unreachable_sentence(g: GroupVerdict) -> str:
    who = f"{g.master_key}@{g.master_addr}"
    if g.registered_on:
        where = f"but still registered on {g.registered_on} nameserver(s)"
    elif g.deregistered_for_seconds is not None:
        gone = format_seconds(g.deregistered_for_seconds)
        where = f"and dropped by every answering nameserver {gone} ago"
    else:
        where = "and not listed by the nameservers that answer"
    return f"master {who} unreachable from here {where}"


def max_loss_bytes(g: GroupVerdict, candidate_offset: int) -> int | None:
    """What promoting a slave at `candidate_offset` may lose, counting what the master may have
    written since it last answered (None: the master's offset was never seen)."""
    if g.master_offset is None:
        return None
    return max(g.master_offset + (g.master_unseen_bytes or 0) - candidate_offset, 0)


def describe_loss(loss: int | None, max_loss: int | None) -> str:
    """How far behind the candidate is, for the decision's sentence."""
    if loss is None:
        return "loss unknown, master offset never seen"
    if max_loss is None or max_loss == loss:
        return f"{loss} bytes behind"
    return f"{loss} bytes behind, up to {max_loss} with what the master may have written unseen"


def _rejoined_ahead(
    snapshot: ClusterSnapshot, g: GroupVerdict, gp: GroupFailoverPolicy
) -> Fence | None:
    """A deposed master that answers again with a log past the promotion point must not stay:
    its extra bytes would misalign replication from the new master (silent corruption)."""
    if gp.rejoin_check is None or g.master_key is None or g.master_addr is None:
        return None
    key, promotion_offset = gp.rejoin_check
    for obs in snapshot.group(g.broker_name):
        if obs.key != key or not obs.is_up or obs.addr == g.master_addr:
            continue
        offset = rejoin_offset(g, obs)
        if offset is not None and offset > promotion_offset:
            return Fence(
                g.broker_name,
                obs.key,
                obs.addr,
                g.master_key,
                f"fencing {obs.key}@{obs.addr}: the deposed master rejoined with its log at "
                f"{offset}, past the promotion point {promotion_offset}; keeping "
                f"{g.master_key}@{g.master_addr}",
                g.state,
            )
    return None


def rejoin_offset(g: GroupVerdict, obs: BrokerObservation) -> int | None:
    """The log end a deposed master is judged by: the one it came back with (seen at its first
    answer after its silence), not what it has replicated from the new master since, which
    may reach past the promotion point with the new master's own writes."""
    returned = dict(g.returned_offsets).get(obs.key)
    return returned if returned is not None else obs.commitlog_max_offset


def choose_candidate(
    snapshot: ClusterSnapshot,
    g: GroupVerdict,
    brokers: tuple[BrokerConfig, ...],
    gp: GroupFailoverPolicy,
    *,
    only_key: str | None = None,
) -> tuple[tuple[BrokerObservation, int, int | None] | None, list[str]]:
    """The slave to promote (observation, offset, expected loss) and why others were refused.

    Order: higher `priority` first, then the higher commitLogMaxOffset, then the lower id.
    A slave beyond `max_lag_bytes` is refused before ordering, so priority never buys data loss
    above the limit. The expected loss is a lower bound: the master may have written more after
    its last answer. `only_key` restricts the choice to one broker (an operator's pick).
    """
    configs = {(b.broker_name, b.broker_id): b for b in brokers}
    rejected: list[str] = []
    fit: list[tuple[int, int, int, BrokerObservation, int | None]] = []
    seen: set[str] = set()
    for obs in snapshot.group(g.broker_name):
        if obs.addr == g.master_addr or obs.addr in seen:
            continue
        seen.add(obs.addr)
        if only_key is not None and obs.key != only_key:
            continue
        who = obs.key
        config = configs.get((obs.broker_name, obs.broker_id))
        offset = obs.commitlog_max_offset
        if config is None or config.addr != obs.addr:
            rejected.append(f"{who} is not in the configuration")
        elif not obs.is_up:
            rejected.append(f"{who} not answering")
        elif obs.acl_refusal is not None:
            rejected.append(f"{who} refuses the watchdog's ACL credentials ({obs.acl_refusal})")
        elif config.no_promote:
            rejected.append(f"{who} is marked no_promote")
        elif obs.role != "SLAVE":
            rejected.append(f"{who} answers as {obs.role or 'unknown role'}, not SLAVE")
        elif isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            rejected.append(f"{who} reports no usable commitlog offset")
        else:
            loss = None if g.master_offset is None else max(g.master_offset - offset, 0)
            if gp.max_lag_bytes is not None and loss is None:
                rejected.append(
                    f"{who} data loss unknown (master offset never seen), "
                    f"max_lag_bytes is {gp.max_lag_bytes}"
                )
            elif gp.max_lag_bytes is not None and loss is not None and loss > gp.max_lag_bytes:
                rejected.append(f"{who} is {loss} bytes behind, more than {gp.max_lag_bytes}")
            else:
                fit.append((config.priority, offset, -obs.broker_id, obs, loss))
    if only_key is not None and not _is_slave_key(snapshot, g, only_key):
        rejected.append(f"{only_key} is not a slave of {g.broker_name}")
    if not fit:
        return None, rejected
    best = max(fit, key=lambda f: (f[0], f[1], f[2]))
    return (best[3], best[1], best[4]), rejected


def _is_slave_key(snapshot: ClusterSnapshot, g: GroupVerdict, key: str) -> bool:
    return any(o.key == key and o.addr != g.master_addr for o in snapshot.group(g.broker_name))


def log_fields(decision: Decision) -> dict[str, object]:
    """The canonical log line of one group's cycle: `logger.info(**log_fields(d))`."""
    fields: dict[str, object] = {
        "event": decision.reason,
        "broker_name": decision.broker_name,
        "decision": decision.kind,
        "state": str(decision.state),
    }
    if isinstance(decision, Promote):
        fields.update(
            old_master=decision.old_master_key,
            candidate=decision.candidate_key,
            candidate_offset=decision.candidate_offset,
            expected_loss_bytes=decision.expected_loss_bytes,
            max_loss_bytes=decision.max_loss_bytes,
            new_role=decision.new_role,
        )
    elif isinstance(decision, Fence):
        fields.update(target=decision.target_key, keep=decision.keep_key)
    return fields
