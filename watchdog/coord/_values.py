"""The values coordination passes around, and their JSON form in etcd (no I/O here)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CoordView",
    "GroupView",
    "InstanceView",
    "LeaderRecord",
    "REASON_MAX_CHARS",
    "decode_instance",
    "decode_leader",
    "encode_instance",
    "encode_leader",
]

# A published reason is for humans (status, logs): bounded, so one instance cannot bloat etcd.
REASON_MAX_CHARS = 300


@dataclass(frozen=True)
class GroupView:
    """One instance's own judgement of one broker group's master, as it publishes it.

    `down`: its detector holds the master subjectively down from its own probe (SDOWN).
    `alive`: its own probe of the master answered in its last cycle. Neither: undecided (the
    master stopped answering, not yet for down_after). `master` is the address it judged.
    """

    master: str | None
    down: bool
    alive: bool
    reason: str = ""
    at: float = 0.0  # wall-clock seconds of the publication that carried it

    def same_judgement(self, other: GroupView | None) -> bool:
        """Equal but for the reason's wording and the time: what triggers a new publication."""
        return other is not None and (self.master, self.down, self.alive) == (
            other.master,
            other.down,
            other.alive,
        )


@dataclass(frozen=True)
class InstanceView:
    """What one instance published under `<prefix>/instances/<name>` (gone with its lease)."""

    name: str
    started_at: float  # wall clock, when that instance's coordinator started
    published_at: float  # wall clock of this publication
    groups: Mapping[str, GroupView] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaderRecord:
    """The value of `<prefix>/leader`: who leads, since when."""

    instance: str
    started_at: float  # wall clock, when the leader's coordinator started
    since: float  # wall clock, when it took the leader key


@dataclass(frozen=True)
class CoordView:
    """One cycle's coordination, as the daemon uses it: a value, made once per cycle.

    `is_leader` is True only when this cycle reached etcd, this instance holds the leader key,
    and its lease is known to live (renewed less than its TTL ago). Every etcd error, a lost
    quorum included, makes it False: nothing acts then (the failsafe).
    """

    instance: str
    is_reachable: bool
    is_leader: bool
    leader: LeaderRecord | None  # who holds the leader key; None: nobody, or etcd unreachable
    instances: tuple[InstanceView, ...]  # every live instance's publication, this one included
    lease_left_seconds: float  # how long this instance's lease is known to live (0: none)
    fencing_token: int | None  # the leader key's create revision while this instance leads
    reason: str  # the one sentence to log
    revision: int = 0  # the etcd revision this cycle read at (0: unreachable)

    def instance_view(self, name: str) -> InstanceView | None:
        return next((v for v in self.instances if v.name == name), None)

    @property
    def leader_name(self) -> str | None:
        return None if self.leader is None else self.leader.instance


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def encode_instance(view: InstanceView) -> bytes:
    return json.dumps(
        {
            "instance": view.name,
            "started_at": view.started_at,
            "at": view.published_at,
            "groups": {
                name: {
                    "master": g.master,
                    "down": g.down,
                    "alive": g.alive,
                    "reason": g.reason[:REASON_MAX_CHARS],
                    "at": g.at,
                }
                for name, g in sorted(view.groups.items())
            },
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_instance(raw: bytes) -> InstanceView:
    """An instance's publication; ValueError naming what is wrong (unknown keys are ignored,
    so a newer instance's additions do not blind an older one)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    groups_data = data.get("groups", {})
    if not isinstance(groups_data, dict):
        raise ValueError("groups is not an object")
    groups: dict[str, GroupView] = {}
    for name, g in groups_data.items():
        if not isinstance(g, dict):
            raise ValueError(f"group {name!r} is not an object")
        master = g.get("master")
        groups[name] = GroupView(
            master=None if master is None else _text(master),
            down=_flag(g.get("down")),
            alive=_flag(g.get("alive")),
            reason=_text(g.get("reason", ""))[:REASON_MAX_CHARS],
            at=_number(g.get("at")),
        )
    return InstanceView(
        name=_text(data.get("instance")),
        started_at=_number(data.get("started_at")),
        published_at=_number(data.get("at")),
        groups=groups,
    )


def encode_leader(record: LeaderRecord) -> bytes:
    return json.dumps(
        {"instance": record.instance, "started_at": record.started_at, "since": record.since},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_leader(raw: bytes) -> LeaderRecord:
    """The leader key's value; ValueError when it is not ours to read."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return LeaderRecord(
        instance=_text(data.get("instance")),
        started_at=_number(data.get("started_at")),
        since=_number(data.get("since")),
    )
