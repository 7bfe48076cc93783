"""The in-place steps: the candidate promoted by its broker plug-in, slaves re-pointed by theirs,
a lowered master role restored by the master's."""

from __future__ import annotations

import asyncio

from ..config import ConfigError, read_plugin_secret
from ..decide import Step
from ..model import MASTER_ROLES
from ..remoting import (
    PluginRefused,
    PluginUnauthorized,
    RemotingError,
    Requester,
    describe_error,
    get_broker_config,
    get_broker_runtime_info,
    get_plugin_info,
    promote_in_place,
    set_ha_master,
    set_master_role,
)
from ._run import FailoverRun, StepContext, StepFailed

__all__ = ["promote_step", "set_ha_master_step", "set_master_role_step"]

# The plug-in's promotion can take seconds inside the broker: stopping the HA client (up to
# 5 s while it connects to a black-holed address), waiting up to 2 s for dispatch, and a
# synchronous registration that waits up to 6 s for a dead nameserver. A request that times
# out has an unknown outcome, which the fallback's restart settles.
_PROMOTE_TIMEOUT_SECONDS = 20.0  # at most: a shorter step_timeout bounds it
# The watchdog's own preconditions: two runtime-info reads this far apart agree on the log
# end with nothing left to dispatch, tried for at most _SETTLE_SECONDS. A slave whose log ends
# inside a message (a partial tail) never gets there: the restart path truncates it.
_READ_GAP_SECONDS = 0.2
_SETTLE_SECONDS = 2.0


def _timeout(ctx: StepContext) -> float:
    return min(_PROMOTE_TIMEOUT_SECONDS, ctx.config.failover.step_timeout_seconds)


def _secret(ctx: StepContext) -> bytes:
    """The plug-in secret, read at each use (the plug-in reads its copy at each request too, so
    a rotated secret applies without restarting either)."""
    path = ctx.config.failover.plugin_secret_file
    if path is None:
        raise StepFailed("no [failover] plugin_secret_file configured")
    try:
        return read_plugin_secret(path)
    except ConfigError as exc:
        raise StepFailed(str(exc)) from None


def _report(ctx: StepContext, run: FailoverRun, result: str, detail: str) -> None:
    """The in-place promotion's result for logs and rmq_watchdog_inplace_promotions_total:
    done, refused (the plug-in said no) or fallback (it failed otherwise)."""
    ctx.emit(
        "inplace_promotion",
        {
            "failover_id": run.failover_id,
            "broker_name": run.plan.broker_name,
            "result": result,
            "detail": detail,
        },
    )


async def _settled_log_end(ctx: StepContext, client: Requester, addr: str) -> int:
    """The candidate's log end once two reads _READ_GAP_SECONDS apart show it unchanged and
    fully dispatched (dispatchBehindBytes 0): the offset the plug-in must find."""
    timeout = ctx.config.probe.timeout_seconds
    deadline = ctx.clock() + _SETTLE_SECONDS
    last: int | None = None
    while True:
        try:
            table = await get_broker_runtime_info(client, timeout_seconds=timeout)
            offset = int(table["commitLogMaxOffset"])
            behind = int(table.get("dispatchBehindBytes", "-1"))
        except RemotingError as exc:
            raise StepFailed(f"{addr} runtime info: {describe_error(exc)}") from None
        except (KeyError, ValueError) as exc:
            raise StepFailed(f"{addr} runtime info has no usable log end: {exc}") from None
        if behind == 0 and offset == last:
            return offset
        last = offset if behind == 0 else None
        if ctx.clock() >= deadline:
            raise StepFailed(
                f"not promoting in place: {addr}'s log end did not hold still fully dispatched "
                f"within {_SETTLE_SECONDS:g} s (commitLogMaxOffset {offset}, "
                f"dispatchBehindBytes {behind})"
            )
        await asyncio.sleep(_READ_GAP_SECONDS)


async def promote_step(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """PROMOTE_IN_PLACE: the watchdog's preconditions, then the plug-in's promotion at the
    plan's epoch. Any failure is a StepFailed, and the executor runs the plan's fallback.

    A run resumed after a crash first asks PLUGIN_INFO: a broker that runs as master with id 0
    and served exactly this epoch took this promotion, and the step is done; otherwise it is
    sent again (an epoch the plug-in served already is refused, so a replay changes nothing)."""
    plan = run.plan
    broker = ctx.broker(step.broker_key)
    client = ctx.pool.get(broker.addr)
    role = plan.new_role or ""
    try:
        info = await get_plugin_info(client, timeout_seconds=ctx.config.probe.timeout_seconds)
    except RemotingError as exc:
        why = f"{broker.addr} did not answer PLUGIN_INFO: {describe_error(exc)}"
        _report(ctx, run, "fallback", why)
        raise StepFailed(why) from None
    if info is None:
        why = f"{broker.addr} has no plug-in now (it answered REQUEST_CODE_NOT_SUPPORTED)"
        _report(ctx, run, "fallback", why)
        raise StepFailed(why)
    if info.last_epoch == plan.epoch and info.broker_role in MASTER_ROLES and info.broker_id == 0:
        detail = (
            f"already promoted in place at epoch {plan.epoch}: it runs as {info.broker_role}, "
            "id 0 (taken before the watchdog's restart)"
        )
        _report(ctx, run, "done", detail)
        return detail
    try:
        secret = _secret(ctx)
        offset = await _settled_log_end(ctx, client, broker.addr)
    except StepFailed as exc:
        _report(ctx, run, "fallback", str(exc))
        raise
    try:
        promotion = await promote_in_place(
            client,
            secret=secret,
            role=role,
            expect_max_phy_offset=offset,
            epoch=plan.epoch,
            timeout_seconds=_timeout(ctx),
        )
    except (PluginRefused, PluginUnauthorized) as exc:
        # The plug-in left the broker as it was (a refusal restores replication first).
        _report(ctx, run, "refused", str(exc))
        raise StepFailed(str(exc)) from None
    except RemotingError as exc:
        # Unknown: it may have taken the promotion. The fallback restarts it from the
        # rewritten properties either way. The promotion point is the log end it was asked
        # at (the plug-in switches only there): what the fallback's stop would read later may
        # hold writes it took as master since, and a deposed master's log is judged by it.
        why = f"promote request to {broker.addr}: {describe_error(exc)} (outcome unknown)"
        _note_point(ctx, run, offset)
        _report(ctx, run, "fallback", why)
        raise StepFailed(why) from None
    _note_point(ctx, run, promotion.promotion_point)
    detail = (
        f"promoted in place as {promotion.broker_role} at offset {promotion.promotion_point} "
        f"(epoch {promotion.epoch}; no restart)"
    )
    _report(ctx, run, "done", detail)
    return detail


def _note_point(ctx: StepContext, run: FailoverRun, offset: int) -> None:
    """The promotion point, journaled once (as the restart path's stop notes it)."""
    if run.promotion_offset is None:
        run.promotion_offset = offset
        ctx.journal.append(run.failover_id, "promotion_offset", offset=offset)


def _ha_addr(addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return f"{host}:{int(port) + 1}"  # 4.x always serves HA on listenPort + 1


async def set_ha_master_step(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """SET_HA_MASTER on another slave: replicate from the new master now, without a restart.
    Not for a slave whose log reaches past the promotion point: the 4.x HA client cannot
    truncate, and would append the new master's bytes after a tail the new master lacks."""
    plan = run.plan
    slave = ctx.broker(step.broker_key)
    master = ctx.broker(plan.new_master_key or "")
    client = ctx.pool.get(slave.addr)
    timeout = ctx.config.probe.timeout_seconds
    # Unknown after a resumed run that never got the reply: the candidate's offset when
    # planned, which is not past the point (the careful side).
    point = run.promotion_offset if run.promotion_offset is not None else plan.candidate_offset
    try:
        table = await get_broker_runtime_info(client, timeout_seconds=timeout)
        end = int(table["commitLogMaxOffset"])
    except RemotingError as exc:
        raise StepFailed(f"{slave.addr} runtime info: {describe_error(exc)}") from None
    except (KeyError, ValueError) as exc:
        raise StepFailed(f"{slave.addr} runtime info has no usable log end: {exc}") from None
    if point is None or end > point:
        raise StepFailed(
            f"not re-pointed: its log ends at {end}, past the promotion point {point} "
            "(4.x replication cannot truncate it); check its store"
        )
    ha = _ha_addr(master.addr)
    try:
        await set_ha_master(
            client,
            secret=_secret(ctx),
            ha_master_address=ha,
            master_address=master.addr,
            epoch=plan.epoch,
            timeout_seconds=_timeout(ctx),
        )
    except RemotingError as exc:
        raise StepFailed(f"SET_HA_MASTER on {slave.addr}: {describe_error(exc)}") from None
    return f"replicates from {ha} (its log end {end} <= the promotion point {point})"


async def set_master_role_step(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """SET_MASTER_ROLE on the group's master: the plan's role in its running JVM, at the plan's
    epoch, then GET_BROKER_CONFIG shows it (what the prober and clients' brokers go by).

    Done already (a resumed run, or an operator was quicker) when its plug-in says it runs in
    that role; refused unless the broker is the master (id 0, a master role): a broker that
    became a slave since the decision must not be switched."""
    plan = run.plan
    broker = ctx.broker(step.broker_key)
    client = ctx.pool.get(broker.addr)
    role = plan.new_role or ""
    timeout = ctx.config.probe.timeout_seconds
    try:
        info = await get_plugin_info(client, timeout_seconds=timeout)
    except RemotingError as exc:
        raise StepFailed(
            f"{broker.addr} did not answer PLUGIN_INFO: {describe_error(exc)}"
        ) from None
    if info is None:
        raise StepFailed(f"{broker.addr} has no plug-in (it answered REQUEST_CODE_NOT_SUPPORTED)")
    if info.broker_role not in MASTER_ROLES or info.broker_id != 0:
        raise StepFailed(
            f"not switched: {broker.addr} runs as {info.broker_role} with id {info.broker_id}, "
            "not as the group's master"
        )
    if info.broker_role == role:
        return f"already {role} (its plug-in's last epoch {info.last_epoch})"
    try:
        await set_master_role(
            client, secret=_secret(ctx), role=role, epoch=plan.epoch, timeout_seconds=_timeout(ctx)
        )
    except RemotingError as exc:
        raise StepFailed(f"SET_MASTER_ROLE on {broker.addr}: {describe_error(exc)}") from None
    try:
        live = (await get_broker_config(client, timeout_seconds=timeout)).get("brokerRole")
    except RemotingError as exc:
        raise StepFailed(
            f"switched to {role}, but GET_BROKER_CONFIG of {broker.addr} failed: "
            f"{describe_error(exc)}"
        ) from None
    if live != role:
        raise StepFailed(f"switched to {role}, but GET_BROKER_CONFIG says brokerRole={live}")
    return (
        f"{info.broker_role} -> {role} in the running JVM (epoch {plan.epoch}; no restart), "
        f"GET_BROKER_CONFIG says brokerRole={live}"
    )
