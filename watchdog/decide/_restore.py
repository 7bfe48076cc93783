"""A lowered master role restored (pure): when a group's slave is in sync again, and the plan."""

# A promotion with no other slave left lowers SYNC_MASTER to ASYNC_MASTER (plan_promotion:
# a SYNC_MASTER without a slave answers every send SLAVE_NOT_AVAILABLE). Once a slave is back
# and in sync, the broker plug-in's SET_MASTER_ROLE switches the running master back
# (broker-plugin/README.md): no restart, and no UPDATE_BROKER_CONFIG, which rewrites the whole
# properties file. Without a plug-in nothing here fires, and `check` keeps telling the
# operator to set the role again (decide.role_lowered).

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeGuard

from ..config import WatchdogConfig
from ..detect import ClusterVerdict
from ..model import MASTER_ROLES, BrokerObservation, ClusterSnapshot, GroupState, PropertiesFile
from ._decision import GroupFailoverPolicy, Policy
from ._inplace import PluginAnswer
from ._plan import Plan, Refusal, Step, StepKind

__all__ = [
    "RESTORE_MAX_LAG_BYTES",
    "RESTORE_RETRY_SECONDS",
    "RestoreRole",
    "decide_role_restores",
    "plan_role_restore",
    "restore_asks",
    "restore_log_fields",
]

# A slave counts as in sync when its log end is this close to the master's (either way: the
# prober reads the two brokers side by side, so a slave read a moment after its master may
# show bytes the master's read did not). HA ships 32 KiB batches; a slave that keeps up is
# a few batches behind at most, one that catches up is far beyond this.
RESTORE_MAX_LAG_BYTES = 1_048_576
# After an attempt (success or not) the daemon waits this long before trying that group
# again: a plug-in that refuses (a secret that differs from the watchdog's, a clock the
# plug-in finds stale) must not be asked every other cycle.
RESTORE_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class RestoreRole:
    """Switch the group's running master back to the role a failover lowered."""

    broker_name: str
    master_key: str
    master_addr: str
    role: str  # the role restored (the old master's: SYNC_MASTER)
    current_role: str  # the role the master answers with now (ASYNC_MASTER)
    lowered_by: str  # the failover that lowered it
    slave_key: str  # a slave in sync on two consecutive cycles
    slave_lag_bytes: int  # its lag this cycle
    plugin_version: str
    reason: str
    state: GroupState = GroupState.DEGRADED

    kind: ClassVar[Literal["restore_role"]] = "restore_role"


@dataclass(frozen=True)
class _Ready:
    """A group whose snapshots allow a restore; only its master's plug-in is still to ask."""

    master: BrokerObservation
    role: str
    lowered_by: str
    slave_key: str
    slave_lag_bytes: int


def _is_offset(value: object) -> TypeGuard[int]:
    # A broker sending garbage may report anything; only a non-negative int is an offset.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _in_sync(
    snapshot: ClusterSnapshot, master: BrokerObservation, skip_key: str | None, max_lag: int
) -> dict[str, int]:
    """The group's slaves attached to `master` and in sync in this snapshot: key -> lag.

    Attached: it answers as SLAVE and an answering nameserver lists it with an id >= 1 (4.x
    shows no HA link over remoting; the registration is how a slave learns its master's HA
    address). In sync: its log end within `max_lag` bytes of the master's. `skip_key`: a
    deposed master whose log is still to be checked against the promotion point."""
    found: dict[str, int] = {}
    for obs in snapshot.group(master.broker_name):
        if obs.addr == master.addr or obs.key == skip_key or not obs.is_up:
            continue
        if obs.role != "SLAVE":
            continue
        if not any(i >= 1 for ns in snapshot.nameservers_up() for i in ns.ids_of(obs.addr)):
            continue
        end, slave_end = master.commitlog_max_offset, obs.commitlog_max_offset
        if not _is_offset(end) or not _is_offset(slave_end):
            continue
        lag = end - slave_end
        if abs(lag) <= max_lag:
            found[obs.key] = lag
    return found


def _ready(
    name: str,
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None,
    verdict: ClusterVerdict,
    config: WatchdogConfig,
    gp: GroupFailoverPolicy,
    max_lag: int,
) -> _Ready | None:
    if gp.lowered is None or config.failover.plugin_secret_file is None:
        return None
    was, lowered_by = gp.lowered
    if was not in MASTER_ROLES or not gp.is_auto_failover or gp.is_failover_running:
        return None
    g = verdict.group(name)
    if verdict.is_isolated or verdict.is_tilted or g is None:
        return None
    if g.is_sdown or g.is_odown or g.is_split_brain or g.master_addr is None:
        return None
    master = snapshot.master_of(name)
    if master is None or master.addr != g.master_addr or not master.is_up:
        return None
    if master.role not in MASTER_ROLES or master.role == was:
        return None
    # Two consecutive cycles: one read of two offsets can catch a slave passing through.
    before = previous.master_of(name) if previous is not None else None
    if previous is None or before is None or before.addr != master.addr or not before.is_up:
        return None
    skip = gp.rejoin_check[0] if gp.rejoin_check is not None else None
    now = _in_sync(snapshot, master, skip, max_lag)
    then = _in_sync(previous, before, skip, max_lag)
    both = sorted(k for k in now if k in then)
    if not both:
        return None
    key = min(both, key=lambda k: (abs(now[k]), k))
    return _Ready(master, was, lowered_by, key, now[key])


def _each_ready(
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None,
    verdict: ClusterVerdict,
    config: WatchdogConfig,
    policy: Policy,
    retry_at: Mapping[str, float] | None,
    now: float,
    max_lag: int,
) -> dict[str, _Ready]:
    found: dict[str, _Ready] = {}
    for name in config.group_names():
        if (retry_at or {}).get(name, now) > now:
            continue
        ready = _ready(name, snapshot, previous, verdict, config, policy.for_group(name), max_lag)
        if ready is not None:
            found[name] = ready
    return found


def restore_asks(
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None,
    verdict: ClusterVerdict,
    config: WatchdogConfig,
    policy: Policy,
    *,
    now: float,
    retry_at: Mapping[str, float] | None = None,
    max_lag_bytes: int = RESTORE_MAX_LAG_BYTES,
) -> dict[str, str]:
    """The masters whose PLUGIN_INFO the caller asks before `decide_role_restores` (broker key
    -> addr): those of groups whose role a failover lowered and that have a slave in sync on
    this cycle and the one before (`previous`); usually none, so no request at all.
    `retry_at` (group -> time, the clock of `now`): groups not to try again before then."""
    ready = _each_ready(snapshot, previous, verdict, config, policy, retry_at, now, max_lag_bytes)
    return {r.master.key: r.master.addr for r in ready.values()}


def decide_role_restores(
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None,
    verdict: ClusterVerdict,
    config: WatchdogConfig,
    policy: Policy,
    *,
    plugins: Mapping[str, PluginAnswer],
    epochs: Mapping[str, int],
    now: float,
    retry_at: Mapping[str, float] | None = None,
    max_lag_bytes: int = RESTORE_MAX_LAG_BYTES,
) -> tuple[RestoreRole, ...]:
    """A RestoreRole for each group whose master role a failover lowered (policy `lowered`),
    whose master answers with the lower role, and that has a slave attached and within
    `max_lag_bytes` on this cycle and the one before, once the master's plug-in (`plugins`,
    asked for `restore_asks`) answers with a secret, as that master, at an epoch not newer
    than the group's (`epochs`, state.json). Needs [failover] plugin_secret_file; groups with
    automatic failover off or a failover running get none. Every other group: nothing, and
    its NoAction keeps saying what the operator should do."""
    ready = _each_ready(snapshot, previous, verdict, config, policy, retry_at, now, max_lag_bytes)
    restores: list[RestoreRole] = []
    for name, r in ready.items():
        master = r.master
        answer = plugins.get(master.key)
        info = answer.info if answer is not None else None
        epoch = epochs.get(name, 0)
        if info is None or not info.has_secret or info.broker_id != 0:
            continue
        if info.broker_role != master.role or info.last_epoch > epoch:
            continue
        current = str(master.role)
        restores.append(
            RestoreRole(
                broker_name=name,
                master_key=master.key,
                master_addr=master.addr,
                role=r.role,
                current_role=current,
                lowered_by=r.lowered_by,
                slave_key=r.slave_key,
                slave_lag_bytes=r.slave_lag_bytes,
                plugin_version=info.plugin_version,
                reason=(
                    f"restoring {name}'s master {master.key}@{master.addr} from {current} to "
                    f"{r.role} (lowered by failover {r.lowered_by}): slave {r.slave_key} in "
                    f"sync ({r.slave_lag_bytes} bytes behind) on two consecutive cycles; its "
                    f"plug-in {info.plugin_version} switches it without a restart"
                ),
            )
        )
    return tuple(restores)


def restore_log_fields(decision: RestoreRole) -> dict[str, object]:
    """The log line of a restore decision, in the shape of `log_fields`."""
    return {
        "event": decision.reason,
        "broker_name": decision.broker_name,
        "decision": decision.kind,
        "state": str(decision.state),
        "master": decision.master_key,
        "role": decision.role,
        "slave": decision.slave_key,
        "slave_lag_bytes": decision.slave_lag_bytes,
    }


def plan_role_restore(
    decision: RestoreRole,
    config: WatchdogConfig,
    files: Mapping[str, str | None],
    current_epoch: int,
) -> Plan | Refusal:
    """The steps that give the running master its role back, at the group's epoch (a restore
    changes no master, so the epoch stays; the plug-in takes a SET_MASTER_ROLE at an epoch at
    least the last it served, so a watchdog with an older state is refused).

    The properties file first: if the switch then fails, the file already says what a restart
    should bring back, and the group stays recorded as lowered, so the restore is tried again;
    the other way round, a failed rewrite after the switch would leave a master whose next
    restart silently lowers it again, with nothing left recorded to say so."""
    name = decision.broker_name
    master = config.broker_by_key(decision.master_key)
    if master is None or master.addr != decision.master_addr:
        return Refusal(name, f"master {decision.master_key} is not in the configuration")
    if decision.role not in MASTER_ROLES:
        return Refusal(name, f"role {decision.role!r} is not a master role")
    text = files.get(master.key)
    if text is None:
        return Refusal(
            name, f"cannot read {master.key}'s properties {master.properties} on {master.host}"
        )
    in_file = PropertiesFile.parse(text).get("brokerRole") or "ASYNC_MASTER (the default)"
    who = f"{master.key}@{master.addr}"
    steps = (
        Step(
            StepKind.REWRITE,
            master.key,
            master.host,
            f"make {master.key}'s properties say brokerRole={decision.role} again (now "
            f"{in_file}), first: a later restart keeps the role even if the switch fails",
            path=master.properties,
            edits=(("brokerRole", decision.role),),
        ),
        Step(
            StepKind.SET_MASTER_ROLE,
            master.key,
            master.host,
            f"switch {who} from {decision.current_role} to {decision.role} in its running JVM "
            f"(its plug-in, epoch {current_epoch}; no restart, no UPDATE_BROKER_CONFIG): "
            f"its sends wait for a slave again ({decision.slave_key} is in sync)",
        ),
        Step(
            StepKind.RECORD_ROLE,
            master.key,
            master.host,
            f"record that {name}'s master role is {decision.role} again (state.json: the "
            f"lowering by failover {decision.lowered_by} cleared)",
        ),
    )
    return Plan(
        kind="restore_role",
        broker_name=name,
        reason=decision.reason,
        epoch=current_epoch,
        steps=steps,
        new_master_key=master.key,
        new_master_addr=master.addr,
        new_role=decision.role,
        details=(
            ("role", f"{decision.current_role} -> {decision.role}"),
            ("lowered_by", decision.lowered_by),
            ("slave", f"{decision.slave_key}, {decision.slave_lag_bytes} bytes behind"),
            ("plugin", decision.plugin_version),
        ),
        requires_master_down=False,
    )
