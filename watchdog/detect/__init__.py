"""Room 2 (pure): snapshot history in, each group's verdict (SDOWN/ODOWN, votes, sentence) out."""

from __future__ import annotations

from ._detect import DEFAULT_MASTER_ROLE, ClusterVerdict, DetectorState, GroupVerdict, detect

__all__ = [
    "DEFAULT_MASTER_ROLE",
    "DetectorState",
    "GroupVerdict",
    "ClusterVerdict",
    "detect",
]
