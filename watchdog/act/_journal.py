"""Failover journals: one JSON-lines file per failover, appended and fsynced step by step."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..decide import Plan

__all__ = ["Journal", "JournalProgress"]


@dataclass(frozen=True)
class JournalProgress:
    plan: Plan
    done_steps: frozenset[int]  # indexes of steps done or skipped
    is_finished: bool
    is_rolling_back: bool
    outcome: str | None
    backups: dict[str, str]  # broker key -> backup path of its first rewrite
    promotion_offset: int | None  # the candidate's log end when it stopped being a slave
    skipped_steps: frozenset[int] = frozenset()  # of done_steps, those that failed as best effort
    # The in-place promotion gave way to the restart path (fallback_started): why, and the
    # fallback steps done since.
    fallback_reason: str | None = None
    fallback_done: frozenset[int] = frozenset()


class Journal:
    def __init__(self, state_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(state_dir) / "failovers"
        self.clock = clock

    def path(self, failover_id: str) -> Path:
        return self.dir / f"{failover_id}.jsonl"

    def append(self, failover_id: str, event: str, **fields: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"at": self.clock(), "failover_id": failover_id, "event": event, **fields},
            sort_keys=True,
        )
        with open(self.path(failover_id), "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_all(
        self, exclude: Collection[str] = (), *, lenient: bool = False
    ) -> dict[str, list[dict[str, Any]]]:
        """Every journal in the folder but those in ``exclude``, by failover id, in name order.

        ``lenient`` never raises, for a reader beside a running daemon (the drill): a journal
        that cannot be read is left out, bytes that are not UTF-8 are replaced, and a line that
        is not a JSON object ends its journal as a torn one does.
        """
        if not self.dir.is_dir():
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self.dir.glob("*.jsonl")):
            if path.stem in exclude:
                continue
            if not lenient:
                out[path.stem] = self.read(path.stem)
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            entries = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    doc = None
                if not isinstance(doc, dict):
                    break  # a torn last line: everything before it is good
                entries.append(doc)
            out[path.stem] = entries
        return out

    def read(self, failover_id: str) -> list[dict[str, Any]]:
        entries = []
        with open(self.path(failover_id)) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    break  # a torn last line from a crash mid-write: everything before is good
        return entries

    def progress(self, failover_id: str) -> JournalProgress:
        entries = self.read(failover_id)
        if not entries or entries[0].get("event") != "planned":
            raise ValueError(f"journal {self.path(failover_id)} does not start with its plan")
        plan = Plan.from_json(entries[0]["plan"])
        done: set[int] = set()
        finished = False
        rolling_back = False
        outcome = None
        backups: dict[str, str] = {}
        promotion_offset: int | None = None
        skipped: set[int] = set()
        fallback_reason: str | None = None
        fallback_done: set[int] = set()
        for entry in entries[1:]:
            if event_is(entry, "promotion_offset"):
                promotion_offset = int(entry["offset"])
            event = entry.get("event")
            if event in ("step_done", "step_skipped") and entry.get("phase", "main") == "main":
                done.add(int(entry["index"]))
                if event == "step_skipped":
                    skipped.add(int(entry["index"]))
            if event == "step_done" and entry.get("phase") == "fallback":
                fallback_done.add(int(entry["index"]))
            if event == "fallback_started":
                fallback_reason = str(entry.get("reason", ""))
            if event == "backup_written":
                backups.setdefault(str(entry["broker_key"]), str(entry["backup"]))
            if event == "rollback_started":
                rolling_back = True
            if event == "finished":
                finished = True
                outcome = str(entry.get("outcome"))
        return JournalProgress(
            plan,
            frozenset(done),
            finished,
            rolling_back,
            outcome,
            backups,
            promotion_offset,
            frozenset(skipped),
            fallback_reason,
            frozenset(fallback_done),
        )


def event_is(entry: dict[str, Any], name: str) -> bool:
    return bool(entry.get("event") == name)
