"""The failover history: one row per journal in state_dir/failovers, as a table or JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["FailoverRow", "read_history", "render_history"]


@dataclass(frozen=True)
class FailoverRow:
    failover_id: str
    kind: str  # promote or fence
    broker_name: str
    started_at: float | None
    outcome: str  # succeeded, failed, rolled_back, awaiting_fence, ... or "running"
    duration_seconds: float | None
    old_master: str | None
    new_master: str | None
    expected_loss_bytes: int | None
    max_loss_bytes: int | None
    fenced_by: str | None
    moved_aside_messages: int | None
    steps_done: int
    steps: int
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _row(failover_id: str, entries: Sequence[Mapping[str, Any]]) -> FailoverRow | None:
    if not entries or entries[0].get("event") != "planned":
        return None
    plan = entries[0].get("plan")
    if not isinstance(plan, Mapping):
        return None
    finished = next((e for e in reversed(entries) if e.get("event") == "finished"), None)
    done = {
        e.get("index")
        for e in entries
        if e.get("event") in ("step_done", "step_skipped") and e.get("phase", "main") == "main"
    }
    grown = [e.get("max_loss_bytes") for e in entries if e.get("event") == "max_loss_bytes"]
    fenced = [e.get("path") for e in entries if e.get("event") == "fenced_by"]
    moved = [e.get("messages") for e in entries if e.get("event") == "store_moved_aside"]
    started = entries[0].get("at")
    return FailoverRow(
        failover_id=failover_id,
        kind=str(plan.get("kind", "?")),
        broker_name=str(plan.get("broker_name", "?")),
        started_at=float(started) if isinstance(started, int | float) else None,
        outcome=str(finished.get("outcome")) if finished else "running",
        duration_seconds=finished.get("duration_seconds") if finished else None,
        old_master=plan.get("old_master_key"),
        new_master=plan.get("new_master_key"),
        expected_loss_bytes=plan.get("expected_loss_bytes"),
        max_loss_bytes=grown[-1] if grown else plan.get("max_loss_bytes"),
        fenced_by=str(fenced[-1]) if fenced else None,
        moved_aside_messages=sum(m for m in moved if isinstance(m, int)) if moved else None,
        steps_done=len(done),
        steps=len(plan.get("steps", ())),
        detail=str(finished.get("detail", "")) if finished else "",
    )


def read_history(state_dir: str | Path, broker_name: str | None = None) -> list[FailoverRow]:
    """Every failover and fence journaled in state_dir, oldest first; unreadable lines and
    journals without their plan are skipped (a torn last line from a crash is expected)."""
    rows: list[FailoverRow] = []
    for path in sorted((Path(state_dir) / "failovers").glob("*.jsonl")):
        entries: list[dict[str, Any]] = []
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if isinstance(entry, dict):
                entries.append(entry)
        row = _row(path.stem, entries)
        if row is not None and (broker_name is None or row.broker_name == broker_name):
            rows.append(row)
    rows.sort(key=lambda r: (r.started_at or 0.0, r.failover_id))
    return rows


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def render_history(rows: Sequence[FailoverRow]) -> str:
    """A fixed-width table, one failover or fence a line."""
    if not rows:
        return "no failover or fence journaled yet"
    header = (
        "started (UTC)", "id", "kind", "group", "outcome", "secs", "old -> new",
        "loss exp/max B", "fenced by", "aside msgs", "steps",
    )  # fmt: skip
    table = [header]
    for r in rows:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.started_at))
            if r.started_at is not None
            else "-"
        )
        secs = f"{r.duration_seconds:.1f}" if isinstance(r.duration_seconds, int | float) else "-"
        table.append(
            (
                started,
                r.failover_id,
                r.kind,
                r.broker_name,
                r.outcome,
                secs,
                f"{_cell(r.old_master)} -> {_cell(r.new_master)}",
                f"{_cell(r.expected_loss_bytes)}/{_cell(r.max_loss_bytes)}",
                _cell(r.fenced_by),
                _cell(r.moved_aside_messages),
                f"{r.steps_done}/{r.steps}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
