"""Parsing and printing durations written with their unit ("800ms", "3s", "1h")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["parse_duration", "format_seconds", "format_utc"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*$")
# About 31,700 years: long enough for any recovery block, short enough to stay a number a
# clock can be added to (a 309-digit duration is inf seconds).
_MAX_SECONDS = 1e12


def parse_duration(text: str) -> float:
    """Return seconds for a duration such as "800ms", "3s", "1.5m" or "1h".

    A bare number is refused on purpose: a duration must say its unit.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: write a number with a unit, e.g. '800ms', '3s', '5m', '1h'"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _MAX_SECONDS:
        raise ValueError(f"invalid duration {text!r}: more than {_MAX_SECONDS:.0e} seconds")
    return seconds


def format_seconds(seconds: float) -> str:
    """Render seconds the way reasons are written: "850 ms", "3.2 s", "4.0 min"."""
    if seconds < 0.9995:  # 0.9996 s would print as "1000 ms"
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120.0:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def format_utc(at: float) -> str:
    """A Unix time as operators read it in every message: `2027-01-15 08:00:00 UTC`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
