"""Values and pure rules every room shares: snapshots, states, roles, durations, properties."""

from __future__ import annotations

from ._credentials import AclCredentials, Secret
from ._docker_cli import CONTAINER_NAME, DockerCliCommand, DockerCliError, parse_docker_cli
from ._durations import format_seconds, format_utc, parse_duration
from ._errors import WatchdogError
from ._properties import PropertiesFile, unified_diff
from ._roles import DEFAULT_MASTER_ROLE, MASTER_ROLES, is_master_role
from ._snapshot import (
    BrokerObservation,
    ClusterSnapshot,
    NamesrvObservation,
    Registration,
    SecondaryObservation,
)
from ._states import GroupState

__all__ = [
    "WatchdogError",
    "DEFAULT_MASTER_ROLE",
    "MASTER_ROLES",
    "is_master_role",
    "Registration",
    "NamesrvObservation",
    "BrokerObservation",
    "SecondaryObservation",
    "ClusterSnapshot",
    "GroupState",
    "parse_duration",
    "format_seconds",
    "format_utc",
    "PropertiesFile",
    "unified_diff",
    "CONTAINER_NAME",
    "DockerCliCommand",
    "DockerCliError",
    "parse_docker_cli",
    "Secret",
    "AclCredentials",
]
