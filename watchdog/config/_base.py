"""What every config section shares: the error, durations with a unit, host:port, strict tables,
files that hold a secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..model import WatchdogError, parse_duration

__all__ = ["ConfigError", "Seconds", "PositiveSeconds", "Strict", "Addr", "read_private_file"]


class ConfigError(WatchdogError):
    """A configuration file that cannot be used; the message names the file and the field."""


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a duration is a string with its unit, e.g. '3s'")
    raise ValueError(f"a duration needs its unit: write '{value}s' or '{value}ms', not {value}")


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class Strict(BaseModel):
    # Unknown keys are errors: a typo such as `down_afer` must not silently keep a default.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_addr(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


Addr = Annotated[str, BeforeValidator(lambda v: _check_addr(v) if isinstance(v, str) else v)]


def read_private_file(
    path: str | Path, field: str, what: str, *, max_bytes: int, forbidden_bits: int = 0o044
) -> bytes:
    """The bytes of a file that holds `what` (a secret); ConfigError naming `field` when it is
    missing, not a regular file, has any of `forbidden_bits` in its mode (by default: readable
    by group or others), or is larger than `max_bytes`."""
    p = Path(path)
    try:
        info = os.stat(p)
    except OSError as exc:
        raise ConfigError(f"{field} {p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{field} {p}: not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & forbidden_bits:
        raise ConfigError(
            f"{field} {p}: mode {mode:04o} lets group or others at {what}; "
            "chmod 600 it (0600 or 0400)"
        )
    if info.st_size > max_bytes:
        raise ConfigError(f"{field} {p}: larger than {max_bytes} bytes")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{field} {p}: cannot read: {exc.strerror or exc}") from None
