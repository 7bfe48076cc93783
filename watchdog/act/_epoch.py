"""The record_epoch step: the group's new epoch in state.json, `.epoch` files and nameserver KV;
the record_role step: a restored master role in state.json."""

from __future__ import annotations

from dataclasses import replace

from ..decide import StepKind
from ..hosts import HostError
from ..remoting import RemotingError, put_kv_config
from ._run import FailoverRun, StepContext

__all__ = ["epoch_file_text", "record_epoch", "record_role"]


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


async def record_epoch(ctx: StepContext, run: FailoverRun) -> str:
    plan, failover_id = run.plan, run.failover_id
    master = ctx.broker(plan.new_master_key or "")
    now = ctx.wall_clock()
    noted = run.promotion_offset
    promotion_offset = noted if noted is not None else plan.candidate_offset
    # A state file that cannot be read or written raises StateError out of the run: it is
    # not this step failing on the cluster (see is_step_failure).
    state = ctx.store.load()
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
    ctx.store.save(state.with_group(plan.broker_name, record))
    problems: list[str] = []
    for b in ctx.config.group(plan.broker_name):
        text = epoch_file_text(
            epoch=record.epoch,
            broker_name=plan.broker_name,
            master_addr=master.addr,
            this_addr=b.addr,
            recorded_at=now,
        )
        try:
            await ctx.hosts[b.host].write_file(b.properties + ".epoch", text.encode())
        except HostError as exc:
            problems.append(str(exc))
    value = (
        f'{{"epoch":{record.epoch},"master_addr":"{master.addr}",'
        f'"master_key":"{master.key}","failover_id":"{failover_id}"}}'
    )
    for addr in ctx.config.nameservers:
        try:
            await put_kv_config(
                ctx.pool.get(addr),
                ctx.config.failover.epoch_kv_namespace,
                plan.broker_name,
                value,
                timeout_seconds=ctx.config.probe.timeout_seconds,
            )
        except RemotingError as exc:
            problems.append(f"nameserver {addr}: {exc}")
    detail = f"epoch {record.epoch}: {plan.broker_name} master {master.key}@{master.addr}"
    if promotion_offset is not None and plan.kind == "promote":
        detail += f", promoted at offset {promotion_offset}"
    if problems:
        detail += " (not recorded everywhere: " + "; ".join(problems) + ")"
    return detail


async def record_role(ctx: StepContext, run: FailoverRun) -> str:
    """The group's master has the role a failover lowered again: lowered_from and lowered_by
    cleared (state.json), so `check` and the decision stop asking for it. The epoch stays."""
    plan = run.plan
    state = ctx.store.load()
    record = state.group(plan.broker_name)
    if record.lowered_from is None:
        return f"nothing to clear: {plan.broker_name}'s master role is not recorded as lowered"
    if record.lowered_from != plan.new_role:
        # Another failover lowered something else since: not this plan's to clear.
        return (
            f"left as it is: {plan.broker_name} is recorded as lowered from "
            f"{record.lowered_from}, not {plan.new_role}"
        )
    ctx.store.save(
        state.with_group(plan.broker_name, replace(record, lowered_from=None, lowered_by=None))
    )
    return (
        f"{plan.broker_name}'s master role is {plan.new_role} again: the lowering by failover "
        f"{record.lowered_by} cleared"
    )
