"""Run a failover plan: idempotent steps, journaled, retried, rolled back on failure."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from ..config import WatchdogConfig
from ..decide import Plan, Step, StepKind, is_switchover
from ..hosts import Host, HostError
from ..model import WatchdogError
from ..observe import Event, EventName, HookRunner, WebhookNotifier, switchover_event_name
from ..remoting import ClientPool
from ._journal import Journal, JournalProgress
from ._progress import (
    Finish,
    Phase,
    Progress,
    RunStep,
    Start,
    StartFallback,
    StartRollback,
    StepStatus,
    next_action,
)
from ._run import (
    CanaryRunner,
    Emit,
    FailoverResult,
    FailoverRun,
    StepContext,
    StepRecord,
)
from ._state import StateStore
from ._steps import attempt_step, is_step_failure

__all__ = ["Executor", "StepGate"]

# Awaited before each step starts, rollback and fallback steps included: (failover id, step
# index, phase). Raising stops the run there, before the step, with no rollback: several
# watchdog instances use it to commit the journal to etcd under the leader's fencing token.
StepGate = Callable[[str, int, str], Awaitable[None]]

_STEP_EVENTS = {"done": "step_done", "skipped": "step_skipped", "failed": "step_failed"}


class Executor:
    """The only code that changes a cluster. One instance per process; plans run one at a time
    per group (the caller guarantees it through the state's `running` map and the lock).

    What to run next is decided by `next_action` (pure, act/_progress.py); the steps are run by
    act/_steps.py, each as its own task, so steps the plan puts in different lanes run side by
    side; this class does the I/O around them: journal, state, events, hooks."""

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
        before_step: StepGate | None = None,
    ) -> None:
        self.config = config
        self.hosts = hosts
        self.pool = pool
        self.store = store
        self.journal = journal
        self.canary = canary
        self.emit: Emit = emit or (lambda event, fields: None)
        self.clock = clock
        self.wall_clock = wall_clock
        # Test hook for crash-safety tests: exit hard right after this step is journaled.
        self.crash_after_step = crash_after_step
        self.notifier = notifier
        self.hooks = hooks
        self.before_step = before_step
        self.context = StepContext(
            config=config,
            hosts=hosts,
            pool=pool,
            store=store,
            journal=journal,
            canary=canary,
            emit=self.emit,
            clock=clock,
            wall_clock=wall_clock,
        )

    def _event(
        self,
        name: EventName,
        plan: Plan,
        failover_id: str,
        summary: str,
        run: FailoverRun | None,
        **details: Any,
    ) -> Event:
        """An event for webhooks and hooks; `run` None: the run is over, and its event (the
        post_failover/on_failure hook's) carries no steps and the planned loss bound. A
        planned switchover's events are named switchover_*: a receiver that pages on
        failovers is not paged by one."""
        planned = is_switchover(plan)
        return Event(
            name=switchover_event_name(name) if planned else name,
            broker_name=plan.broker_name,
            failover_id=failover_id,
            at=self.wall_clock(),
            summary=summary,
            steps=tuple(run.step_log) if run is not None else (),
            details={
                "kind": "switchover" if planned else plan.kind,
                "epoch": plan.epoch,
                "old_master": plan.old_master_key,
                "new_master": plan.new_master_key,
                "new_master_addr": plan.new_master_addr,
                "expected_loss_bytes": plan.expected_loss_bytes,
                "max_loss_bytes": run.max_loss_bytes if run is not None else plan.max_loss_bytes,
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
        run = FailoverRun.begin(failover_id, plan, self.clock(), resume)
        if resume is None:
            not_started = await self._begin(run)
            if not_started is not None:
                return not_started
            progress = Progress()
        else:
            done = sorted(resume.done_steps)
            self.journal.append(failover_id, "resumed", done_steps=done)
            self.emit("failover_resumed", {"failover_id": failover_id, "done_steps": done})
            progress = Progress.resumed(resume)
        records: list[StepRecord] = []
        running: dict[asyncio.Task[StepRecord], RunStep] = {}
        try:
            while True:
                action = next_action(plan, progress)
                if isinstance(action, Finish):
                    return self._finish(run, records, action.outcome, action.detail)
                if isinstance(action, StartRollback):
                    self.journal.append(
                        failover_id,
                        "rollback_started",
                        reason=action.why,
                        is_fence=action.is_fence,
                    )
                    self.emit(
                        "rollback_started", {"failover_id": failover_id, "reason": action.why}
                    )
                    progress = progress.rolling_back(action.why, is_fence=action.is_fence)
                    continue
                if isinstance(action, StartFallback):
                    # The in-place promotion failed: the restart path stands in for it.
                    self.journal.append(failover_id, "fallback_started", reason=action.why)
                    self.emit(
                        "fallback_started", {"failover_id": failover_id, "reason": action.why}
                    )
                    progress = progress.falling_back(action.why)
                    continue
                if isinstance(action, Start):
                    if self.before_step is not None:
                        # Every gate before any of the steps starts: a refusal starts none.
                        for to_run in action.steps:
                            await self.before_step(failover_id, to_run.index, to_run.phase)
                    for to_run in action.steps:
                        running[asyncio.create_task(self._run_action(to_run, run))] = to_run
                        progress = progress.started(to_run)
                    continue
                ended, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                # In plan order when several end together, so the journal reads the same way.
                for task in sorted(ended, key=lambda t: running[t].key):
                    ran = running.pop(task)
                    record = task.result()  # a step's own failure is its record's status
                    records.append(record)
                    progress = progress.after(
                        ran, record.status, record.detail, backups=frozenset(run.backups)
                    )
                    if (
                        ran.phase == "main"
                        and record.status != "failed"
                        and self.crash_after_step is not None
                        and ran.index + 1 == self.crash_after_step
                    ):
                        os._exit(70)
        finally:
            # An error that is no step's failure (StateError, a gate's refusal) or a cancelled
            # run: the steps still running side by side end with it; the journal says they
            # were started.
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run_action(self, action: RunStep, run: FailoverRun) -> StepRecord:
        record = await self._run_logged(
            action.step, action.index, action.phase, run, restore_backup=action.restore_backup
        )
        if action.phase == "main" and record.status == "done":
            # What the fence steps achieved, for the fence command and the gate after them.
            ran = "not needed" not in record.detail
            run.fence = run.fence.after(run.plan, action.step, command_ran=ran)
        return record

    async def _begin(self, run: FailoverRun) -> FailoverResult | None:
        """Before the first step: the preflight and the pre_failover hook, then the plan is
        journaled and the group marked running. A result when the plan must not start."""
        plan, failover_id = run.plan, run.failover_id
        problem = await self._preflight(plan)
        if problem is not None:
            result = FailoverResult(
                failover_id,
                plan.broker_name,
                plan.kind,
                "refused",
                problem,
                self.clock() - run.started,
                (),
            )
            self.emit("failover_finished", {"failover_id": failover_id, "result": result})
            return result
        if self.hooks is not None and plan.kind == "promote":
            hook = await self.hooks.run(
                "pre_failover",
                self._event("failover_started", plan, failover_id, plan.reason, run),
            )
            if hook.is_veto:
                result = FailoverResult(
                    failover_id,
                    plan.broker_name,
                    plan.kind,
                    "vetoed",
                    hook.reason,
                    self.clock() - run.started,
                    (),
                )
                self._notify(
                    self._event(
                        "failover_blocked",
                        plan,
                        failover_id,
                        f"{plan.broker_name} failover vetoed: {hook.reason}",
                        run,
                    )
                )
                self.emit("failover_finished", {"failover_id": failover_id, "result": result})
                return result
        self.journal.append(failover_id, "planned", plan=plan.to_json())
        self.store.save(self.store.load().with_running(plan.broker_name, failover_id))
        self.emit("failover_started", {"failover_id": failover_id, "plan": plan})
        self._notify(self._event("failover_started", plan, failover_id, plan.reason, run))
        return None

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

    def _finish(
        self, run: FailoverRun, records: list[StepRecord], outcome: str, detail: str
    ) -> FailoverResult:
        plan, failover_id = run.plan, run.failover_id
        duration = self.clock() - run.started
        now = self.wall_clock()
        state = self.store.load()
        record = state.group(plan.broker_name)
        if plan.kind == "promote" and outcome == "awaiting_fence":
            # The candidate untouched (or, stopped side by side, restored): no anti-flap block,
            # a retry after fence_retry.
            record = replace(
                record,
                fence_retry_at=now + self.config.failover.fence_retry_seconds,
                fence_wait_reason=detail.partition(" is fenced: ")[2] or detail,
                last_failover_id=failover_id,
                last_outcome=outcome,
                last_failover_at=now,
            )
        elif plan.kind == "promote" and outcome != "refused":
            blocked_until: float | None = now + self.config.failover.recovery_block_seconds
            block_reason = f"failover {failover_id} {outcome}; `rmq-watchdog ack` lifts the block"
            if outcome == "succeeded" and is_switchover(plan):
                # A switchover that succeeded was planned, no fault: it blocks nothing new.
                blocked_until, block_reason = record.blocked_until, record.block_reason
            record = replace(
                record,
                fence_retry_at=None,
                fence_wait_reason="",
                blocked_until=blocked_until,
                block_reason=block_reason,
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
        elif outcome == "refused":  # a switchover that changed nothing in the end
            name = "failover_blocked"
        else:
            name = "failover_succeeded" if is_ok else "failover_failed"
        self._notify(
            self._event(
                name,
                plan,
                failover_id,
                f"{plan.broker_name}: {detail}",
                run,
                outcome=outcome,
                duration_seconds=round(duration, 3),
                moved_aside=run.moved_aside,
            )
        )
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
            None,
            outcome=result.outcome,
        )
        await self.hooks.run(hook_name, event)

    async def _run_logged(
        self,
        step: Step,
        index: int,
        phase: Phase,
        run: FailoverRun,
        *,
        restore_backup: bool = False,
    ) -> StepRecord:
        plan, failover_id = run.plan, run.failover_id
        self.journal.append(
            failover_id,
            "step_started",
            index=index,
            phase=phase,
            kind=str(step.kind),
            broker_key=step.broker_key,
            lane=step.lane,
        )
        self.emit(
            "step_started",
            {"failover_id": failover_id, "index": index, "phase": phase, "step": step},
        )
        began = self.clock()
        status: StepStatus = "done"
        try:
            detail = await attempt_step(self.context, run, step, restore_backup=restore_backup)
        except WatchdogError as exc:
            if not is_step_failure(exc):
                raise  # StateError, ConfigError: not the step's failure (is_step_failure says why)
            detail = str(exc)
            status = "skipped" if step.is_best_effort else "failed"
        duration = self.clock() - began
        event = _STEP_EVENTS[status]
        self.journal.append(
            failover_id,
            event,
            index=index,
            phase=phase,
            kind=str(step.kind),
            broker_key=step.broker_key,
            lane=step.lane,
            detail=detail,
            duration_seconds=duration,
        )
        record = StepRecord(index, phase, str(step.kind), step.broker_key, status, detail, duration)
        step_info = {
            "index": index,
            "phase": phase,
            "kind": str(step.kind),
            "broker_key": step.broker_key,
            "lane": step.lane,
            "purpose": step.purpose,
            "status": status,
            "detail": detail,
            "duration_seconds": round(duration, 3),
        }
        run.step_log.append(step_info)
        self._notify(
            self._event(
                "failover_step",
                plan,
                failover_id,
                f"step {index + 1} {status}: {step.purpose}",
                run,
                step=step_info,
            )
        )
        self.emit(event, {"failover_id": failover_id, "record": record, "step": step})
        return record
