"""Before acting: read the group's files (and, for in-place promotion and role restores, ask the
brokers' plug-ins) and plan, name the failover, recall recorded masters."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import WatchdogConfig
from ..decide import (
    Fence,
    Plan,
    PluginAnswer,
    Policy,
    Promote,
    Refusal,
    RestoreRole,
    decide_role_restores,
    plan_fence,
    plan_promotion,
    plan_role_restore,
    restore_asks,
)
from ..detect import ClusterVerdict
from ..hosts import Host, HostError
from ..model import ClusterSnapshot
from ..remoting import ClientPool, RemotingError, describe_error, get_plugin_info
from ._journal import Journal
from ._state import WatchdogState

__all__ = [
    "RecordedMaster",
    "ask_plugins",
    "new_failover_id",
    "prepare_plan",
    "read_group_files",
    "recorded_masters",
    "role_restores",
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


async def ask_plugins(
    config: WatchdogConfig, pool: ClientPool, addrs: Mapping[str, str]
) -> dict[str, PluginAnswer]:
    """PLUGIN_INFO of each broker (key -> addr), side by side: what its plug-in says, or why
    there is none (no plug-in, or the request failed)."""

    async def ask(key: str, addr: str) -> tuple[str, PluginAnswer]:
        try:
            info = await get_plugin_info(
                pool.get(addr), timeout_seconds=config.probe.timeout_seconds
            )
        except RemotingError as exc:
            return key, PluginAnswer(None, describe_error(exc))
        return key, PluginAnswer(info)

    return dict(await asyncio.gather(*(ask(k, a) for k, a in addrs.items())))


async def role_restores(
    config: WatchdogConfig,
    pool: ClientPool,
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None,
    verdict: ClusterVerdict,
    policy: Policy,
    state: WatchdogState,
    *,
    now: float,
    retry_at: Mapping[str, float] | None = None,
) -> tuple[RestoreRole, ...]:
    """One cycle's role restores (decide/_restore.py): the PLUGIN_INFO of the masters of groups
    ready for one (usually none: no request), then the decision. `previous` is the cycle
    before's snapshot; `retry_at` (group -> time on the clock of `now`) holds groups back."""
    asks = restore_asks(snapshot, previous, verdict, config, policy, now=now, retry_at=retry_at)
    plugins = await ask_plugins(config, pool, asks) if asks else {}
    epochs = {name: record.epoch for name, record in state.groups.items()}
    return decide_role_restores(
        snapshot, previous, verdict, config, policy,
        plugins=plugins, epochs=epochs, now=now, retry_at=retry_at,
    )  # fmt: skip


async def prepare_plan(
    decision: Promote | Fence | RestoreRole,
    config: WatchdogConfig,
    snapshot: ClusterSnapshot,
    hosts: Mapping[str, Host],
    state: WatchdogState,
    *,
    pool: ClientPool | None = None,
) -> tuple[Plan | Refusal, dict[str, str | None]]:
    """Read what the planner needs (properties files; with [failover] promotion = "inplace"
    the PLUGIN_INFO of every member but the old master) and plan; returns the files for
    diffs. Without `pool`, plug-ins are asked over connections of their own. A RestoreRole
    is planned at the group's epoch (its master's plug-in was asked by role_restores)."""
    files = await read_group_files(config, hosts, decision.broker_name)
    record = state.group(decision.broker_name)
    if isinstance(decision, RestoreRole):
        return plan_role_restore(decision, config, files, record.epoch), files
    if isinstance(decision, Promote):
        plugins = None
        if config.failover.promotion == "inplace":
            addrs = {
                b.key: b.addr
                for b in config.group(decision.broker_name)
                if b.key != decision.old_master_key
            }
            own = pool is None
            asking = pool or ClientPool(
                connect_timeout_seconds=config.probe.connect_timeout_seconds,
                source_address=config.probe.source_address,
                credentials=config.acl_credentials(),
            )
            try:
                plugins = await ask_plugins(config, asking, addrs)
            finally:
                if own:
                    await asking.close_all()
        plan = plan_promotion(decision, config, files, record.epoch, plugins=plugins)
        return plan, files
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


@dataclass(frozen=True)
class RecordedMaster:
    """A group's master as the last failover recorded it (state.json)."""

    addr: str
    role: str | None  # the role it was promoted to; None when its journal does not say


def recorded_masters(
    state: WatchdogState, journal: Journal, config: WatchdogConfig
) -> dict[str, RecordedMaster]:
    """The masters earlier failovers recorded, for a new process's detection to follow.

    A promoted broker keeps its configured id (1, 2, ...); once the broker configured as id 0
    runs as a slave, a fresh detector would know no master of the group and never see the
    promoted one die. The role comes from the failover that promoted it, when journaled.
    Groups the configuration no longer has are left out.
    """
    masters: dict[str, RecordedMaster] = {}
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
        masters[name] = RecordedMaster(record.master_addr, role)
    return masters
