"""The command/file seam: run an argv, read or write files on a broker's host (local/SSH/docker)."""

from __future__ import annotations

from ..config import DockerHost, HostConfig, LocalHost
from ._base import CommandResult, Host, HostError
from ._docker import API_VERSION, DockerBackend
from ._local import LocalBackend, kill_process_group
from ._ssh import SshBackend

__all__ = [
    "API_VERSION",
    "CommandResult",
    "DockerBackend",
    "Host",
    "HostError",
    "LocalBackend",
    "SshBackend",
    "kill_process_group",
    "make_host",
]


def make_host(name: str, config: HostConfig) -> Host:
    """The backend for one `[hosts.NAME]` table."""
    if isinstance(config, LocalHost):
        return LocalBackend(name)
    if isinstance(config, DockerHost):
        return DockerBackend(name, config)
    return SshBackend(name, config)
