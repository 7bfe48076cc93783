"""Run a failover plan: idempotent steps, journaled, retried, rolled back on failure."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ..config import BrokerConfig, WatchdogConfig
from ..decide import FenceEvidence, Plan, Step, StepKind, fenced_by
from ..hosts import Host, HostError, LocalBackend
from ..model import PropertiesFile, WatchdogError
from ..observe import Event, EventName, HookRunner, WebhookNotifier
from ..remoting import (
    ClientPool,
    RemotingError,
    get_broker_runtime_info,
    get_cluster_info,
    put_kv_config,
)
from ._commitlog import CommitLogError, read_commitlog_tail
from ._journal import Journal, JournalProgress
from ._state import StateStore

__all__ = ["Executor", "FailoverResult", "StepFailed", "CanaryRunner", "epoch_file_text"]


# A master cut off from its slave while it serves clients writes faster than the last
# minute's peak (no replication to feed): the bound grows at the peak rate plus this margin.
# Measured in tests/netns: the loss came to 97-98 % of the bound at the bare peak rate.
_FENCE_RATE_MARGIN = 1.25


class StepFailed(WatchdogError):
    """A step did not reach its goal; the message says why in one phrase."""


class NotFenced(StepFailed):
    """The old master could not be fenced: the promotion must not go on."""


@dataclass
class _FenceProgress:
    """What the fence steps of one running promotion achieved so far."""

    is_rewritten: bool = False
    is_stopped: bool = False
    is_command_fenced: bool = False
    answers_again: bool = False  # the old master answered before its stop: call it off
    path: str | None = None


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
    phase: str  # "main" or "rollback"
    kind: str
    broker_key: str
    status: str  # done, skipped, failed
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


def epoch_file_text(
    *, epoch: int, broker_name: str, master_addr: str, this_addr: str, recorded_at: float
) -> str:
    """The `<properties>.epoch` record the broker-host gate (deploy/broker-gate) reads."""
    may_be_master = "true" if this_addr == master_addr else "false"
    return (
        "# written by rmq-watchdog: which broker of this group may run as master\n"
        f"epoch={epoch}\n"
        f"broker_name={broker_name}\n"
        f"master_addr={master_addr}\n"
        f"this_addr={this_addr}\n"
        f"may_be_master={may_be_master}\n"
        f"recorded_at={int(recorded_at)}\n"
    )


class Executor:
    """The only code that changes a cluster. One instance per process; plans run one at a time
    per group (the caller guarantees it through the state's `running` map and the lock)."""

    def __init__(
        self,
        config: WatchdogConfig,
        hosts: Mapping[str, Host],
        pool: ClientPool,
        store: StateStore,
        journal: Journal,
        *,
        canary: CanaryRunner | None = None,
        emit: Emit | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        crash_after_step: int | None = None,
        notifier: WebhookNotifier | None = None,
        hooks: HookRunner | None = None,
    ) -> None:
        self.config = config
        self.hosts = hosts
        self.pool = pool
        self.store = store
        self.journal = journal
        self.canary = canary
        self.emit = emit or (lambda event, fields: None)
        self.clock = clock
        self.wall_clock = wall_clock
        # Test hook for crash-safety tests: exit hard right after this step is journaled.
        self.crash_after_step = crash_after_step
        self._promotion_offsets: dict[str, int | None] = {}
        self.notifier = notifier
        self.hooks = hooks
        self._step_log: dict[str, list[dict[str, Any]]] = {}
        self._fences: dict[str, _FenceProgress] = {}
        self._moved_aside: dict[str, dict[str, Any]] = {}
        self._max_loss: dict[str, int] = {}  # max_loss_bytes grown by the time the fence took
        self._started_at: dict[str, float] = {}
        # Fence commands run where the watchdog runs, never on the host they fence.
        self._fence_runner = LocalBackend("watchdog")

    def _event(
        self, name: EventName, plan: Plan, failover_id: str, summary: str, **details: Any
    ) -> Event:
        return Event(
            name=name,
            broker_name=plan.broker_name,
            failover_id=failover_id,
            at=self.wall_clock(),
            summary=summary,
            steps=tuple(self._step_log.get(failover_id, ())),
            details={
                "kind": plan.kind,
                "epoch": plan.epoch,
                "old_master": plan.old_master_key,
                "new_master": plan.new_master_key,
                "new_master_addr": plan.new_master_addr,
                "expected_loss_bytes": plan.expected_loss_bytes,
                "max_loss_bytes": self._max_loss.get(failover_id, plan.max_loss_bytes),
                **details,
            },
        )

    def _notify(self, event: Event) -> None:
        if self.notifier is not None:
            # Fire and forget: a slow or dead receiver must never delay the failover.
            self.notifier.dispatch(event)

    # -- running a plan ---------------------------------------------------------------------

    async def run(
        self, plan: Plan, failover_id: str, *, resume: JournalProgress | None = None
    ) -> FailoverResult:
        """Run (or resume) a plan to its end, then the post_failover/on_failure hook."""
        result = await self._run_plan(plan, failover_id, resume)
        await self.run_after_hook(result, plan)
        return result

    async def _run_plan(
        self, plan: Plan, failover_id: str, resume: JournalProgress | None
    ) -> FailoverResult:
        started = self.clock()
        name = plan.broker_name
        records: list[StepRecord] = []
        done = set(resume.done_steps) if resume else set()
        backups = dict(resume.backups) if resume else {}
        self._promotion_offsets[failover_id] = resume.promotion_offset if resume else None
        self._started_at[failover_id] = started
        fence = self._fences[failover_id] = _FenceProgress()
        if resume is not None:
            for index in resume.done_steps - resume.skipped_steps:
                self._note_fence_step(plan, plan.steps[index], fence, command_ran=True)
        if resume is None:
            problem = await self._preflight(plan)
            if problem is not None:
                result = FailoverResult(
                    failover_id, name, plan.kind, "refused", problem, self.clock() - started, ()
                )
                self.emit("failover_finished", {"failover_id": failover_id, "result": result})
                return result
            if self.hooks is not None and plan.kind == "promote":
                hook = await self.hooks.run(
                    "pre_failover", self._event("failover_started", plan, failover_id, plan.reason)
                )
                if hook.is_veto:
                    result = FailoverResult(
                        failover_id,
                        name,
                        plan.kind,
                        "vetoed",
                        hook.reason,
                        self.clock() - started,
                        (),
                    )
                    self._notify(
                        self._event(
                            "failover_blocked",
                            plan,
                            failover_id,
                            f"{name} failover vetoed: {hook.reason}",
                        )
                    )
                    self.emit("failover_finished", {"failover_id": failover_id, "result": result})
                    return result
            self.journal.append(failover_id, "planned", plan=plan.to_json())
            self.store.save(self.store.load().with_running(name, failover_id))
            self.emit("failover_started", {"failover_id": failover_id, "plan": plan})
            self._notify(self._event("failover_started", plan, failover_id, plan.reason))
        else:
            self.journal.append(failover_id, "resumed", done_steps=sorted(done))
            self.emit("failover_resumed", {"failover_id": failover_id, "done_steps": sorted(done)})
            if resume.is_rolling_back:
                return await self._roll_back(
                    plan, failover_id, records, backups, started, "resumed an interrupted rollback"
                )

        candidate_touched = any(
            plan.steps[i].kind is StepKind.STOP and plan.steps[i].broker_key == plan.new_master_key
            for i in done
        )
        for index, step in enumerate(plan.steps):
            if index in done:
                continue
            record = await self._run_logged(step, index, "main", plan, failover_id, backups)
            records.append(record)
            if record.status == "done":
                ran = "not needed" not in record.detail
                self._note_fence_step(plan, step, fence, command_ran=ran)
            if record.status == "failed" and step.kind is StepKind.CONFIRM_FENCED:
                return await self._await_fence(plan, failover_id, records, backups, started, record)
            if record.status == "failed":
                if (
                    plan.kind == "promote"
                    and candidate_touched
                    and step.kind is not StepKind.CANARY
                ):
                    return await self._roll_back(
                        plan,
                        failover_id,
                        records,
                        backups,
                        started,
                        f"step {index + 1} ({step.kind}) failed: {record.detail}",
                    )
                return self._finish(
                    plan,
                    failover_id,
                    records,
                    started,
                    "failed",
                    f"step {index + 1} ({step.kind}) failed: {record.detail}",
                )
            if step.kind is StepKind.STOP and step.broker_key == plan.new_master_key:
                candidate_touched = True
            if self.crash_after_step is not None and index + 1 == self.crash_after_step:
                os._exit(70)
        return self._finish(plan, failover_id, records, started, "succeeded", plan.reason)

    def _note_fence_step(
        self, plan: Plan, step: Step, fence: _FenceProgress, *, command_ran: bool
    ) -> None:
        if plan.kind != "promote" or step.broker_key != plan.old_master_key:
            return
        if step.kind is StepKind.REWRITE:
            fence.is_rewritten = True
        elif step.kind is StepKind.STOP:
            fence.is_stopped = True
        elif step.kind is StepKind.FENCE_COMMAND and command_ran:
            fence.is_command_fenced = True

    async def _await_fence(
        self,
        plan: Plan,
        failover_id: str,
        records: list[StepRecord],
        backups: dict[str, str],
        started: float,
        record: StepRecord,
    ) -> FailoverResult:
        """No fence, no promotion: undo the old master's rewrite (it may come back to serve,
        and as a slave with the candidate's id it would leave the group without a master),
        touch nothing else, and let the daemon retry the fence later."""
        old_key = plan.old_master_key
        if old_key is not None and old_key in backups:
            restore = next(
                (s for s in plan.steps if s.kind is StepKind.REWRITE and s.broker_key == old_key),
                None,
            )
            if restore is not None:
                undo = replace(
                    restore,
                    purpose=f"not fenced: restore {old_key}'s properties (nothing was promoted)",
                )
                records.append(
                    await self._run_logged(
                        undo,
                        len(plan.steps),
                        "rollback",
                        plan,
                        failover_id,
                        backups,
                        restore_backup=True,
                    )
                )
        return self._finish(
            plan,
            failover_id,
            records,
            started,
            "awaiting_fence",
            f"not promoting until {old_key} is fenced: {record.detail}",
        )

    async def _preflight(self, plan: Plan) -> str | None:
        """Why the plan cannot run, found before anything changes: each properties file a
        required step rewrites is written back unchanged, the same way the step will write it
        (a read-only mount or an immutable file fails here instead of halfway through)."""
        seen: set[tuple[str, str]] = set()
        for step in plan.steps:
            if step.kind is not StepKind.REWRITE or step.is_best_effort:
                continue
            if (step.host, step.path) in seen:
                continue
            seen.add((step.host, step.path))
            host = self.hosts[step.host]
            try:
                await host.write_file(step.path, await host.read_file(step.path))
            except HostError as exc:
                return f"refused before any step: {step.broker_key}'s properties: {exc}"
        return None

    async def _roll_back(
        self,
        plan: Plan,
        failover_id: str,
        records: list[StepRecord],
        backups: dict[str, str],
        started: float,
        why: str,
    ) -> FailoverResult:
        self.journal.append(failover_id, "rollback_started", reason=why)
        self.emit("rollback_started", {"failover_id": failover_id, "reason": why})
        rollback_ok = True
        for index, step in enumerate(plan.rollback):
            restore = step.kind is StepKind.REWRITE and step.broker_key in backups
            record = await self._run_logged(
                step, index, "rollback", plan, failover_id, backups, restore_backup=restore
            )
            records.append(record)
            rollback_ok = rollback_ok and record.status != "failed"
        detail = f"{why}; rolled back" + ("" if rollback_ok else " (rollback incomplete)")
        return self._finish(
            plan, failover_id, records, started, "rolled_back" if rollback_ok else "failed", detail
        )

    def _finish(
        self,
        plan: Plan,
        failover_id: str,
        records: list[StepRecord],
        started: float,
        outcome: str,
        detail: str,
    ) -> FailoverResult:
        duration = self.clock() - started
        now = self.wall_clock()
        state = self.store.load()
        record = state.group(plan.broker_name)
        if plan.kind == "promote" and outcome == "awaiting_fence":
            # Nothing changed on the candidate: no anti-flap block, a retry after fence_retry.
            record = replace(
                record,
                fence_retry_at=now + self.config.failover.fence_retry_seconds,
                fence_wait_reason=detail.partition(" is fenced: ")[2] or detail,
                last_failover_id=failover_id,
                last_outcome=outcome,
                last_failover_at=now,
            )
        elif plan.kind == "promote":
            record = replace(
                record,
                fence_retry_at=None,
                fence_wait_reason="",
                blocked_until=now + self.config.failover.recovery_block_seconds,
                block_reason=(
                    f"failover {failover_id} {outcome}; `rmq-watchdog ack` lifts the block"
                ),
                last_failover_id=failover_id,
                last_outcome=outcome,
                last_failover_at=now,
            )
        self.store.save(
            state.with_group(plan.broker_name, record).with_running(plan.broker_name, None)
        )
        self.journal.append(
            failover_id, "finished", outcome=outcome, detail=detail, duration_seconds=duration
        )
        result = FailoverResult(
            failover_id, plan.broker_name, plan.kind, outcome, detail, duration, tuple(records)
        )
        self.emit("failover_finished", {"failover_id": failover_id, "result": result})
        is_ok = outcome == "succeeded"
        if plan.kind == "fence":
            name: EventName = "fenced"
        elif outcome == "awaiting_fence":
            name = "awaiting_fence"
        else:
            name = "failover_succeeded" if is_ok else "failover_failed"
        self._notify(
            self._event(
                name,
                plan,
                failover_id,
                f"{plan.broker_name}: {detail}",
                outcome=outcome,
                duration_seconds=round(duration, 3),
                moved_aside=self._moved_aside.pop(failover_id, None),
            )
        )
        self._step_log.pop(failover_id, None)
        self._fences.pop(failover_id, None)
        self._started_at.pop(failover_id, None)
        self._max_loss.pop(failover_id, None)
        return result

    async def run_after_hook(self, result: FailoverResult, plan: Plan) -> None:
        """post_failover after a success, on_failure otherwise; bounded by the hook timeout."""
        if (
            self.hooks is None
            or plan.kind != "promote"
            or result.outcome
            in (
                "vetoed",
                "refused",
                "awaiting_fence",
            )
        ):
            return
        hook_name: Any = "post_failover" if result.is_success else "on_failure"
        event = self._event(
            "failover_succeeded" if result.is_success else "failover_failed",
            plan,
            result.failover_id,
            result.detail,
            outcome=result.outcome,
        )
        await self.hooks.run(hook_name, event)

    async def _run_logged(
        self,
        step: Step,
        index: int,
        phase: str,
        plan: Plan,
        failover_id: str,
        backups: dict[str, str],
        *,
        restore_backup: bool = False,
    ) -> StepRecord:
        self.journal.append(
            failover_id,
            "step_started",
            index=index,
            phase=phase,
            kind=str(step.kind),
            broker_key=step.broker_key,
        )
        self.emit(
            "step_started",
            {"failover_id": failover_id, "index": index, "phase": phase, "step": step},
        )
        began = self.clock()
        status = "done"
        try:
            detail = await self._with_retries(
                step, lambda: self._do(step, plan, failover_id, backups, restore_backup)
            )
        except (StepFailed, HostError, RemotingError) as exc:
            detail = str(exc)
            status = "skipped" if step.is_best_effort else "failed"
        duration = self.clock() - began
        event = {"done": "step_done", "skipped": "step_skipped", "failed": "step_failed"}[status]
        self.journal.append(
            failover_id,
            event,
            index=index,
            phase=phase,
            kind=str(step.kind),
            broker_key=step.broker_key,
            detail=detail,
            duration_seconds=duration,
        )
        record = StepRecord(index, phase, str(step.kind), step.broker_key, status, detail, duration)
        step_info = {
            "index": index,
            "phase": phase,
            "kind": str(step.kind),
            "broker_key": step.broker_key,
            "purpose": step.purpose,
            "status": status,
            "detail": detail,
            "duration_seconds": round(duration, 3),
        }
        self._step_log.setdefault(failover_id, []).append(step_info)
        self._notify(
            self._event(
                "failover_step",
                plan,
                failover_id,
                f"step {index + 1} {status}: {step.purpose}",
                step=step_info,
            )
        )
        self.emit(event, {"failover_id": failover_id, "record": record, "step": step})
        return record

    async def _with_retries(self, step: Step, attempt: Callable[[], Awaitable[str]]) -> str:
        if step.kind in (
            StepKind.WAIT_MASTER,
            StepKind.CANARY,
            StepKind.CONFIRM_FENCED,
            StepKind.FENCE_COMMAND,
        ):
            # these wait within their own deadline; a fence command is not repeated blindly
            return await attempt()
        budget = self.config.failover.step_timeout_seconds
        if step.is_best_effort:
            budget = min(budget, 15.0)  # a dead host must not hold the promotion for long
        result = ""
        async for attempt_ctx in AsyncRetrying(
            stop=stop_after_delay(budget),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception_type((StepFailed, HostError, RemotingError)),
            reraise=True,
        ):
            with attempt_ctx:
                result = await attempt()
        return result

    # -- the steps --------------------------------------------------------------------------

    def _broker(self, key: str) -> BrokerConfig:
        broker = self.config.broker_by_key(key)
        if broker is None:
            raise StepFailed(f"{key} is not in the configuration")
        return broker

    async def _do(
        self,
        step: Step,
        plan: Plan,
        failover_id: str,
        backups: dict[str, str],
        restore_backup: bool,
    ) -> str:
        if step.kind is StepKind.FENCE_COMMAND:
            return await self._fence_command(step, plan, failover_id)
        if step.kind is StepKind.CONFIRM_FENCED:
            return await self._confirm_fenced(step, plan, failover_id)
        host = self.hosts[step.host]
        if step.kind is StepKind.STOP:
            if plan.kind == "promote" and step.broker_key == plan.new_master_key:
                await self._note_promotion_offset(step, failover_id)
            is_fence = plan.kind == "promote" and step.broker_key == plan.old_master_key
            if is_fence and plan.requires_master_down:
                await self._refuse_a_live_master(step, failover_id)
            return await self._stop(step, host, strict=is_fence)
        if step.kind is StepKind.START:
            return await self._start(step, host)
        if step.kind is StepKind.REWRITE:
            return await self._rewrite(step, host, failover_id, backups, restore_backup)
        if step.kind is StepKind.MOVE_STORE_ASIDE:
            return await self._move_store_aside(step, plan, host, failover_id)
        if step.kind is StepKind.WAIT_MASTER:
            return await self._wait_master(plan, self._broker(step.broker_key))
        if step.kind is StepKind.CANARY:
            return await self._canary(plan, self._broker(step.broker_key), step.path)
        if step.kind is StepKind.RECORD_EPOCH:
            return await self._record_epoch(plan, failover_id)
        raise StepFailed(f"unknown step kind {step.kind}")

    async def _answers(self, addr: str, attempts: int = 1) -> bool:
        timeout = self.config.probe.timeout_seconds
        for i in range(attempts):
            try:
                await get_broker_runtime_info(self.pool.get(addr), timeout_seconds=timeout)
                return True
            except RemotingError:
                if i + 1 < attempts:
                    await asyncio.sleep(0.5)
        return False

    async def _note_promotion_offset(self, step: Step, failover_id: str) -> None:
        """The candidate's log end just before it stops being a slave is the promotion point:
        a deposed master whose log reaches past it cannot rejoin on that log."""
        if self._promotion_offsets.get(failover_id) is not None:
            return
        broker = self._broker(step.broker_key)
        try:
            info = await get_broker_runtime_info(
                self.pool.get(broker.addr), timeout_seconds=self.config.probe.timeout_seconds
            )
            offset = int(info["commitLogMaxOffset"])
        except (RemotingError, KeyError, ValueError):
            return  # already stopped (a resumed run): record_epoch falls back to the plan's
        self._promotion_offsets[failover_id] = offset
        self.journal.append(failover_id, "promotion_offset", offset=offset)

    async def _stop(self, step: Step, host: Host, *, strict: bool = False) -> str:
        """Stop a broker; done when it no longer answers. `strict` (a fence): the stop
        command must also have succeeded, since not answering *us* proves nothing in a
        partition."""
        broker = self._broker(step.broker_key)
        result = await host.run(
            step.argv, timeout_seconds=self.config.failover.step_timeout_seconds
        )
        if result.exit_code == 255 and not result.stdout and "connect" in result.stderr:
            raise StepFailed(f"host {host.name} unreachable: {result.stderr.strip()}")
        if await self._answers(broker.addr):
            raise StepFailed(f"{broker.addr} still answers after stop ({result.summary()})")
        if strict and not result.is_ok:
            raise StepFailed(f"stop command on host {host.name} {result.summary()}")
        if not result.is_ok:
            return f"stop command {result.summary()}, but {broker.addr} no longer answers"
        return f"stopped; {broker.addr} no longer answers"

    async def _refuse_a_live_master(self, step: Step, failover_id: str) -> None:
        """A promotion decided because the master was unreachable is called off when it answers
        again before it is stopped (a partition healed while the fence was tried): stopping a
        healthy master would turn a blip into a failover, and lose what the slave lacks."""
        broker = self._broker(step.broker_key)
        if await self._answers(broker.addr, attempts=2):
            fence = self._fences.get(failover_id)
            if fence is not None:
                fence.answers_again = True
            raise StepFailed(f"{broker.addr} answers again: not stopping a live master")

    async def _fence_command(self, step: Step, plan: Plan, failover_id: str) -> str:
        fence = self._fences.get(failover_id) or _FenceProgress()
        if fence.is_rewritten and fence.is_stopped:
            return "not needed: the host fence succeeded"
        if fence.answers_again:
            raise StepFailed("not run: the old master answers again")
        broker = self._broker(step.broker_key)
        host = self.config.hosts.get(broker.host)
        timeout = host.fence_timeout_seconds if host is not None else 30.0
        result = await self._fence_runner.run(step.argv, timeout_seconds=timeout)
        self.journal.append(
            failover_id,
            "fence_command",
            argv=list(step.argv),
            exit_code=result.exit_code,
            stdout=result.stdout[-4000:],
            stderr=result.stderr[-4000:],
        )
        if not result.is_ok:
            raise StepFailed(f"fence command {result.summary()}")
        return f"fence command succeeded ({result.summary()})"

    async def _confirm_fenced(self, step: Step, plan: Plan, failover_id: str) -> str:
        fence = self._fences.get(failover_id) or _FenceProgress()
        if fence.answers_again:
            raise NotFenced("the old master answers again; the promotion is called off")
        broker = self._broker(step.broker_key)
        registered_on, answered = 0, 0
        for _, ids in await self._group_on_nameservers(plan.broker_name):
            if isinstance(ids, RemotingError):
                continue
            answered += 1
            if broker.addr in ids.values():
                registered_on += 1
        deregistered_for: float | None = None
        if registered_on == 0 and answered * 2 > len(self.config.nameservers):
            # Dropped when planned and still dropped now: the time in between counts (a
            # resumed run only counts what the plan saw, which is the cautious side).
            elapsed = self.clock() - self._started_at.get(failover_id, self.clock())
            deregistered_for = (plan.deregistered_for_seconds or 0.0) + elapsed
            if plan.deregistered_for_seconds is None:
                deregistered_for = 0.0
        evidence = FenceEvidence(
            is_rewritten=fence.is_rewritten,
            is_stopped=fence.is_stopped,
            is_command_fenced=fence.is_command_fenced,
            deregistered_for_seconds=deregistered_for,
            registered_on=registered_on,
            is_operator_confirmed=plan.fenced_by_operator,
        )
        path, why = fenced_by(evidence, self.config.failover.fence_grace_seconds)
        if path is None:
            raise NotFenced(why)
        fence.path = path
        self.journal.append(failover_id, "fenced_by", path=path, detail=why)
        if plan.max_loss_bytes is not None and plan.master_write_rate > 0:
            # The old master could take writes until now: the bound grows with the time the
            # fence took, at its peak rate.
            elapsed = self.clock() - self._started_at.get(failover_id, self.clock())
            if plan.decided_at is not None:
                # Planning (reading files from an unreachable host) takes time too.
                elapsed = max(elapsed, self.wall_clock() - plan.decided_at)
            grown = plan.max_loss_bytes + math.ceil(
                plan.master_write_rate * _FENCE_RATE_MARGIN * elapsed
            )
            self._max_loss[failover_id] = grown
            self.journal.append(
                failover_id,
                "max_loss_bytes",
                max_loss_bytes=grown,
                planned=plan.max_loss_bytes,
                fence_seconds=round(elapsed, 3),
            )
        if path == "operator":
            self.emit("operator_fence", {"failover_id": failover_id, "detail": why})
        return f"fenced by {path}: {why}"

    async def _start(self, step: Step, host: Host) -> str:
        broker = self._broker(step.broker_key)
        if await self._answers(broker.addr):
            return f"{broker.addr} already answers"
        result = await host.run(
            step.argv, timeout_seconds=self.config.failover.step_timeout_seconds
        )
        if not result.is_ok:
            raise StepFailed(f"start command {result.summary()}")
        deadline = self.clock() + self.config.failover.step_timeout_seconds
        while self.clock() < deadline:
            if await self._answers(broker.addr):
                return f"started; {broker.addr} answers"
            await asyncio.sleep(0.5)
        raise StepFailed(f"{broker.addr} does not answer after start")

    async def _rewrite(
        self,
        step: Step,
        host: Host,
        failover_id: str,
        backups: dict[str, str],
        restore_backup: bool,
    ) -> str:
        text = (await host.read_file(step.path)).decode("latin-1")
        if restore_backup:
            backup = backups[step.broker_key]
            original = (await host.read_file(backup)).decode("latin-1")
            if original == text:
                return f"{step.path} already restored"
            await host.write_file(step.path, original.encode("latin-1"))
            return f"restored {step.path} from {backup}"
        new = PropertiesFile.parse(text).with_values(dict(step.edits)).render()
        if new == text:
            return f"{step.path} already has " + ", ".join(f"{k}={v}" for k, v in step.edits)
        if step.broker_key not in backups:
            backup = f"{step.path}.rmq-watchdog-{failover_id}.bak"
            await host.write_file(backup, text.encode("latin-1"))
            backups[step.broker_key] = backup
            self.journal.append(
                failover_id, "backup_written", broker_key=step.broker_key, backup=backup
            )
        await host.write_file(step.path, new.encode("latin-1"))
        return f"rewrote {step.path}: " + ", ".join(f"{k}={v}" for k, v in step.edits)

    async def _move_store_aside(self, step: Step, plan: Plan, host: Host, failover_id: str) -> str:
        props = PropertiesFile.parse((await host.read_file(step.path)).decode("latin-1"))
        root = props.get("storePathRootDir")
        if not root:
            raise StepFailed(f"{step.path} sets no storePathRootDir; cannot find the store")
        aside = f"{root.rstrip('/')}.rmq-watchdog-aside-{failover_id}"
        check = await host.run(["test", "-e", aside], timeout_seconds=30)
        if check.is_ok:
            return f"store already moved to {aside}"
        moved = await host.run(["mv", root, aside], timeout_seconds=120)
        if not moved.is_ok:
            raise StepFailed(f"mv {root} {aside}: {moved.summary()}")
        commitlog = props.get("storePathCommitLog")
        moved_log: str | None = None
        if commitlog and not commitlog.startswith(root.rstrip("/") + "/"):
            moved_log = f"{commitlog.rstrip('/')}.aside-{failover_id}"
            moved_cmd = await host.run(["mv", commitlog, moved_log], timeout_seconds=120)
            if not moved_cmd.is_ok:
                raise StepFailed(f"mv {commitlog}: {moved_cmd.summary()}")
        elif commitlog:
            moved_log = aside + commitlog[len(root.rstrip("/")) :]
        else:
            moved_log = f"{aside}/commitlog"
        accounted = await self._account_moved_aside(
            plan, host, failover_id, step.broker_key, aside, moved_log
        )
        return f"moved {root} to {aside}" + (f"; {accounted}" if accounted else "")

    async def _account_moved_aside(
        self,
        plan: Plan,
        host: Host,
        failover_id: str,
        broker_key: str,
        aside: str,
        commitlog_dir: str,
    ) -> str:
        """What the moved store held past the promotion point, in bytes and messages: the
        acknowledged writes a deposed master took that the group no longer serves."""
        details = dict(plan.details)

        def as_int(key: str) -> int | None:
            value = details.get(key, "")
            return int(value) if value.lstrip("-").isdigit() else None

        target, point = as_int("target_offset"), as_int("promotion_offset")
        if point is None:
            return ""
        past = None if target is None else max(target - point, 0)
        messages: int | None = None
        summary = ""
        at_least = ""
        try:
            tail = await read_commitlog_tail(host, commitlog_dir, point, target)
            messages = tail.messages + (1 if tail.straddles else 0)
            summary = tail.summary()
            at_least = "" if tail.is_exact else "at least "
            if past is None or tail.last_end_offset is not None:
                past = max((tail.last_end_offset or point) - point, past or 0)
        except (CommitLogError, HostError) as exc:
            summary = f"messages not counted: {exc}"
        record = {
            "broker_key": broker_key,
            "path": aside,
            "commitlog": commitlog_dir,
            "promotion_offset": point,
            "bytes": past,
            "messages": messages,
            "summary": summary,
        }
        self.journal.append(failover_id, "store_moved_aside", **record)
        self.emit(
            "store_moved_aside",
            {"failover_id": failover_id, "broker_name": plan.broker_name, **record},
        )
        self._moved_aside[failover_id] = record
        bytes_text = "unknown" if past is None else str(past)
        count = "an unknown number of" if messages is None else f"{at_least}{messages}"
        return (
            f"{count} message(s), {bytes_text} bytes past the promotion point {point} moved "
            f"aside to {aside} ({summary})"
        )

    async def _group_on_nameservers(
        self, broker_name: str
    ) -> list[tuple[str, Mapping[int, str] | RemotingError]]:
        """Each configured nameserver's brokerId -> addr map of the group, or why it did not
        answer: what the promotion's verification and the fence gate both read."""
        out: list[tuple[str, Mapping[int, str] | RemotingError]] = []
        for addr in self.config.nameservers:
            try:
                info = await get_cluster_info(
                    self.pool.get(addr), timeout_seconds=self.config.probe.timeout_seconds
                )
            except RemotingError as exc:
                out.append((addr, exc))
                continue
            out.append((addr, info.broker_addrs.get(broker_name, {})))
        return out

    async def _wait_master(self, plan: Plan, broker: BrokerConfig) -> str:
        deadline = self.clock() + self.config.failover.promote_timeout_seconds
        missing: list[str] = []
        while True:
            missing = []
            answered = 0
            for addr, ids in await self._group_on_nameservers(plan.broker_name):
                if isinstance(ids, RemotingError):
                    missing.append(f"{addr} unreachable ({type(ids).__name__})")
                    continue
                answered += 1
                listed = ids.get(0)
                if listed != broker.addr:
                    missing.append(f"{addr} lists id 0 as {listed}")
            majority = answered * 2 > len(self.config.nameservers)
            if majority and all("unreachable" in m for m in missing):
                return (
                    f"{answered}/{len(self.config.nameservers)} nameservers list "
                    f"{broker.addr} as {plan.broker_name} id 0"
                )
            if self.clock() >= deadline:
                raise StepFailed(
                    f"not registered as master within "
                    f"{self.config.failover.promote_timeout_seconds:g} s: " + "; ".join(missing)
                )
            await asyncio.sleep(0.5)

    async def _canary(self, plan: Plan, broker: BrokerConfig, topic: str) -> str:
        if self.canary is None:
            raise StepFailed("no canary runner configured")
        outcome = await self.canary(
            self.config.nameservers,
            broker.addr,
            plan.broker_name,
            topic,
            self.config.failover.canary_timeout_seconds,
        )
        if not outcome.is_ok:
            raise StepFailed(f"canary failed: {outcome.detail}")
        return outcome.detail

    async def _record_epoch(self, plan: Plan, failover_id: str) -> str:
        master = self._broker(plan.new_master_key or "")
        now = self.wall_clock()
        noted = self._promotion_offsets.get(failover_id)
        promotion_offset = noted if noted is not None else plan.candidate_offset
        state = self.store.load()
        record = state.group(plan.broker_name)
        if plan.kind == "promote":
            record = replace(
                record,
                epoch=plan.epoch,
                master_key=master.key,
                master_addr=master.addr,
                promotion_offset=promotion_offset,
                rejoin_check_key=plan.old_master_key,
                lowered_from=plan.lowered_from,
                lowered_by=failover_id if plan.lowered_from else None,
            )
        else:
            restarted = any(s.kind is StepKind.START for s in plan.steps)
            record = replace(
                record,
                epoch=max(record.epoch, plan.epoch),
                master_key=master.key,
                master_addr=master.addr,
                # Demoted (store moved aside when it was ahead): nothing left to check. A
                # quarantined broker stays stopped and is checked again if it comes back.
                rejoin_check_key=None if restarted else record.rejoin_check_key,
            )
        self.store.save(state.with_group(plan.broker_name, record))
        problems: list[str] = []
        for b in self.config.group(plan.broker_name):
            text = epoch_file_text(
                epoch=record.epoch,
                broker_name=plan.broker_name,
                master_addr=master.addr,
                this_addr=b.addr,
                recorded_at=now,
            )
            try:
                await self.hosts[b.host].write_file(b.properties + ".epoch", text.encode())
            except HostError as exc:
                problems.append(str(exc))
        value = (
            f'{{"epoch":{record.epoch},"master_addr":"{master.addr}",'
            f'"master_key":"{master.key}","failover_id":"{failover_id}"}}'
        )
        for addr in self.config.nameservers:
            try:
                await put_kv_config(
                    self.pool.get(addr),
                    self.config.failover.epoch_kv_namespace,
                    plan.broker_name,
                    value,
                    timeout_seconds=self.config.probe.timeout_seconds,
                )
            except RemotingError as exc:
                problems.append(f"nameserver {addr}: {exc}")
        detail = f"epoch {record.epoch}: {plan.broker_name} master {master.key}@{master.addr}"
        if promotion_offset is not None and plan.kind == "promote":
            detail += f", promoted at offset {promotion_offset}"
        if problems:
            detail += " (not recorded everywhere: " + "; ".join(problems) + ")"
        return detail
