"""The watchdog's durable state: epochs, anti-flap blocks, the running failover; atomic JSON."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

from ..model import WatchdogError

__all__ = ["GroupRecord", "WatchdogState", "StateStore", "StateError"]


class StateError(WatchdogError):
    """The state file exists but cannot be read or written."""


@dataclass(frozen=True)
class GroupRecord:
    epoch: int = 0
    master_key: str | None = None
    master_addr: str | None = None
    promotion_offset: int | None = None  # new master's commitLogMaxOffset when promoted
    blocked_until: float | None = None  # Unix time; automatic failovers blocked until then
    block_reason: str = ""
    last_failover_id: str | None = None
    last_outcome: str | None = None
    last_failover_at: float | None = None
    # The deposed master, checked when it answers again: a log past promotion_offset is fenced.
    rejoin_check_key: str | None = None
    # No fence, no promotion: the last attempt could not fence the old master; the next one
    # waits until this Unix time, and this sentence says why it stopped.
    fence_retry_at: float | None = None
    fence_wait_reason: str = ""
    # The master's role was lowered by a failover (SYNC_MASTER promoted as ASYNC_MASTER): the
    # role it had, and the failover that lowered it; cleared once the master has it again.
    lowered_from: str | None = None
    lowered_by: str | None = None

    def is_blocked(self, now_wall: float) -> bool:
        return self.blocked_until is not None and now_wall < self.blocked_until


@dataclass(frozen=True)
class WatchdogState:
    groups: Mapping[str, GroupRecord] = field(default_factory=dict)
    running: Mapping[str, str] = field(default_factory=dict)  # broker_name -> failover id

    def group(self, name: str) -> GroupRecord:
        return self.groups.get(name, GroupRecord())

    def with_group(self, name: str, record: GroupRecord) -> WatchdogState:
        return replace(self, groups={**self.groups, name: record})

    def with_running(self, name: str, failover_id: str | None) -> WatchdogState:
        running = dict(self.running)
        if failover_id is None:
            running.pop(name, None)
        else:
            running[name] = failover_id
        return replace(self, running=running)

    def to_json(self) -> dict[str, Any]:
        return {
            "groups": {name: asdict(rec) for name, rec in sorted(self.groups.items())},
            "running": dict(sorted(self.running.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchdogState:
        groups = {str(k): GroupRecord(**v) for k, v in dict(data.get("groups", {})).items()}
        running = {str(k): str(v) for k, v in dict(data.get("running", {})).items()}
        return cls(groups=groups, running=running)


class StateStore:
    """`state.json` in the state dir, replaced atomically on every change."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"

    def load(self) -> WatchdogState:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return WatchdogState()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            return WatchdogState.from_json(json.loads(raw))
        except (ValueError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.path}: not a valid state file: {exc}") from None

    def peek(self) -> WatchdogState:
        """The state as far as it can be read, for a reader beside a running daemon (the drill):
        never raises. A file that is missing, unreadable or not JSON is the empty state; a
        record's field of the wrong type takes its default."""
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return WatchdogState()
        if not isinstance(doc, dict):
            return WatchdogState()
        groups, running = doc.get("groups"), doc.get("running")
        return WatchdogState(
            groups={
                str(name): _lenient_record(record)
                for name, record in (groups.items() if isinstance(groups, dict) else ())
                if isinstance(record, dict)
            },
            running={
                str(name): str(fid)
                for name, fid in (running.items() if isinstance(running, dict) else ())
            },
        )

    def save(self, state: WatchdogState) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(state.to_json(), fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write: {exc.strerror}") from None


def _kinds(hint: Any) -> tuple[type, ...]:
    """The JSON value types a field of type ``hint`` accepts (a float takes an int too)."""
    by_type: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,)}
    return tuple(k for t in (get_args(hint) or (hint,)) for k in by_type.get(t, ()))


_RECORD_KINDS = {name: _kinds(hint) for name, hint in get_type_hints(GroupRecord).items()}


def _lenient_record(doc: Mapping[str, Any]) -> GroupRecord:
    """A GroupRecord of the fields in ``doc`` that have their field's type; every other field
    keeps its default."""
    kept: dict[str, Any] = {}
    for name, kinds in _RECORD_KINDS.items():
        value: Any = doc.get(name)
        fits = isinstance(value, kinds) and not isinstance(value, bool)
        if fits:
            kept[name] = float(value) if float in kinds else value
    return GroupRecord(**kept)
