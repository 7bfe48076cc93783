"""`status`'s watchdog part: the daemon's view, the state dir's records and the journals, and
with [etcd] the instances, the leader and the journals the leader committed there."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..act import Journal, StateStore
from ..config import WatchdogConfig
from ..coord import EtcdUnavailable, GroupRead, GroupView, InstanceView, read_group_of
from ..daemon import ask_status, control_socket_path
from ..observe import FailoverRow, history_from_records, merge_history, read_history

# The leader's records under <prefix>/state/ mirror its state dir (daemon/_ha.py): the state
# file and one journal per failover. Only names of that shape become files here.
_STATE_FILE = "state.json"
_JOURNAL_KEY = re.compile(r"failovers/[A-Za-z0-9][A-Za-z0-9._:-]{0,200}\.jsonl")

__all__ = [
    "EtcdRead",
    "etcd_view",
    "group_history",
    "leader_hint",
    "read_etcd",
    "watchdog_view",
]


@dataclass(frozen=True)
class EtcdRead:
    """What a one-shot command read of the group in etcd: the keys, or why not (one line).
    Neither without [etcd]."""

    group: GroupRead | None = None
    error: str | None = None
    state: dict[str, bytes] = field(default_factory=dict)

    @property
    def leader_name(self) -> str | None:
        return None if self.group is None else self.group.leader_name


async def read_etcd(config: WatchdogConfig, *, with_state: bool = True) -> EtcdRead:
    """The group's keys (and the state records, journals among them) once; never raises for
    etcd: an unreachable etcd, or a TLS file that cannot be read, is `error`."""
    if config.etcd is None:
        return EtcdRead()
    try:
        group = await read_group_of(config, state_prefix="" if with_state else None)
    except EtcdUnavailable as exc:
        return EtcdRead(error=str(exc) or type(exc).__name__)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return EtcdRead(error=f"{where}{exc.strerror or exc}")
    return EtcdRead(group=group, state=group.state)


def group_history(
    config: WatchdogConfig, read: EtcdRead, broker_name: str | None = None
) -> list[FailoverRow]:
    """Every failover of the group: the journals the leader committed to etcd (any instance's
    failovers) merged with this instance's own files, one row per failover (the further one)."""
    local = read_history(config.state_dir, broker_name)
    if not read.state:
        return local
    return merge_history(history_from_records(read.state, broker_name), local)


def _group_view(view: GroupView) -> dict[str, Any]:
    judged = "down" if view.down else "alive" if view.alive else "undecided"
    return {"master": view.master, "view": judged, "reason": view.reason, "at": view.at}


def _instance(
    view: InstanceView, read: GroupRead, own_name: str, now_wall: float
) -> dict[str, Any]:
    return {
        "name": view.name,
        "is_leader": view.name == read.leader_name,
        "is_this": view.name == own_name,
        "started_at": view.started_at,
        "published_at": view.published_at,
        "published_age_seconds": round(now_wall - view.published_at, 3),
        "groups": {name: _group_view(g) for name, g in sorted(view.groups.items())},
    }


def etcd_view(config: WatchdogConfig, read: EtcdRead, now_wall: float) -> dict[str, Any] | None:
    """The `etcd` part of status (None without [etcd]): reachable or why not, the leader, and
    every live instance with the age of its last publication and its view of each group."""
    if config.etcd is None:
        return None
    out: dict[str, Any] = {
        "endpoints": list(config.etcd.endpoints),
        "prefix": config.etcd_prefix(),
        "this_instance": config.instance_name,
        "reachable": read.group is not None,
        "error": read.error,
        "leader": None,
        "instances": [],
        "unreadable_keys": [],
    }
    group = read.group
    if group is None:
        return out
    if group.leader is not None:
        out["leader"] = {
            "instance": group.leader.instance,
            "since": group.leader.since,
            "for_seconds": round(now_wall - group.leader.since, 3),
        }
    out["instances"] = [
        _instance(v, group, config.instance_name, now_wall) for v in group.instances
    ]
    out["unreadable_keys"] = list(group.unreadable)
    return out


@contextmanager
def _group_state_dir(config: WatchdogConfig, read: EtcdRead) -> Iterator[tuple[str, str]]:
    """(the state dir to read, "local" or "etcd"): the leader's copy in etcd, written into a
    temporary folder, when this instance is not the leader and etcd holds a state file (a
    follower's own state dir is as old as its last lead); else this instance's state dir."""
    if (
        read.group is None
        or _STATE_FILE not in read.state
        or read.leader_name == config.instance_name
    ):
        yield config.state_dir, "local"
        return
    with tempfile.TemporaryDirectory(prefix="rmq-watchdog-status-") as tmp:
        for key, value in read.state.items():
            if key == _STATE_FILE or _JOURNAL_KEY.fullmatch(key):
                path = Path(tmp) / key
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(value)
        yield tmp, "etcd"


async def watchdog_view(
    config: WatchdogConfig, now_wall: float, read: EtcdRead | None = None
) -> dict[str, Any]:
    """Per group: the running daemon's state and sentence (when one answers), a running
    failover and its step, the block, the epoch and master on record, the last failover and
    the stores moved aside; with [etcd] (`read`) the instances and the leader, and the last
    failover among the journals committed there too; on an instance that does not lead, the
    block, epoch and running failover are the leader's, from etcd (`state_source`). Read
    beside a running daemon, so the readers never raise."""
    read = read or EtcdRead()
    daemon = await ask_status(config)
    history = group_history(config, read)
    with _group_state_dir(config, read) as (state_dir, source):
        groups = _groups(config, state_dir, history, daemon, now_wall)
    view: dict[str, Any] = {
        "daemon": None
        if daemon is None
        else {"pid": daemon.get("pid"), "cycle": daemon.get("cycle")},
        "control_socket": str(control_socket_path(config)),
        "state_source": source,
        "groups": groups,
    }
    etcd = etcd_view(config, read, now_wall)
    if etcd is not None:
        view["etcd"] = etcd
    return view


def _groups(
    config: WatchdogConfig,
    state_dir: str,
    history: list[FailoverRow],
    daemon: dict[str, Any] | None,
    now_wall: float,
) -> dict[str, Any]:
    state = StateStore(state_dir).peek()
    journal = Journal(state_dir)
    groups: dict[str, Any] = {}
    for name in config.group_names():
        record = state.group(name)
        live = (daemon or {}).get("groups", {}).get(name, {})
        running = state.running.get(name)
        rows = [r for r in history if r.broker_name == name]
        last = next((r for r in reversed(rows) if r.outcome != "running"), None)
        aside = [r for r in rows if r.moved_aside_messages is not None]
        groups[name] = {
            "state": live.get("state"),
            "reason": live.get("reason"),
            "failover": _running(journal, running) if running else None,
            "blocked_until": record.blocked_until if record.is_blocked(now_wall) else None,
            "block_reason": record.block_reason if record.is_blocked(now_wall) else None,
            "awaiting_fence_retry_at": record.fence_retry_at,
            "epoch": record.epoch,
            "master": record.master_key,
            "master_addr": record.master_addr,
            "role_lowered_from": record.lowered_from,
            "last_failover": None
            if last is None
            else {
                "id": last.failover_id,
                "kind": last.kind,
                "outcome": last.outcome,
                "started_at": last.started_at,
                "duration_seconds": last.duration_seconds,
            },
            "stores_moved_aside": [
                {"failover_id": r.failover_id, "messages": r.moved_aside_messages} for r in aside
            ],
        }
    return groups


def _running(journal: Journal, failover_id: str) -> dict[str, Any]:
    """A running failover's position: its next step (1-based) of how many, and what it does."""
    try:
        progress = journal.progress(failover_id)
    except (OSError, ValueError, KeyError, TypeError):  # a journal being written, or torn
        return {"id": failover_id, "step": None, "steps": None, "purpose": None}
    steps = progress.plan.steps
    pending = [i for i in range(len(steps)) if i not in progress.done_steps]
    index = pending[0] if pending else len(steps) - 1
    return {
        "id": failover_id,
        "step": index + 1,
        "steps": len(steps),
        "purpose": steps[index].purpose if steps else None,
        "rolling_back": progress.is_rolling_back,
    }


def leader_hint(read: EtcdRead, own_name: str) -> str | None:
    """One sentence naming the leader (None without [etcd]): who leads, or that nobody does,
    or that etcd cannot be reached; why a `failover` or `ack` finds no leader to ask."""
    if read.group is None and read.error is None:
        return None
    if read.group is None:
        return f"etcd cannot be reached, so the leader is unknown ({read.error})"
    leader = read.leader_name
    if leader is None:
        return "etcd names no leader now: no instance can act (a new one leads within lease_ttl)"
    if leader == own_name:
        return f"etcd names this instance ({own_name}) the leader"
    return f"the leader is instance {leader} (etcd {read.group.prefix}/leader)"
