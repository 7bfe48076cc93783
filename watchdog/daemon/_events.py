"""What a running failover's events become in the daemon's log and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from ..act import FailoverResult, Journal
from ..decide import Plan, is_switchover
from ..observe import WatchdogMetrics, write_pause_seconds

__all__ = ["log_failover_event"]

log = structlog.get_logger("rmq_watchdog")


def _noun(kind: str, is_planned_switch: bool) -> str:
    if is_planned_switch:
        return "switchover"
    return {"fence": "fence", "restore_role": "role restore"}.get(kind, "failover")


def _write_pause(journal: Journal | None, failover_id: Any) -> float | None:
    """A finished switchover's write pause from its journal; None when it cannot say."""
    if journal is None or not isinstance(failover_id, str):
        return None
    with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
        return write_pause_seconds(journal.read(failover_id))
    return None


def log_failover_event(
    event: str,
    fields: Mapping[str, Any],
    metrics: WatchdogMetrics,
    now_wall: float,
    *,
    is_planned_switch: bool = False,
    journal: Journal | None = None,
) -> None:
    """One log line (and the counters it feeds) per executor event; others are ignored.
    `is_planned_switch`: the run is a planned switchover (its result's kind is "promote", as
    a failover's), counted apart from failovers, its write pause read from `journal`."""
    failover_id = fields.get("failover_id")
    if event == "failover_started":
        plan: Plan = fields["plan"]
        log.warning(
            _noun(plan.kind, is_planned_switch or is_switchover(plan)) + " started",
            new_role=plan.new_role,
            role_lowered_from=plan.lowered_from,
            failover_id=failover_id,
            broker_name=plan.broker_name,
            reason=plan.reason,
            steps=len(plan.steps),
        )
    elif event in ("step_done", "step_skipped", "step_failed"):
        record = fields["record"]
        step = fields["step"]
        method = log.warning if record.status != "done" else log.info
        method(
            f"step {record.index + 1} {record.status}: {step.purpose}",
            failover_id=failover_id,
            phase=record.phase,
            step=record.kind,
            broker=record.broker_key,
            detail=record.detail,
            duration_seconds=round(record.duration_seconds, 3),
        )
    elif event == "rollback_started":
        log.error("rolling back", failover_id=failover_id, reason=fields.get("reason"))
    elif event == "inplace_promotion":
        tried = str(fields.get("result"))
        (log.warning if tried == "done" else log.error)(
            f"in-place promotion {tried}: {fields.get('detail')}",
            failover_id=failover_id,
            broker_name=fields.get("broker_name"),
        )
        metrics.record_inplace_promotion(str(fields.get("broker_name")), tried)
    elif event == "fallback_started":
        log.error("falling back to a restart", failover_id=failover_id, reason=fields["reason"])
    elif event == "store_moved_aside":
        log.warning(
            f"moved the deposed master's store aside: {fields.get('messages')} message(s), "
            f"{fields.get('bytes')} bytes past the promotion point, kept in "
            f"{fields.get('path')}",
            failover_id=failover_id,
            broker=fields.get("broker_key"),
            summary=fields.get("summary"),
        )
        metrics.record_moved_aside(
            str(fields.get("broker_name")), fields.get("bytes"), fields.get("messages")
        )
    elif event == "failover_finished":
        result: FailoverResult = fields["result"]
        method = log.warning if result.is_success else log.error
        noun = _noun(result.kind, is_planned_switch)
        method(
            f"{noun} {result.outcome}: {result.detail}",
            failover_id=failover_id,
            broker_name=result.broker_name,
            duration_seconds=round(result.duration_seconds, 3),
        )
        if result.kind == "fence":
            metrics.record_fence(result.broker_name, result.outcome)
        elif is_planned_switch:  # planned, no fault: not counted as a failover
            metrics.record_switchover(
                result.broker_name,
                result.outcome,
                result.duration_seconds,
                now_wall,
                write_pause_seconds=_write_pause(journal, failover_id),
            )
        elif result.kind != "restore_role":  # no failover: not counted as one
            metrics.record_failover(
                result.broker_name, result.outcome, result.duration_seconds, now_wall
            )
