"""One step of a plan, run to its goal: which failures count, retries, and the broker steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from ..config import ConfigError
from ..decide import Step, StepKind
from ..hosts import Host, HostError
from ..model import PropertiesFile, WatchdogError
from ..remoting import RemotingError, get_broker_runtime_info
from ._epoch import record_epoch, record_role
from ._fence import (
    close_epoch_record,
    confirm_fenced,
    fence_command,
    old_master_rewrite,
    refuse_a_live_master,
    restore_epoch_record,
)
from ._inplace import promote_step, set_ha_master_step, set_master_role_step
from ._loss import move_store_aside
from ._progress import retry_budget_seconds
from ._run import FailoverRun, StepContext, StepFailed
from ._state import StateError
from ._switchover import SWITCHOVER_STEPS, switchover_step
from ._verify import answers, run_canary, wait_master

__all__ = ["attempt_step", "is_step_failure"]


def is_step_failure(exc: BaseException) -> bool:
    """An error that fails a step (retried, then recorded as failed or skipped) rather than
    ending the run: anything rmq-watchdog raises on purpose (WatchdogError), from a host, a
    broker, a nameserver or a step's own check, except two that are not the cluster's.

    StateError (state.json cannot be read or written, raised by record_epoch) and ConfigError
    propagate out of the run, as they did when the executor named StepFailed, HostError and
    RemotingError: a retry does not mend them, and a recorded failure would roll back a
    promotion the cluster has taken, only for the run's end (which writes state.json too) to
    fail the same way. The other WatchdogErrors that were not named then (CommitLogError,
    CanaryOutputError, DockerCliError) are caught where they are raised and never reach here;
    LockHeld, SandboxError and DrillRefused belong to code no step calls. Anything that is not
    a WatchdogError is a bug and surfaces.
    """
    return isinstance(exc, WatchdogError) and not isinstance(exc, StateError | ConfigError)


async def attempt_step(
    ctx: StepContext, run: FailoverRun, step: Step, *, restore_backup: bool = False
) -> str:
    """Run the step, again while it fails within its retry budget; its detail, or the last
    failure raised."""
    budget = retry_budget_seconds(
        step,
        ctx.config.failover.step_timeout_seconds,
        is_host_unreachable=step.host in run.unreachable_hosts,
    )
    try:
        return await _with_retries(budget, lambda: _do(ctx, run, step, restore_backup))
    except HostError:
        if step.is_best_effort:
            run.unreachable_hosts.add(step.host)
        raise


async def _with_retries(budget: float | None, attempt: Callable[[], Awaitable[str]]) -> str:
    if budget is None:
        return await attempt()
    result = ""
    async for attempt_ctx in AsyncRetrying(
        stop=stop_after_delay(budget),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception(is_step_failure),
        reraise=True,
    ):
        with attempt_ctx:
            result = await attempt()
    return result


async def _do(ctx: StepContext, run: FailoverRun, step: Step, restore_backup: bool) -> str:
    plan = run.plan
    if step.kind is StepKind.FENCE_COMMAND:
        return await fence_command(ctx, run, step)
    if step.kind is StepKind.CONFIRM_FENCED:
        return await confirm_fenced(ctx, run, step)
    if step.kind in SWITCHOVER_STEPS:
        return await switchover_step(ctx, run, step)
    host = ctx.hosts[step.host]
    if step.kind is StepKind.STOP:
        if plan.kind == "promote" and step.broker_key == plan.new_master_key:
            await _note_promotion_offset(ctx, run, step)
        is_fence = plan.kind == "promote" and step.broker_key == plan.old_master_key
        if is_fence and plan.requires_master_down:
            await refuse_a_live_master(ctx, run, step)
        return await _stop(ctx, step, host, strict=is_fence)
    if step.kind is StepKind.START:
        return await _start(ctx, step, host)
    if step.kind is StepKind.REWRITE:
        return await _rewrite(ctx, run, step, host, restore_backup)
    if step.kind is StepKind.MOVE_STORE_ASIDE:
        return await move_store_aside(ctx, run, step, host)
    if step.kind is StepKind.WAIT_MASTER:
        return await wait_master(ctx, plan, ctx.broker(step.broker_key))
    if step.kind is StepKind.CANARY:
        return await run_canary(ctx, plan, ctx.broker(step.broker_key), step.path)
    if step.kind is StepKind.RECORD_EPOCH:
        return await record_epoch(ctx, run)
    if step.kind is StepKind.PROMOTE_IN_PLACE:
        return await promote_step(ctx, run, step)
    if step.kind is StepKind.SET_HA_MASTER:
        return await set_ha_master_step(ctx, run, step)
    if step.kind is StepKind.SET_MASTER_ROLE:
        return await set_master_role_step(ctx, run, step)
    if step.kind is StepKind.RECORD_ROLE:
        return await record_role(ctx, run)
    raise StepFailed(f"unknown step kind {step.kind}")


async def _note_promotion_offset(ctx: StepContext, run: FailoverRun, step: Step) -> None:
    """The candidate's log end just before it stops being a slave is the promotion point:
    a deposed master whose log reaches past it cannot rejoin on that log."""
    if run.promotion_offset is not None:
        return
    broker = ctx.broker(step.broker_key)
    try:
        info = await get_broker_runtime_info(
            ctx.pool.get(broker.addr), timeout_seconds=ctx.config.probe.timeout_seconds
        )
        offset = int(info["commitLogMaxOffset"])
    except (RemotingError, KeyError, ValueError):
        return  # already stopped (a resumed run): record_epoch falls back to the plan's
    run.promotion_offset = offset
    ctx.journal.append(run.failover_id, "promotion_offset", offset=offset)


async def _stop(ctx: StepContext, step: Step, host: Host, *, strict: bool = False) -> str:
    """Stop a broker; done when it no longer answers. `strict` (a fence): the stop
    command must also have succeeded, since not answering *us* proves nothing in a
    partition."""
    broker = ctx.broker(step.broker_key)
    # The broker's kill argv (a candidate_stop = "kill" or a second master's fence) may only
    # send the signal: the JVM is gone a moment later, not when the command returns.
    is_kill = bool(broker.kill) and step.argv == broker.kill
    what = "kill" if is_kill else "stop"
    timeout = ctx.config.failover.step_timeout_seconds
    result = await host.run(step.argv, timeout_seconds=timeout)
    if result.exit_code == 255 and not result.stdout and "connect" in result.stderr:
        raise StepFailed(f"host {host.name} unreachable: {result.stderr.strip()}")
    if is_kill and not result.is_ok:
        # Most kill commands fail when there is no process left to kill (a crashed master's
        # fence): the stop command, which succeeds on a stopped broker, says whether it is.
        result = await host.run(broker.stop, timeout_seconds=timeout)
        what = "stop (after a failed kill)"
    if await _still_answers(ctx, broker.addr, _KILL_GRACE_SECONDS if is_kill else 0.0):
        raise StepFailed(f"{broker.addr} still answers after {what} ({result.summary()})")
    if strict and not result.is_ok:
        raise StepFailed(f"{what} command on host {host.name} {result.summary()}")
    if not result.is_ok:
        return f"{what} command {result.summary()}, but {broker.addr} no longer answers"
    if what == "kill":
        return f"killed; {broker.addr} no longer answers"
    if what == "stop":
        return f"stopped; {broker.addr} no longer answers"
    return f"stopped after a failed kill; {broker.addr} no longer answers"


_KILL_GRACE_SECONDS = 3.0


async def _still_answers(ctx: StepContext, addr: str, grace_seconds: float) -> bool:
    """Whether `addr` still answers, asked again every 0.2 s for up to `grace_seconds`."""
    deadline = ctx.clock() + grace_seconds
    while await answers(ctx, addr):
        if ctx.clock() >= deadline:
            return True
        await asyncio.sleep(0.2)
    return False


async def _start(ctx: StepContext, step: Step, host: Host) -> str:
    broker = ctx.broker(step.broker_key)
    if await answers(ctx, broker.addr):
        return f"{broker.addr} already answers"
    result = await host.run(step.argv, timeout_seconds=ctx.config.failover.step_timeout_seconds)
    if not result.is_ok:
        raise StepFailed(f"start command {result.summary()}")
    deadline = ctx.clock() + ctx.config.failover.step_timeout_seconds
    while ctx.clock() < deadline:
        if await answers(ctx, broker.addr):
            return f"started; {broker.addr} answers"
        # As often as the stop's poll: every poll the group has no master is a poll too late.
        await asyncio.sleep(0.2)
    raise StepFailed(f"{broker.addr} does not answer after start")


async def _rewrite(
    ctx: StepContext, run: FailoverRun, step: Step, host: Host, restore_backup: bool
) -> str:
    detail = await _rewrite_properties(ctx, run, step, host, restore_backup)
    # The old master's fence: its epoch record goes with its properties (after them: the
    # properties are what the fence needs), and is put back with them.
    what = old_master_rewrite(run, step, restore_backup)
    if what == "fence":
        return detail + await close_epoch_record(ctx, run, step, host)
    if what == "restore":
        return detail + await restore_epoch_record(ctx, run, step, host)
    return detail


async def _rewrite_properties(
    ctx: StepContext, run: FailoverRun, step: Step, host: Host, restore_backup: bool
) -> str:
    text = (await host.read_file(step.path)).decode("latin-1")
    if restore_backup:
        backup = run.backups[step.broker_key]
        original = (await host.read_file(backup)).decode("latin-1")
        if original == text:
            return f"{step.path} already restored"
        await host.write_file(step.path, original.encode("latin-1"))
        return f"restored {step.path} from {backup}"
    new = PropertiesFile.parse(text).with_values(dict(step.edits)).render()
    if new == text:
        return f"{step.path} already has " + ", ".join(f"{k}={v}" for k, v in step.edits)
    if step.broker_key not in run.backups:
        backup = f"{step.path}.rmq-watchdog-{run.failover_id}.bak"
        await host.write_file(backup, text.encode("latin-1"))
        run.backups[step.broker_key] = backup
        ctx.journal.append(
            run.failover_id, "backup_written", broker_key=step.broker_key, backup=backup
        )
    await host.write_file(step.path, new.encode("latin-1"))
    return f"rewrote {step.path}: " + ", ".join(f"{k}={v}" for k, v in step.edits)
