"""The failover history: one row per journal in state_dir/failovers (failovers, planned
switchovers, fences, role restores), as a table or JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FailoverRow",
    "history_from_records",
    "journal_kind",
    "merge_history",
    "read_history",
    "render_history",
    "write_pause_seconds",
]


@dataclass(frozen=True)
class FailoverRow:
    failover_id: str
    kind: str  # promote (a failover), switchover, fence or restore_role: see journal_kind
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
    # The steps of the path the run took: a run that fell back from the in-place promotion
    # counts the restart path's steps in place of the PROMOTE_IN_PLACE step.
    steps_done: int
    steps: int
    detail: str
    # The in-place promotion: None on the restart path (and for a fence), else "done",
    # "refused" (the plug-in said no; the broker was left as it was) or "failed" (the
    # watchdog's own checks, or an outcome unknown); the last two fell back to a restart.
    in_place: str | None = None
    # A switchover's write pause (see write_pause_seconds); None for any other kind.
    write_pause_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def journal_kind(plan: Mapping[str, Any]) -> str:
    """What a journaled plan was: its `kind` ("promote": a failover, "fence", "restore_role"),
    or "switchover" for a promotion that stops a live master's writes first (a stop_writes
    step: decide's is_switchover, read from the JSON). A plan without a kind (older
    journals) was a failover."""
    steps = plan.get("steps")
    if isinstance(steps, Sequence) and any(
        isinstance(s, Mapping) and s.get("kind") == "stop_writes" for s in steps
    ):
        return "switchover"
    kind = plan.get("kind")
    return str(kind) if isinstance(kind, str) and kind else "promote"


def write_pause_seconds(entries: Sequence[Mapping[str, Any]]) -> float | None:
    """How long the old master refused writes before the new master took them, from a run's
    journal: from its writes_stopped line (UPDATE_BROKER_CONFIG answered) to the end of
    wait_master (the new master listed as id 0 on the nameservers), or of restore_writes when
    the switchover stopped. None when the writes were never stopped (or not given back yet)."""
    stopped = next((e for e in entries if e.get("event") == "writes_stopped"), None)
    if stopped is None:
        return None
    for e in entries:
        kind = e.get("kind")
        is_main = e.get("phase", "main") == "main"
        if e.get("event") == "step_done" and (
            (kind == "wait_master" and is_main) or kind == "restore_writes"
        ):
            return float(e["at"]) - float(stopped["at"])
    return None


def _pause(entries: Sequence[Mapping[str, Any]]) -> float | None:
    """write_pause_seconds of a journal read back, None for a line without its time."""
    try:
        return write_pause_seconds(entries)
    except (KeyError, TypeError, ValueError):
        return None


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
    in_place, steps_done, steps = _path(plan, entries, len(done))
    kind = journal_kind(plan)
    return FailoverRow(
        failover_id=failover_id,
        kind=kind,
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
        steps_done=steps_done,
        steps=steps,
        detail=str(finished.get("detail", "")) if finished else "",
        in_place=in_place,
        write_pause_seconds=_pause(entries) if kind == "switchover" else None,
    )


def _path(
    plan: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], main_done: int
) -> tuple[str | None, int, int]:
    """How the run promoted (see FailoverRow.in_place), and its steps done and planned on the
    path it took. A fallback stands in for the failed PROMOTE_IN_PLACE step: its steps count,
    that one does not (counted as main steps, a fallen-back run read "7/8")."""
    kinds = [s.get("kind") for s in plan.get("steps", ()) if isinstance(s, Mapping)]
    steps = len(plan.get("steps", ()))
    if "promote_in_place" not in kinds:
        return None, main_done, steps
    if not any(e.get("event") == "fallback_started" for e in entries):
        return "done", main_done, steps
    failed = [
        str(e.get("detail", ""))
        for e in entries
        if e.get("event") == "step_failed" and e.get("kind") == "promote_in_place"
    ]
    # PluginRefused and PluginUnauthorized (remoting/_plugin.py): the plug-in's own answer.
    refused = any(d.startswith(("plug-in refused", "plug-in did not authenticate")) for d in failed)
    fallback_done = {
        e.get("index")
        for e in entries
        if e.get("event") in ("step_done", "step_skipped") and e.get("phase") == "fallback"
    }
    fallback = len(plan.get("fallback", ()))
    return "refused" if refused else "failed", main_done + len(fallback_done), steps - 1 + fallback


def _steps_cell(row: FailoverRow) -> str:
    counted = f"{row.steps_done}/{row.steps}"
    if row.in_place in ("refused", "failed"):
        return f"in place {row.in_place} -> restart path: {counted} steps"
    return counted


def read_history(state_dir: str | Path, broker_name: str | None = None) -> list[FailoverRow]:
    """Every failover, switchover, fence and role restore journaled in state_dir, oldest
    first; unreadable lines and journals without their plan are skipped (a torn last line
    from a crash is expected)."""
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


def _journal_entries(raw: bytes) -> list[dict[str, Any]]:
    """A journal's entries from a record's value: JSON lines (the file as it is) or one JSON
    array of them; stops at the first line that is not a JSON object, as a torn file's."""
    text = raw.decode("utf-8", "replace")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    lines: list[Any] = whole if isinstance(whole, list) else text.splitlines()
    entries: list[dict[str, Any]] = []
    for line in lines:
        if isinstance(line, str):
            if not line.strip():
                continue
            try:
                line = json.loads(line)
            except ValueError:
                break
        if not isinstance(line, dict):
            break
        entries.append(line)
    return entries


def history_from_records(
    records: Mapping[str, bytes], broker_name: str | None = None
) -> list[FailoverRow]:
    """Rows from the journals among state records, such as the leader of several instances
    commits to etcd under <prefix>/state/ (keyed relative to it). A record counts as a journal
    by its content (JSON lines whose first entry is the plan), whatever its key; its id is its
    entries' failover_id, else the key's last part without `.jsonl`. Other records (the state
    file, epochs) are passed over; of two records of one failover, the longer journal wins."""
    found: dict[str, tuple[int, FailoverRow]] = {}
    for key, raw in records.items():
        entries = _journal_entries(raw)
        if not entries or entries[0].get("event") != "planned":
            continue
        failover_id = entries[0].get("failover_id")
        if not isinstance(failover_id, str) or not failover_id:
            failover_id = key.rpartition("/")[2].removesuffix(".jsonl")
        row = _row(failover_id, entries)
        if row is None or (broker_name is not None and row.broker_name != broker_name):
            continue
        if failover_id not in found or found[failover_id][0] < len(entries):
            found[failover_id] = (len(entries), row)
    rows = [row for _, row in found.values()]
    rows.sort(key=lambda r: (r.started_at or 0.0, r.failover_id))
    return rows


def merge_history(*sources: Sequence[FailoverRow]) -> list[FailoverRow]:
    """One row per failover from several sources (etcd's copies, this instance's files): a
    finished row over a running one (a leader may die, or stop committing, before its last
    entries reach etcd), else the one with more steps done, else the first source's."""
    best: dict[str, FailoverRow] = {}
    for rows in sources:
        for row in rows:
            held = best.get(row.failover_id)
            if held is None or _further(row, held):
                best[row.failover_id] = row
    return sorted(best.values(), key=lambda r: (r.started_at or 0.0, r.failover_id))


def _further(row: FailoverRow, than: FailoverRow) -> bool:
    if (row.outcome == "running") != (than.outcome == "running"):
        return than.outcome == "running"
    return row.steps_done > than.steps_done


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def render_history(rows: Sequence[FailoverRow]) -> str:
    """A fixed-width table, one failover, switchover, fence or role restore a line."""
    if not rows:
        return "no failover, switchover or fence journaled yet"
    header = (
        "started (UTC)", "id", "kind", "group", "outcome", "secs", "old -> new",
        "loss exp/max B", "fenced by", "aside msgs", "pause s", "steps",
    )  # fmt: skip
    table = [header]
    for r in rows:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.started_at))
            if r.started_at is not None
            else "-"
        )
        secs = f"{r.duration_seconds:.1f}" if isinstance(r.duration_seconds, int | float) else "-"
        pause = f"{r.write_pause_seconds:.2f}" if r.write_pause_seconds is not None else "-"
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
                pause,
                _steps_cell(r),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
