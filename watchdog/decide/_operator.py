"""Operator requests (pure): the promotion asked for, when to refuse it, clean rejoins."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..config import WatchdogConfig
from ..detect import ClusterVerdict, GroupVerdict
from ..model import ClusterSnapshot, format_seconds
from ._decision import GroupFailoverPolicy, Promote, choose_candidate, promotion, rejoin_offset
from ._plan import Refusal

__all__ = ["CleanRejoin", "clean_rejoins", "manual_promote", "operator_refusal"]


def operator_refusal(
    group: GroupVerdict,
    blocked_until: float | None,
    block_reason: str,
    *,
    force: bool,
    now: float,
) -> str | None:
    """Why an operator's failover of `group` is refused (None: it may go on).

    Without --force an operator fails over only what the daemon itself would: a master that
    is objectively down, in a group not blocked (anti-flap, Unix time `blocked_until`) after
    a failover. The same rule whether the CLI acts itself or asks a running daemon.
    """
    if force:
        return None
    name = group.broker_name
    if not group.is_odown:
        return (
            f"master of {name} is not objectively down ({group.state}: {group.reason}); "
            "use --force to fail over a live master"
        )
    if blocked_until is not None and now < blocked_until:
        return (
            f"automatic and manual failovers of {name} are blocked ({block_reason}); "
            "`rmq-watchdog ack` or --force"
        )
    return None


def manual_promote(
    snapshot: ClusterSnapshot,
    group: GroupVerdict,
    config: WatchdogConfig,
    *,
    to_key: str | None,
    force: bool,
    now: float,
    fenced_by_operator: bool = False,
) -> Promote | Refusal:
    """A promotion an operator asked for: what would happen if this group's master died now."""
    name = group.broker_name
    policy = GroupFailoverPolicy(max_lag_bytes=None if force else config.max_lag_bytes(name))
    chosen, rejected = choose_candidate(snapshot, group, config.brokers, policy, only_key=to_key)
    if chosen is None:
        detail = "; ".join(rejected) if rejected else "the group has no slave"
        return Refusal(name, f"no slave of {name} can be promoted: {detail}")
    if group.is_odown:
        because = (
            f"master objectively down for {format_seconds(group.down_for_seconds)} from "
            f"{group.down_votes} of {group.vantage_points} vantage points"
        )
    else:
        master = f"{group.master_key}@{group.master_addr}"
        because = f"an operator asked for it (master {master} is {group.state})"
    return promotion(
        group,
        chosen,
        because,
        now=now,
        fenced_by_operator=fenced_by_operator,
        # An operator's --force on a master that answers is a switch (the old master rejoins
        # as a slave); anything else, a dry run on a healthy group included, plans what
        # happens when the master has died.
        requires_master_down=group.is_odown or not force,
    )


@dataclass(frozen=True)
class CleanRejoin:
    """A deposed master back as a slave with its log within the promotion point."""

    broker_name: str
    broker_key: str
    offset: int  # the log end it came back with
    promotion_offset: int


def clean_rejoins(
    snapshot: ClusterSnapshot,
    verdict: ClusterVerdict,
    rejoin_checks: Mapping[str, tuple[str, int]],
    running: Collection[str],
) -> tuple[CleanRejoin, ...]:
    """The deposed masters still to be checked (group -> (broker key, promotion offset)) that
    answer as a slave within the promotion point: a clean prefix of the new master's log,
    nothing more to check. Each is judged by the log end it came back with, even if it came
    back while the failover still ran; a group whose failover is `running` is not judged yet.
    """
    found: list[CleanRejoin] = []
    for name, (key, point) in rejoin_checks.items():
        g = verdict.group(name)
        if name in running or g is None:
            continue
        for obs in snapshot.group(name):
            offset = rejoin_offset(g, obs)
            is_clean = obs.key == key and obs.is_up and obs.role == "SLAVE"
            if is_clean and offset is not None and offset <= point:
                found.append(CleanRejoin(name, key, offset, point))
    return tuple(found)
