"""What every config section shares: the error, durations with a unit, host:port, strict tables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..model import WatchdogError, parse_duration

__all__ = ["ConfigError", "Seconds", "PositiveSeconds", "Strict", "Addr"]


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
