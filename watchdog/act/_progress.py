"""Pure: where a running plan stands, and what the executor does next (start steps, wait for
running ones, fall back from an in-place promotion to a restart, roll back, finish)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..decide import Plan, Step, StepKind, writes_back
from ._journal import JournalProgress

__all__ = [
    "Action",
    "FenceProgress",
    "Finish",
    "Phase",
    "Progress",
    "RunStep",
    "Start",
    "StartFallback",
    "StartRollback",
    "StepStatus",
    "Wait",
    "next_action",
    "retry_budget_seconds",
]

# fallback: the plan's restart-path steps, run in place of its PROMOTE_IN_PLACE step when it
# failed (each indexed in plan.fallback).
Phase = Literal["main", "rollback", "fallback"]
StepStatus = Literal["done", "skipped", "failed"]  # skipped: a best-effort step that failed

# The reason a resumed rollback gives: the first reason is in the journal, not in its progress.
RESUMED_ROLLBACK = "resumed an interrupted rollback"

# Kinds that wait within their own deadline, a fence command, which is not repeated blindly,
# and the plug-in's requests: a refusal is an answer (the restart path takes over at once, and
# a re-point is best effort; a role restore is decided again later), not a failure to try
# again for a minute.
_NOT_RETRIED = frozenset(
    {
        StepKind.WAIT_MASTER,
        StepKind.CANARY,
        StepKind.CONFIRM_FENCED,
        StepKind.FENCE_COMMAND,
        StepKind.PROMOTE_IN_PLACE,
        StepKind.SET_HA_MASTER,
        StepKind.SET_MASTER_ROLE,
        # A switchover's: the write stop is tried once (what does not stop at once is given
        # back), a catch-up has its own bound, the verification its deadline.
        StepKind.STOP_WRITES,
        StepKind.CATCH_UP,
        StepKind.VERIFY_REJOIN,
    }
)
_BEST_EFFORT_BUDGET_SECONDS = 15.0  # a dead host must not hold the promotion for long


@dataclass(frozen=True)
class RunStep:
    """One step to run (each step is idempotent: running a done one again changes nothing)."""

    phase: Phase
    index: int  # in plan.steps (main) or plan.rollback; the fence restore is len(plan.steps)
    step: Step
    restore_backup: bool = False  # a rewrite that puts the file's backup back

    @property
    def key(self) -> tuple[Phase, int]:
        return (self.phase, self.index)


@dataclass(frozen=True)
class Start:
    """Start these steps now, each on its own: everything they wait for is done (Plan.waits_for),
    so they are at most one per lane. The executor then asks again."""

    steps: tuple[RunStep, ...]


@dataclass(frozen=True)
class Wait:
    """Steps are running and nothing may start (or end the run) before one of them ends."""


@dataclass(frozen=True)
class StartRollback:
    """Journal `rollback_started` with this reason; the rollback steps come next. `is_fence`:
    the confirm_fenced gate failed after the candidate was stopped side by side with the fence,
    so the run ends awaiting the fence once the candidate is restored."""

    why: str
    is_fence: bool = False


@dataclass(frozen=True)
class StartFallback:
    """Journal `fallback_started` with this reason (the in-place promotion failed: refused, or
    its outcome unknown); the plan's fallback steps come next, then the steps after the
    PROMOTE_IN_PLACE step. A restart reads the rewritten properties, so it is safe whether or
    not the broker took the promotion."""

    why: str


@dataclass(frozen=True)
class Finish:
    """The run is over: journal `finished`, update the state, tell the world."""

    outcome: str  # succeeded, failed, rolled_back, awaiting_fence
    detail: str


Action = Start | Wait | StartFallback | StartRollback | Finish


@dataclass(frozen=True)
class Progress:
    """What the journal says of a run, plus what this process started and what ended since."""

    done: frozenset[int] = frozenset()  # main steps done or skipped
    backups: frozenset[str] = frozenset()  # broker keys whose properties file has a backup
    running: frozenset[tuple[Phase, int]] = frozenset()  # started by this process, not ended
    failed: int | None = None  # the main step that failed: nothing starts after it
    failed_detail: str = ""
    # The journal had a rollback_started but no finished: the rollback starts over.
    is_rollback_interrupted: bool = False
    rollback_why: str | None = None  # set once rollback_started is journaled by this run
    is_fence_rollback: bool = False  # that rollback undoes the candidate after a failed gate
    rollback_ran: int = 0  # rollback steps run by this run
    is_rollback_incomplete: bool = False  # one of them failed
    is_fence_restored: bool = False  # not fenced: the old master's file was put back
    # Set once fallback_started is journaled: why the in-place promotion gave way to a restart.
    fallback_why: str | None = None
    fallback_done: frozenset[int] = frozenset()  # fallback steps done
    fallback_failed: int | None = None  # the fallback step that failed (failed_detail: why)

    @classmethod
    def resumed(cls, journal: JournalProgress) -> Progress:
        """Where a new process picks a run up. A step journaled as started but not as done
        runs again (steps running side by side when the crash came all do), and so does one
        journaled as failed (the crash came before the run acted on the failure); a rollback
        starts over from its first step; a fallback goes on at its first step not done."""
        return cls(
            done=journal.done_steps,
            backups=frozenset(journal.backups),
            is_rollback_interrupted=journal.is_rolling_back,
            fallback_why=journal.fallback_reason,
            fallback_done=journal.fallback_done,
        )

    def started(self, ran: RunStep) -> Progress:
        return replace(self, running=self.running | {ran.key})

    def falling_back(self, why: str) -> Progress:
        """The in-place step's failure is answered: the fallback steps run in its place."""
        return replace(self, failed=None, failed_detail="", fallback_why=why)

    def rolling_back(self, why: str, *, is_fence: bool = False) -> Progress:
        return replace(
            self,
            rollback_why=why,
            is_fence_rollback=is_fence,
            rollback_ran=0,
            is_rollback_incomplete=False,
        )

    def after(
        self, ran: RunStep, status: StepStatus, detail: str, *, backups: frozenset[str]
    ) -> Progress:
        """The progress once `ran` ended with `status`; `backups` as they are now (a rewrite
        writes its file's backup the first time it changes the file)."""
        running = self.running - {ran.key}
        if ran.phase == "main":
            if status == "failed":
                if self.failed is not None:
                    # A second failure among steps that ran side by side: the first one
                    # decides what happens next (both are in the journal).
                    return replace(self, running=running, backups=backups)
                return replace(
                    self, running=running, failed=ran.index, failed_detail=detail, backups=backups
                )
            return replace(self, running=running, done=self.done | {ran.index}, backups=backups)
        if ran.phase == "fallback":
            if status == "failed":
                return replace(
                    self,
                    running=running,
                    fallback_failed=ran.index,
                    failed_detail=detail,
                    backups=backups,
                )
            done = self.fallback_done | {ran.index}
            return replace(self, running=running, fallback_done=done, backups=backups)
        if self.rollback_why is None:
            # The only rollback-phase step outside a rollback: the fence gate's restore,
            # whose result changes nothing (the run waits for a fence either way), or a
            # switchover's restore_writes, whose failure the run's outcome says.
            is_undo = ran.step.kind is StepKind.RESTORE_WRITES
            failed = self.is_rollback_incomplete or (is_undo and status == "failed")
            return replace(
                self,
                running=running,
                is_fence_restored=True,
                is_rollback_incomplete=failed,
                backups=backups,
            )
        return replace(
            self,
            running=running,
            rollback_ran=self.rollback_ran + 1,
            is_rollback_incomplete=self.is_rollback_incomplete or status == "failed",
            backups=backups,
        )


def next_action(plan: Plan, progress: Progress) -> Action:
    """What the executor does next, given the plan and where its run stands.

    Main steps start as soon as every step they wait for is done (Plan.waits_for: in order
    within a lane, lanes side by side, a step without a lane once all before it are done). A
    best-effort step that failed counts as done, so it holds up no other lane. Once a step
    fails nothing new starts; the steps still running end first, then the failure is judged.
    Rollback steps run one after the other, and so do fallback steps, which stand in for a
    failed PROMOTE_IN_PLACE step: once they are done it counts as done."""
    if progress.rollback_why is not None:
        if progress.running:
            return Wait()
        if progress.rollback_ran < len(plan.rollback):
            step = plan.rollback[progress.rollback_ran]
            restore = step.kind is StepKind.REWRITE and step.broker_key in progress.backups
            return Start(
                (RunStep("rollback", progress.rollback_ran, step, restore_backup=restore),)
            )
        return _after_rollback(plan, progress, progress.rollback_why)
    if progress.is_rollback_interrupted:
        return StartRollback(RESUMED_ROLLBACK, is_fence=_is_gate_failed(plan, progress.done))
    if progress.failed is not None:
        if progress.running:
            return Wait()
        return _after_failure(plan, progress, progress.failed)
    if progress.fallback_failed is not None:
        if progress.running:
            return Wait()
        return _after_fallback_failure(plan, progress, progress.fallback_failed)
    left = [i for i in range(len(plan.fallback)) if i not in progress.fallback_done]
    if progress.fallback_why is not None and left:
        if progress.running:
            return Wait()
        return Start((RunStep("fallback", left[0], plan.fallback[left[0]]),))
    done = _effective_done(plan, progress)
    runnable = tuple(
        RunStep("main", index, step)
        for index, step in enumerate(plan.steps)
        if index not in done
        and ("main", index) not in progress.running
        and plan.waits_for(index) <= done
    )
    if runnable:
        return Start(runnable)
    if progress.running:
        return Wait()
    return Finish("succeeded", _success_detail(plan, progress))


def _effective_done(plan: Plan, progress: Progress) -> frozenset[int]:
    """The main steps done, the PROMOTE_IN_PLACE step included once a fallback stands in for
    it (the caller has checked that every fallback step is done)."""
    index = plan.in_place_index
    if progress.fallback_why is None or index is None:
        return progress.done
    return progress.done | {index}


def _success_detail(plan: Plan, progress: Progress) -> str:
    """The plan's reason, and on the in-place path which way the candidate was promoted."""
    if plan.in_place_index is None:
        return plan.reason
    if progress.fallback_why is None:
        return f"{plan.reason}; promoted in place"
    return f"{plan.reason}; promoted by restart: {progress.fallback_why}"


def _after_fallback_failure(plan: Plan, progress: Progress, index: int) -> Finish | StartRollback:
    """A fallback step failed: as the same step of the restart path would (its stop failing
    leaves the candidate running: nothing to undo; later, the rollback)."""
    step = plan.fallback[index]
    why = (
        f"{progress.fallback_why}; then fallback step {index + 1} ({step.kind}) failed: "
        f"{progress.failed_detail}"
    )
    if step.kind is StepKind.STOP:
        return Finish("failed", why)
    return StartRollback(why)


def _after_rollback(plan: Plan, progress: Progress, why: str) -> Finish:
    incomplete = " (rollback incomplete)" if progress.is_rollback_incomplete else ""
    if progress.is_fence_rollback and not progress.is_rollback_incomplete:
        # The candidate is a slave again and the old master's file is as it was: nothing was
        # promoted, and the daemon tries the fence again after fence_retry; a switchover's
        # old master takes writes again (its rollback's last step): refused.
        if writes_back(plan) is not None:
            return Finish("refused", f"{why}; {plan.old_master_key} takes writes again")
        return Finish(
            "awaiting_fence",
            f"not promoting until {plan.old_master_key} is fenced: {why}; "
            f"{plan.new_master_key} rolled back",
        )
    detail = f"{why}; rolled back{incomplete}"
    return Finish("failed" if progress.is_rollback_incomplete else "rolled_back", detail)


def _after_failure(plan: Plan, progress: Progress, index: int) -> Action:
    step = plan.steps[index]
    if step.kind is StepKind.PROMOTE_IN_PLACE and plan.fallback:
        # Refused (the broker is the slave it was), or its outcome unknown: the restart
        # path's steps either way, since a restart reads the properties they rewrite.
        return StartFallback(
            f"the in-place promotion (step {index + 1}) failed: {progress.failed_detail}"
        )
    undo = writes_back(plan)
    if undo is not None and not _is_candidate_touched(plan, _effective_done(plan, progress)):
        return _switchover_stopped(plan, progress, index, undo)
    if step.kind is StepKind.CONFIRM_FENCED and _is_candidate_touched(plan, progress.done):
        # No fence, no promotion, but the candidate was stopped and rewritten side by side
        # with the fence: the plan's rollback restarts it as a slave and puts the old master's
        # file back; then the run waits for the fence like the one below.
        return StartRollback(progress.failed_detail, is_fence=True)
    if step.kind is StepKind.CONFIRM_FENCED:
        # No fence, no promotion: undo the old master's rewrite (it may come back to serve,
        # and as a slave with the candidate's id it would leave the group without a master),
        # touch nothing else, and let the daemon retry the fence later.
        old_key = plan.old_master_key
        if not progress.is_fence_restored and old_key is not None and old_key in progress.backups:
            rewrite = next(
                (s for s in plan.steps if s.kind is StepKind.REWRITE and s.broker_key == old_key),
                None,
            )
            if rewrite is not None:
                undo = replace(
                    rewrite,
                    purpose=f"not fenced: restore {old_key}'s properties (nothing was promoted)",
                    lane="",
                )
                return Start((RunStep("rollback", len(plan.steps), undo, restore_backup=True),))
        return Finish(
            "awaiting_fence", f"not promoting until {old_key} is fenced: {progress.failed_detail}"
        )
    why = f"step {index + 1} ({step.kind}) failed: {progress.failed_detail}"
    done = _effective_done(plan, progress)
    if _is_epoch_recorded(plan, done):
        # The new master's epoch is in state.json, the .epoch files and the nameservers: the
        # promotion is final, and undoing it now (the old master's rejoin after a forced
        # switch failed) would leave a group whose records name a master that is not one.
        return Finish("failed", f"{why}; the promotion stands (its epoch is recorded)")
    # Roll back once the candidate was stopped, except after a failed canary: the group has a
    # registered master then, and undoing that would leave it with none.
    if (
        plan.kind == "promote"
        and (_is_candidate_touched(plan, done) or step.kind is StepKind.PROMOTE_IN_PLACE)
        and step.kind is not StepKind.CANARY
    ):
        # A PROMOTE_IN_PLACE that failed without a fallback (none planned) may have taken.
        return StartRollback(why)
    return Finish("failed", why)


def _switchover_stopped(plan: Plan, progress: Progress, index: int, undo: Step) -> Action:
    """A switchover that failed before its candidate changed (it did not catch up, the write
    stop or the fence did not take): the old master gets its writes back (put back, started
    again if its fence stopped it), and the run ends refused, as nothing else was changed."""
    if not progress.is_fence_restored:
        return Start((RunStep("rollback", len(plan.steps), undo),))
    step = plan.steps[index]
    why = progress.failed_detail
    if step.kind is not StepKind.CATCH_UP:
        why = f"step {index + 1} ({step.kind}) failed: {why}"
    if progress.is_rollback_incomplete:
        return Finish(
            "failed", f"{why}; and {plan.old_master_key}'s writes could not be given back"
        )
    return Finish("refused", f"{why}; {plan.old_master_key} takes writes again")


def _is_gate_failed(plan: Plan, done: frozenset[int]) -> bool:
    """Whether an interrupted rollback was the one after a failed confirm_fenced gate: the gate
    is not done but everything it waits for is. Nothing after the gate can have run, and every
    step before it was done, so the step that failed into the rollback was the gate."""
    return any(
        step.kind is StepKind.CONFIRM_FENCED
        and index not in done
        and plan.waits_for(index) <= done
        and _is_candidate_touched(plan, done)
        for index, step in enumerate(plan.steps)
    )


def _is_epoch_recorded(plan: Plan, done: frozenset[int]) -> bool:
    return any(plan.steps[i].kind is StepKind.RECORD_EPOCH for i in done)


def _is_candidate_touched(plan: Plan, done: frozenset[int]) -> bool:
    """The candidate was stopped, or promoted in place (or its fallback ran)."""
    return any(
        plan.steps[i].kind in (StepKind.STOP, StepKind.PROMOTE_IN_PLACE)
        and plan.steps[i].broker_key == plan.new_master_key
        for i in done
    )


def retry_budget_seconds(
    step: Step, step_timeout_seconds: float, *, is_host_unreachable: bool = False
) -> float | None:
    """How long a failing step is tried again before it counts as failed; None: tried once
    (it waits within its own deadline, or, a fence command, is not repeated blindly).

    A best-effort step on a host that an earlier best-effort step of the run could not reach
    for its whole budget is tried once: the old master's stop after its rewrite failed on a
    partitioned host would spend 15 s more on the same unreachable host before the fence
    command (a STONITH switch) runs, while an ASYNC master may still take writes."""
    if step.kind in _NOT_RETRIED:
        return None
    if step.is_best_effort and is_host_unreachable:
        return None
    if step.is_best_effort:
        return min(step_timeout_seconds, _BEST_EFFORT_BUDGET_SECONDS)
    return step_timeout_seconds


@dataclass(frozen=True)
class FenceProgress:
    """What the fence steps of one running promotion achieved so far: the evidence the
    confirm_fenced gate judges."""

    is_rewritten: bool = False
    is_stopped: bool = False
    is_command_fenced: bool = False
    answers_again: bool = False  # the old master answered before its stop: call it off

    @classmethod
    def resumed(cls, plan: Plan, journal: JournalProgress) -> FenceProgress:
        """From the journal, which keeps no step detail: a fence command journaled as done
        counts as run. Harmless when it was in fact "not needed": that was because the host
        fence (rewrite and stop, both done) succeeded, and the gate takes that path first."""
        fence = cls()
        for index in sorted(journal.done_steps - journal.skipped_steps):
            fence = fence.after(plan, plan.steps[index], command_ran=True)
        return fence

    def after(self, plan: Plan, step: Step, *, command_ran: bool) -> FenceProgress:
        """Once `step` is done; `command_ran`: a fence command did run (it is not needed when
        the host fence succeeded)."""
        if plan.kind != "promote" or step.broker_key != plan.old_master_key:
            return self
        if step.kind is StepKind.REWRITE:
            return replace(self, is_rewritten=True)
        if step.kind is StepKind.STOP:
            return replace(self, is_stopped=True)
        if step.kind is StepKind.FENCE_COMMAND and command_ran:
            return replace(self, is_command_fenced=True)
        return self
