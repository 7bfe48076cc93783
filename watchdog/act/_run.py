"""What a failover's steps may touch, what one running failover carries, and what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import BrokerConfig, WatchdogConfig
from ..decide import Plan
from ..hosts import Host, LocalBackend
from ..model import WatchdogError
from ..remoting import ClientPool
from ._journal import Journal, JournalProgress
from ._progress import FenceProgress, Phase, StepStatus
from ._state import StateStore

__all__ = [
    "CanaryOutcome",
    "CanaryRunner",
    "Emit",
    "FailoverResult",
    "FailoverRun",
    "NotFenced",
    "StepContext",
    "StepFailed",
    "StepRecord",
]


class StepFailed(WatchdogError):
    """A step did not reach its goal; the message says why in one phrase."""


class NotFenced(StepFailed):
    """The old master could not be fenced: the promotion must not go on."""


class CanaryOutcome(Protocol):
    @property
    def is_ok(self) -> bool: ...

    @property
    def detail(self) -> str: ...


# (namesrv addrs, broker addr, broker name, topic, timeout seconds) -> outcome
CanaryRunner = Callable[[Sequence[str], str, str, str, float], Awaitable[CanaryOutcome]]
Emit = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class StepRecord:
    index: int
    phase: Phase
    kind: str
    broker_key: str
    status: StepStatus
    detail: str
    duration_seconds: float


@dataclass(frozen=True)
class FailoverResult:
    failover_id: str
    broker_name: str
    kind: str
    # succeeded, failed, rolled_back; refused (preflight: nothing was changed); awaiting_fence
    # (the old master could not be fenced: the candidate was not touched, the fence is retried)
    outcome: str
    detail: str
    duration_seconds: float
    steps: tuple[StepRecord, ...]

    @property
    def is_success(self) -> bool:
        return self.outcome == "succeeded"


@dataclass(frozen=True)
class StepContext:
    """The seams every step reaches the cluster, the journal and the state through."""

    config: WatchdogConfig
    hosts: Mapping[str, Host]
    pool: ClientPool
    store: StateStore
    journal: Journal
    canary: CanaryRunner | None
    emit: Emit
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    # Fence commands run where the watchdog runs, never on the host they fence.
    fence_runner: Host = field(default_factory=lambda: LocalBackend("watchdog"))

    def broker(self, key: str) -> BrokerConfig:
        broker = self.config.broker_by_key(key)
        if broker is None:
            raise StepFailed(f"{key} is not in the configuration")
        return broker


@dataclass
class FailoverRun:
    """One running failover: what its steps learn and leave for the steps after them and for
    its events. It lives as long as the run; a resumed run rebuilds it from the journal."""

    failover_id: str
    plan: Plan
    started: float  # monotonic
    backups: dict[str, str] = field(default_factory=dict)  # broker key -> its first backup
    # The candidate's log end when it stopped being a slave (noted once, kept by the journal).
    promotion_offset: int | None = None
    fence: FenceProgress = FenceProgress()
    step_log: list[dict[str, Any]] = field(default_factory=list)  # each step, for the events
    # max_loss_bytes grown by the time the fence took (None: the plan set no bound).
    max_loss_bytes: int | None = None
    moved_aside: dict[str, Any] | None = None  # the deposed master's store, once moved aside
    # Hosts a best-effort step could not reach for its whole retry budget: the run's later
    # best-effort steps there are tried once (not journaled: a resumed run retries in full).
    unreachable_hosts: set[str] = field(default_factory=set)

    @classmethod
    def begin(
        cls, failover_id: str, plan: Plan, started: float, resume: JournalProgress | None
    ) -> FailoverRun:
        """A new run, or one picked up from its journal after a crash."""
        if resume is None:
            return cls(failover_id, plan, started, max_loss_bytes=plan.max_loss_bytes)
        return cls(
            failover_id,
            plan,
            started,
            backups=dict(resume.backups),
            promotion_offset=resume.promotion_offset,
            fence=FenceProgress.resumed(plan, resume),
            max_loss_bytes=plan.max_loss_bytes,
        )
