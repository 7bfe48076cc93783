"""The [hosts.NAME] tables: local, SSH and docker hosts, each with its optional fence command."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..model import CONTAINER_NAME
from ._base import Seconds, Strict

__all__ = ["FENCE_PLACEHOLDERS", "LocalHost", "SshHost", "DockerHost", "HostConfig"]


# What a fence command may name; anything else in braces is a config error, so a typo such as
# `{adr}` is caught at load and not passed to a power controller verbatim.
FENCE_PLACEHOLDERS = ("addr", "host", "broker_name", "broker_key")


class _FencedHost(Strict):
    """What every host kind shares: an optional STONITH-style fence command for its brokers."""

    fence_command: tuple[str, ...] = Field(
        (),
        description="argv run on the watchdog's machine (never a shell, never on this host) that "
        "makes this host's broker unable to take writes, e.g. power it off out of band; "
        "placeholders {addr} {host} {broker_name} {broker_key}",
    )
    fence_timeout_seconds: Seconds = Field(30.0, alias="fence_timeout")

    @field_validator("fence_command")
    @classmethod
    def _known_placeholders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arg in value:
            for name in re.findall(r"\{([^{}]*)\}", arg):
                if name not in FENCE_PLACEHOLDERS:
                    known = ", ".join("{" + n + "}" for n in FENCE_PLACEHOLDERS)
                    raise ValueError(f"unknown placeholder {{{name}}} in {arg!r}; known: {known}")
        return value


class LocalHost(_FencedHost):
    kind: Literal["local"] = "local"


class SshHost(_FencedHost):
    kind: Literal["ssh"]
    address: str
    port: int = Field(22, gt=0, lt=65536)
    user: str
    known_hosts: str | None = Field(
        None, description="known_hosts file; host keys are always checked"
    )
    client_keys: tuple[str, ...] = ()
    connect_timeout_seconds: Seconds = Field(5.0, alias="connect_timeout")


class DockerHost(_FencedHost):
    """A container on a Docker engine: commands run by exec, files go through its archive API,
    and `docker start|stop|restart|kill` of this container go to the engine API."""

    kind: Literal["docker"]
    container: str = Field(description="the container's name or id")
    socket: str = Field("/var/run/docker.sock", description="the engine's unix socket")

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not CONTAINER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a container name")
        return value.removeprefix("/")

    @field_validator("socket")
    @classmethod
    def _absolute_socket(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path of a unix socket")
        return value


HostConfig = Annotated[LocalHost | SshHost | DockerHost, Field(discriminator="kind")]
