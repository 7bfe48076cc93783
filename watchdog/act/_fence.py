"""The old master's fence: its epoch record, the live-master check, the fence command, and the
no-fence gate."""

from __future__ import annotations

import math
from dataclasses import replace

from ..decide import FenceEvidence, Step, fenced_by
from ..hosts import Host, HostError
from ..remoting import RemotingError
from ._epoch import epoch_file_text
from ._run import FailoverRun, NotFenced, StepContext, StepFailed
from ._verify import answers, group_on_nameservers

__all__ = [
    "close_epoch_record",
    "confirm_fenced",
    "fence_command",
    "old_master_rewrite",
    "refuse_a_live_master",
    "restore_epoch_record",
]


# A master cut off from its slave while it serves clients writes faster than the last
# minute's peak (no replication to feed): the bound grows at the peak rate plus this margin.
# Measured in tests/netns: the loss came to 97-98 % of the bound at the bare peak rate.
_FENCE_RATE_MARGIN = 1.25


def old_master_rewrite(run: FailoverRun, step: Step, restore_backup: bool) -> str | None:
    """What a rewrite of a promotion's old master is: "fence" (to SLAVE) or "restore" (its
    backup, or the values it had: the fence undone); None for any other rewrite."""
    plan = run.plan
    if plan.kind != "promote" or step.broker_key != plan.old_master_key:
        return None
    if restore_backup or dict(step.edits).get("brokerRole") != "SLAVE":
        return "restore"
    return "fence"


def _epoch_backup(run: FailoverRun, step: Step) -> str:
    return f"{step.path}.epoch.rmq-watchdog-{run.failover_id}.bak"


async def close_epoch_record(ctx: StepContext, run: FailoverRun, step: Step, host: Host) -> str:
    """With its properties, the fence rewrites the old master's `.epoch` record, which the
    broker-host gate reads before each start: no master of this group is known while the
    promotion runs, and this broker may not start as one, even from a properties file someone
    puts back (a configuration tool). The record as it was is kept beside it once (empty: there
    was none) for the restore when the promotion does not go on. Best effort within the step:
    the properties say SLAVE already, the record is a second lock; the detail says if not."""
    plan = run.plan
    broker = ctx.broker(step.broker_key)
    record, backup = step.path + ".epoch", _epoch_backup(run, step)
    try:
        try:
            await host.read_file(backup)
        except HostError:
            try:
                was = await host.read_file(record)
            except HostError:
                was = b""  # no record: the watchdog never acted on this broker
            await host.write_file(backup, was)
        text = epoch_file_text(
            epoch=plan.epoch - 1,
            broker_name=plan.broker_name,
            master_addr="",
            this_addr=broker.addr,
            recorded_at=ctx.wall_clock(),
        )
        await host.write_file(record, text.encode())
    except HostError as exc:
        return f"; epoch record not written: {exc}"
    return f"; {record}: may_be_master=false"


async def restore_epoch_record(ctx: StepContext, run: FailoverRun, step: Step, host: Host) -> str:
    """Undo close_epoch_record (the promotion did not go on): the record as it was, or, when
    there was none, one that lets it start as the master it still is (the gate treats both
    alike). Nothing when the fence never wrote one."""
    plan = run.plan
    broker = ctx.broker(step.broker_key)
    record = step.path + ".epoch"
    try:
        was = await host.read_file(_epoch_backup(run, step))
    except HostError:
        return ""
    if not was:
        was = epoch_file_text(
            epoch=plan.epoch - 1,
            broker_name=plan.broker_name,
            master_addr=broker.addr,
            this_addr=broker.addr,
            recorded_at=ctx.wall_clock(),
        ).encode()
    try:
        await host.write_file(record, was)
    except HostError as exc:
        return f"; epoch record not restored: {exc}"
    return f"; {record} restored"


async def refuse_a_live_master(ctx: StepContext, run: FailoverRun, step: Step) -> None:
    """A promotion decided because the master was unreachable is called off when it answers
    again before it is stopped (a partition healed while the fence was tried): stopping a
    healthy master would turn a blip into a failover, and lose what the slave lacks."""
    broker = ctx.broker(step.broker_key)
    if await answers(ctx, broker.addr, attempts=2):
        run.fence = replace(run.fence, answers_again=True)
        raise StepFailed(f"{broker.addr} answers again: not stopping a live master")


async def fence_command(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    if run.fence.is_rewritten and run.fence.is_stopped:
        return "not needed: the host fence succeeded"
    if run.fence.answers_again:
        raise StepFailed("not run: the old master answers again")
    broker = ctx.broker(step.broker_key)
    host = ctx.config.hosts.get(broker.host)
    timeout = host.fence_timeout_seconds if host is not None else 30.0
    result = await ctx.fence_runner.run(step.argv, timeout_seconds=timeout)
    ctx.journal.append(
        run.failover_id,
        "fence_command",
        argv=list(step.argv),
        exit_code=result.exit_code,
        stdout=result.stdout[-4000:],
        stderr=result.stderr[-4000:],
    )
    if not result.is_ok:
        raise StepFailed(f"fence command {result.summary()}")
    return f"fence command succeeded ({result.summary()})"


async def confirm_fenced(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """No fence, no promotion: judge what the fence steps achieved, with what the nameservers
    say now; on a fence, grow the loss bound by the time the fence took."""
    plan, fence = run.plan, run.fence
    if fence.answers_again:
        raise NotFenced("the old master answers again; the promotion is called off")
    broker = ctx.broker(step.broker_key)
    registered_on, answered = 0, 0
    for _, ids in await group_on_nameservers(ctx, plan.broker_name):
        if isinstance(ids, RemotingError):
            continue
        answered += 1
        if broker.addr in ids.values():
            registered_on += 1
    deregistered_for: float | None = None
    if registered_on == 0 and answered * 2 > len(ctx.config.nameservers):
        # Dropped when planned and still dropped now: the time in between counts (a
        # resumed run only counts what the plan saw, which is the cautious side).
        elapsed = ctx.clock() - run.started
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
    path, why = fenced_by(evidence, ctx.config.failover.fence_grace_seconds)
    if path is None:
        raise NotFenced(why)
    ctx.journal.append(run.failover_id, "fenced_by", path=path, detail=why)
    if plan.max_loss_bytes is not None and plan.master_write_rate > 0:
        # The old master could take writes until now: the bound grows with the time the
        # fence took, at its peak rate.
        elapsed = ctx.clock() - run.started
        if plan.decided_at is not None:
            # Planning (reading files from an unreachable host) takes time too.
            elapsed = max(elapsed, ctx.wall_clock() - plan.decided_at)
        grown = plan.max_loss_bytes + math.ceil(
            plan.master_write_rate * _FENCE_RATE_MARGIN * elapsed
        )
        run.max_loss_bytes = grown
        ctx.journal.append(
            run.failover_id,
            "max_loss_bytes",
            max_loss_bytes=grown,
            planned=plan.max_loss_bytes,
            fence_seconds=round(elapsed, 3),
        )
    if path == "operator":
        ctx.emit("operator_fence", {"failover_id": run.failover_id, "detail": why})
    return f"fenced by {path}: {why}"
