"""Reading a TOML file into a WatchdogConfig, with one error naming the file and the field."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._base import ConfigError
from ._hosts import DockerHost, LocalHost, SshHost
from ._watchdog import WatchdogConfig

__all__ = ["parse_config", "load_config"]


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic location as the TOML reader sees it: brokers[1].addr."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("LocalHost", "SshHost", "DockerHost", "local", "ssh", "docker"):
            continue  # the discriminated-union branch name means nothing to the reader
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _errors(exc: ValidationError, data: Any) -> Iterator[str]:
    errors = exc.errors()
    deeper = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    for err in errors:
        # pydantic also calls a list "too short" when its only item failed; say it once.
        if err["type"] == "too_short" and any(
            loc[: len(err["loc"])] == tuple(err["loc"]) for loc in deeper
        ):
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc)
        elif err["type"] == "too_short":
            least = (err.get("ctx") or {}).get("min_length", 1)
            msg = f"must list at least {least} item{'s' if least != 1 else ''}"
        yield f"{_field_path(loc, data)}: {msg}"


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """The known key closest to an unknown one, from the table it was written in."""
    branches: dict[str, Any] = {"local": LocalHost, "ssh": SshHost, "docker": DockerHost}
    model: Any = WatchdogConfig
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if item in branches:
            model = branches[str(item)]
            continue
        field = getattr(model, "model_fields", {}).get(str(item)) if model is not None else None
        if field is None:
            continue  # a [hosts.NAME] / [groups.NAME] key: the model stays that of its values
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        models = [a for a in args if hasattr(a, "model_fields")]
        if hasattr(annotation, "model_fields"):
            model = annotation
        elif models:
            model = models[-1]
    if model is None or not hasattr(model, "model_fields"):
        return ""
    names = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_config(data: dict[str, Any], source: str = "<config>") -> WatchdogConfig:
    try:
        return WatchdogConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(_errors(exc, data))
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | Path) -> WatchdogConfig:
    """Read and validate a config file; raise ConfigError naming the file and the field."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{p}: arrays or tables nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits: no config value is one.
        raise ConfigError(f"{p}: not a usable TOML value: {str(exc).split(';')[0]}") from None
    return parse_config(data, str(p))
