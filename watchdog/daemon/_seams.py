"""What the daemon needs from the rooms, as protocols: the real parts or a test's fakes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..act import FailoverResult, JournalProgress
from ..config import WatchdogConfig
from ..decide import Plan
from ..hosts import Host
from ..model import ClusterSnapshot

__all__ = [
    "ExecutorFactory",
    "FailoverEvents",
    "FailoverRunner",
    "ServiceNotifier",
    "SnapshotSource",
]


class SnapshotSource(Protocol):
    """Room 1: one snapshot of the cluster per call (the `Prober`)."""

    async def snapshot(self, known_masters: Mapping[str, str] | None = None) -> ClusterSnapshot: ...


class ServiceNotifier(Protocol):
    """The service manager's notify protocol (`SystemdNotifier`)."""

    def ready(self, status: str | None = None) -> bool: ...

    def status(self, text: str) -> bool: ...

    def watchdog(self) -> bool: ...

    def stopping(self, status: str | None = None) -> bool: ...

    def reloading(self, status: str | None = None) -> bool: ...


class FailoverRunner(Protocol):
    """Room 4: runs (or resumes) a plan to its end (the `Executor`)."""

    async def run(
        self, plan: Plan, failover_id: str, *, resume: JournalProgress | None = None
    ) -> FailoverResult: ...


# What a failover reports while it runs: (event name, fields).
FailoverEvents = Callable[[str, Mapping[str, Any]], None]


class ExecutorFactory(Protocol):
    """Builds the failover runner for a configuration (again on every reload); `emit` is the
    daemon's ear for the runner's events."""

    def __call__(
        self, config: WatchdogConfig, hosts: Mapping[str, Host], emit: FailoverEvents
    ) -> FailoverRunner: ...
