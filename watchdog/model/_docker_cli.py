"""The few `docker start|stop|restart|kill` command lines a docker host carries out itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import WatchdogError

__all__ = ["CONTAINER_NAME", "DockerCliCommand", "DockerCliError", "parse_docker_cli"]

# What the engine accepts as a container name (or a hex id, which this also matches).
CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*")

_ACTIONS = ("start", "stop", "restart", "kill")
# Per action: option -> the query parameter its value becomes.
_VALUE_OPTIONS: dict[str, dict[str, str]] = {
    "start": {},
    "stop": {"-t": "t", "--time": "t", "-s": "signal", "--signal": "signal"},
    "restart": {"-t": "t", "--time": "t", "-s": "signal", "--signal": "signal"},
    "kill": {"-s": "signal", "--signal": "signal"},
}


class DockerCliError(WatchdogError, ValueError):
    """A `docker ...` argv that the docker host backend does not carry out."""


@dataclass(frozen=True)
class DockerCliCommand:
    action: str  # start, stop, restart or kill
    containers: tuple[str, ...]
    query: tuple[tuple[str, str], ...]  # engine API query parameters, e.g. (("t", "30"),)


def parse_docker_cli(argv: Sequence[str]) -> DockerCliCommand | None:
    """None when argv does not run `docker`; the command when it is one of the supported forms;
    DockerCliError for any other `docker ...` argv (it would otherwise need a docker CLI)."""
    if not argv or argv[0] != "docker":
        return None
    if len(argv) < 2 or argv[1] not in _ACTIONS:
        raise DockerCliError(
            f"{' '.join(argv[:2])!r}: only `docker {'|'.join(_ACTIONS)} [options] CONTAINER` "
            "is carried out (through the engine API)"
        )
    action = argv[1]
    options = _VALUE_OPTIONS[action]
    query: dict[str, str] = {}
    containers: list[str] = []
    words = list(argv[2:])
    while words:
        word = words.pop(0)
        if containers or not word.startswith("-"):
            containers.append(word)
            continue
        name, has_value, value = word.partition("=")
        if not has_value and name not in options and name[:2] in options and len(name) > 2:
            name, value, has_value = name[:2], name[2:], "="  # -t30, as the CLI accepts
        if name not in options:
            raise DockerCliError(f"docker {action}: option {word!r} is not supported")
        if not has_value:
            if not words:
                raise DockerCliError(f"docker {action}: option {name} needs a value")
            value = words.pop(0)
        key = options[name]
        if key == "t" and not value.lstrip("-").isdigit():
            raise DockerCliError(f"docker {action}: {name} {value!r} is not whole seconds")
        query[key] = value
    if not containers:
        raise DockerCliError(f"docker {action}: no container named")
    for container in containers:
        if not CONTAINER_NAME.fullmatch(container):
            raise DockerCliError(f"docker {action}: {container!r} is not a container name")
    return DockerCliCommand(action, tuple(containers), tuple(query.items()))
