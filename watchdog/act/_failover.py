"""Turn a decision into a ready plan: read the group's files, pick ids, name the failover."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping

from ..config import WatchdogConfig
from ..decide import (
    Fence,
    GroupFailoverPolicy,
    Plan,
    Promote,
    Refusal,
    choose_candidate,
    describe_loss,
    max_loss_bytes,
    plan_fence,
    plan_promotion,
)
from ..detect import DetectorState, GroupVerdict
from ..hosts import Host, HostError
from ..model import ClusterSnapshot, format_seconds
from ._journal import Journal
from ._state import WatchdogState

__all__ = [
    "new_failover_id",
    "read_group_files",
    "manual_promote",
    "prepare_plan",
    "follow_recorded_masters",
]


def new_failover_id(broker_name: str, wall_time: float | None = None) -> str:
    stamp = time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime(time.time() if wall_time is None else wall_time)
    )
    return f"{stamp}-{broker_name}-{secrets.token_hex(3)}"


async def read_group_files(
    config: WatchdogConfig, hosts: Mapping[str, Host], broker_name: str
) -> dict[str, str | None]:
    """Current text of every properties file of the group (None where it cannot be read)."""

    async def read(key: str, host: str, path: str) -> tuple[str, str | None]:
        try:
            return key, (await hosts[host].read_file(path)).decode("latin-1")
        except HostError:
            return key, None

    pairs = await asyncio.gather(
        *(read(b.key, b.host, b.properties) for b in config.group(broker_name))
    )
    return dict(pairs)


def manual_promote(
    snapshot: ClusterSnapshot,
    group: GroupVerdict,
    config: WatchdogConfig,
    *,
    to_key: str | None,
    force: bool,
    fenced_by_operator: bool = False,
) -> Promote | Refusal:
    """A promotion an operator asked for: what would happen if this group's master died now."""
    name = group.broker_name
    policy = GroupFailoverPolicy(max_lag_bytes=None if force else config.max_lag_bytes(name))
    chosen, rejected = choose_candidate(snapshot, group, config.brokers, policy, only_key=to_key)
    if chosen is None:
        detail = "; ".join(rejected) if rejected else "the group has no slave"
        return Refusal(name, f"no slave of {name} can be promoted: {detail}")
    obs, offset, loss = chosen
    max_loss = max_loss_bytes(group, offset)
    behind = describe_loss(loss, max_loss)
    if group.is_odown:
        why = (
            f"master objectively down for {format_seconds(group.down_for_seconds)} from "
            f"{group.down_votes} of {group.vantage_points} vantage points"
        )
    else:
        master = f"{group.master_key}@{group.master_addr}"
        why = f"an operator asked for it (master {master} is {group.state})"
    return Promote(
        broker_name=name,
        old_master_key=group.master_key,
        old_master_addr=group.master_addr,
        candidate_key=obs.key,
        candidate_addr=obs.addr,
        candidate_offset=offset,
        expected_loss_bytes=loss,
        max_loss_bytes=max_loss,
        new_role=group.master_role,
        reason=f"promoting {name} id={obs.broker_id} (offset {offset}, {behind}) because {why}",
        old_master_registered_on=group.registered_on,
        deregistered_for_seconds=group.deregistered_for_seconds,
        fenced_by_operator=fenced_by_operator,
        master_write_rate=group.master_peak_rate,
        # An operator's --force on a master that answers is a switch (the old master rejoins
        # as a slave); anything else, a dry run on a healthy group included, plans what
        # happens when the master has died.
        requires_master_down=group.is_odown or not force,
        decided_at=time.time(),
    )


async def prepare_plan(
    decision: Promote | Fence,
    config: WatchdogConfig,
    snapshot: ClusterSnapshot,
    hosts: Mapping[str, Host],
    state: WatchdogState,
) -> tuple[Plan | Refusal, dict[str, str | None]]:
    """Read what the planner needs (properties files) and plan; returns the files for diffs."""
    files = await read_group_files(config, hosts, decision.broker_name)
    record = state.group(decision.broker_name)
    if isinstance(decision, Promote):
        return plan_promotion(decision, config, files, record.epoch), files
    target = snapshot.broker_at(decision.target_addr)
    used = frozenset(
        b.reported_broker_id
        for b in snapshot.group(decision.broker_name)
        if b.addr != decision.target_addr and b.reported_broker_id is not None
    ) | frozenset(
        r.broker_id
        for ns in snapshot.nameservers_up()
        for r in ns.registrations
        if r.broker_name == decision.broker_name and r.addr != decision.target_addr
    )
    return (
        plan_fence(
            decision,
            config,
            files,
            record.epoch,
            target_offset=target.commitlog_max_offset if target else None,
            promotion_offset=record.promotion_offset,
            used_ids=used | {0},
        ),
        files,
    )


def follow_recorded_masters(
    detector: DetectorState, state: WatchdogState, journal: Journal, config: WatchdogConfig
) -> DetectorState:
    """A new process follows the masters recorded by earlier failovers (state.json).

    A promoted broker keeps its configured id (1, 2, ...); once the broker configured as id 0
    runs as a slave, a fresh detector would know no master of the group and never see the
    promoted one die. The role comes from the failover that promoted it, when journaled.
    """
    for name, record in state.groups.items():
        if name not in config.group_names() or not record.master_addr:
            continue
        role = None
        if record.last_failover_id is not None:
            try:
                plan = journal.progress(record.last_failover_id).plan
            except (OSError, ValueError, KeyError, TypeError):
                plan = None
            if plan is not None and plan.new_master_addr == record.master_addr:
                role = plan.new_role
        detector = detector.with_master(name, record.master_addr, role)
    return detector
