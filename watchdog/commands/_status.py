"""`status`'s watchdog part: the daemon's view, the state dir's records and the journals."""

from __future__ import annotations

from typing import Any

from ..act import Journal, StateStore
from ..config import WatchdogConfig
from ..daemon import ask_status, control_socket_path
from ..observe import read_history

__all__ = ["watchdog_view"]


async def watchdog_view(config: WatchdogConfig, now_wall: float) -> dict[str, Any]:
    """Per group: the running daemon's state and sentence (when one answers), a running
    failover and its step, the block, the epoch and master on record, the last failover and
    the stores moved aside. Read beside a running daemon, so the readers never raise."""
    daemon = await ask_status(config)
    state = StateStore(config.state_dir).peek()
    history = read_history(config.state_dir)
    journal = Journal(config.state_dir)
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
    return {
        "daemon": None
        if daemon is None
        else {"pid": daemon.get("pid"), "cycle": daemon.get("cycle")},
        "control_socket": str(control_socket_path(config)),
        "groups": groups,
    }


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
