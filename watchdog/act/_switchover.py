"""A planned switchover's own steps (the master's writes stopped and given back, the candidate
caught up, the old master's rejoin verified) and its preparation: files, plug-ins, the plan."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

from ..config import WatchdogConfig
from ..decide import (
    Plan,
    PluginAnswer,
    Promote,
    Refusal,
    Step,
    StepKind,
    catch_up_bound,
    plan_switchover,
)
from ..hosts import Host, HostError
from ..model import MASTER_ROLES
from ..remoting import (
    ClientPool,
    RemotingError,
    describe_error,
    get_broker_config,
    get_broker_runtime_info,
    update_broker_config,
)
from ._fence import restore_epoch_record
from ._prepare import ask_plugins, read_group_files
from ._run import FailoverRun, StepContext, StepFailed
from ._state import WatchdogState
from ._verify import answers, group_on_nameservers

__all__ = ["SWITCHOVER_STEPS", "prepare_switchover", "switchover_step"]

SWITCHOVER_STEPS = frozenset(
    {StepKind.STOP_WRITES, StepKind.CATCH_UP, StepKind.RESTORE_WRITES, StepKind.VERIFY_REJOIN}
)

# UPDATE_BROKER_CONFIG with brokerPermission registers the broker with every nameserver before
# it answers (synchronously, each waiting up to registerBrokerTimeoutMills for a dead one).
_UPDATE_TIMEOUT_SECONDS = 10.0
# How far apart the catch-up's reads are: with writes stopped, two equal reads in a row mean
# the candidate holds the master's whole log; each poll is write pause.
_EQUAL_POLL_SECONDS = 0.1
_APPROACH_POLL_SECONDS = 0.3


async def prepare_switchover(
    decision: Promote,
    config: WatchdogConfig,
    hosts: Mapping[str, Host],
    state: WatchdogState,
    pool: ClientPool,
    *,
    catch_up_timeout_seconds: float,
) -> tuple[Plan | Refusal, dict[str, str | None]]:
    """Read the group's properties files (and with [failover] promotion = "inplace" the
    PLUGIN_INFO of every member but the master) and plan the switchover; the files for diffs."""
    name = decision.broker_name
    files = await read_group_files(config, hosts, name)
    plugins: dict[str, PluginAnswer] | None = None
    if config.failover.promotion == "inplace":
        addrs = {b.key: b.addr for b in config.group(name) if b.key != decision.old_master_key}
        plugins = await ask_plugins(config, pool, addrs)
    plan = plan_switchover(
        decision,
        config,
        files,
        state.group(name).epoch,
        catch_up_timeout_seconds=catch_up_timeout_seconds,
        plugins=plugins,
    )
    return plan, files


async def switchover_step(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """Run one of SWITCHOVER_STEPS; its detail, or StepFailed."""
    if step.kind is StepKind.STOP_WRITES:
        return await _stop_writes(ctx, run, step)
    if step.kind is StepKind.CATCH_UP:
        return await _catch_up(ctx, step)
    if step.kind is StepKind.RESTORE_WRITES:
        return await _restore_writes(ctx, run, step)
    return await _verify_rejoin(ctx, run, step)


async def _config(ctx: StepContext, addr: str) -> dict[str, str]:
    try:
        return await get_broker_config(
            ctx.pool.get(addr), timeout_seconds=ctx.config.probe.timeout_seconds
        )
    except RemotingError as exc:
        raise StepFailed(f"{addr} config: {describe_error(exc)}") from None


async def _log_end(ctx: StepContext, addr: str) -> int:
    try:
        table = await get_broker_runtime_info(
            ctx.pool.get(addr), timeout_seconds=ctx.config.probe.timeout_seconds
        )
        return int(table["commitLogMaxOffset"])
    except RemotingError as exc:
        raise StepFailed(f"{addr} did not answer: {describe_error(exc)}") from None
    except (KeyError, ValueError) as exc:
        raise StepFailed(f"{addr} runtime info has no usable log end: {exc}") from None


async def _update(ctx: StepContext, addr: str, values: Mapping[str, str]) -> None:
    timeout = min(_UPDATE_TIMEOUT_SECONDS, ctx.config.failover.step_timeout_seconds)
    try:
        await update_broker_config(ctx.pool.get(addr), values, timeout_seconds=timeout)
    except RemotingError as exc:
        raise StepFailed(f"UPDATE_BROKER_CONFIG on {addr}: {describe_error(exc)}") from None


async def _original(ctx: StepContext, run: FailoverRun, step: Step, host: Host) -> str:
    """The master's properties file as it was before the switchover: kept beside it once (the
    run's backup of that broker, which the fence's rewrite and the rollback use too)."""
    backup = run.backups.get(step.broker_key)
    try:
        if backup is not None:
            return (await host.read_file(backup)).decode("latin-1")
        text = (await host.read_file(step.path)).decode("latin-1")
        backup = f"{step.path}.rmq-watchdog-{run.failover_id}.bak"
        await host.write_file(backup, text.encode("latin-1"))
    except HostError as exc:
        raise StepFailed(f"{step.broker_key}'s properties: {exc}") from None
    run.backups[step.broker_key] = backup
    ctx.journal.append(run.failover_id, "backup_written", broker_key=step.broker_key, backup=backup)
    return text


async def _put_back(host: Host, path: str, text: str) -> bool:
    """Write `text` to `path` unless it holds it already; whether it had to."""
    if (await host.read_file(path)).decode("latin-1") == text:
        return False
    await host.write_file(path, text.encode("latin-1"))
    return True


async def _stop_writes(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """STOP_WRITES: the master refuses writes from now on, in its running JVM. Its file is
    backed up first and put back right after the request (which rewrites it whole, ~180 keys
    in hash order, its comments gone): a restart must find the operator's file. Again after a
    crash, the request is not repeated once the broker runs with the edits."""
    broker = ctx.broker(step.broker_key)
    host = ctx.hosts[step.host]
    original = await _original(ctx, run, step, host)
    live = await _config(ctx, broker.addr)
    edits = dict(step.edits)
    is_stopped = all(live.get(k) == v for k, v in edits.items()) and live.get("brokerId") == "0"
    if not is_stopped:
        if live.get("brokerId") != "0" or live.get("brokerRole") not in MASTER_ROLES:
            raise StepFailed(
                f"{broker.addr} runs as {live.get('brokerRole')} with id {live.get('brokerId')}, "
                "not as the group's master: not touched"
            )
        try:
            # Written back as it is first: a file the request's rewrite could not be undone
            # in (a read-only mount, another owner) stops the switchover before any write does.
            await host.write_file(step.path, original.encode("latin-1"))
        except HostError as exc:
            raise StepFailed(f"writes not stopped: {step.path} cannot be written: {exc}") from None
        await _update(ctx, broker.addr, edits)
    end = await _log_end(ctx, broker.addr)
    ctx.journal.append(run.failover_id, "writes_stopped", broker_key=broker.key, offset=end)
    try:
        put_back = await _put_back(host, step.path, original)
    except HostError as exc:
        raise StepFailed(f"writes stopped, but {step.path} not put back: {exc}") from None
    live = await _config(ctx, broker.addr)
    if any(live.get(k) != v for k, v in edits.items()):
        raise StepFailed(
            f"{broker.addr} says brokerRole={live.get('brokerRole')}, brokerPermission="
            f"{live.get('brokerPermission')} after the request"
        )
    file = f"{step.path} put back as it was" if put_back else f"{step.path} unchanged"
    return (
        f"writes stopped at log end {end}: brokerRole=SLAVE, brokerPermission=4 in its running "
        f"JVM (id 0 kept, replication goes on); {file}"
    )


async def _catch_up(ctx: StepContext, step: Step) -> str:
    """CATCH_UP: wait within its bound until the candidate's log end is within `within_bytes`
    of the master's, or (0) equal to it on two reads in a row."""
    bound = catch_up_bound(step)
    slave, master = ctx.broker(step.broker_key), ctx.broker(bound.master_key)
    deadline = ctx.clock() + bound.timeout_seconds
    equal_at: int | None = None
    last: int | None = None  # the slave's log end at the read before
    seen = "no answer yet"
    while True:
        ends = await asyncio.gather(
            _log_end(ctx, master.addr), _log_end(ctx, slave.addr), return_exceptions=True
        )
        m, s = ends
        if isinstance(m, int) and isinstance(s, int):
            # Close enough, and replicating: level with the master, or its log grew since the
            # read before (a slave that has not connected yet would stall the write pause).
            is_fed = s == m or (last is not None and s > last)
            seen = f"its log end {s}, {master.key}'s {m}: {m - s} bytes behind" + (
                "" if is_fed or last is None else ", and not growing"
            )
            if bound.within_bytes and m - s <= bound.within_bytes and is_fed:
                return f"{slave.key} within {bound.within_bytes} bytes of {master.key} ({seen})"
            if not bound.within_bytes and s == m and equal_at == m:
                return f"{slave.key} holds {master.key}'s whole log: both end at {m}"
            equal_at = m if s == m else None
            last = s
        else:
            seen = "; ".join(str(e) for e in ends if isinstance(e, BaseException))
            equal_at = last = None
        if ctx.clock() >= deadline:
            what = (
                f"replicate to within {bound.within_bytes} bytes of {master.key}'s log end"
                if bound.within_bytes
                else f"reach {master.key}'s log end"
            )
            raise StepFailed(
                f"{slave.key}@{slave.addr} did not {what} within {bound.timeout_seconds:g} s "
                f"({seen})"
            )
        await asyncio.sleep(_APPROACH_POLL_SECONDS if bound.within_bytes else _EQUAL_POLL_SECONDS)


async def _restore_writes(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """RESTORE_WRITES: the old master as it was before the switchover, whatever of it ran: its
    file and .epoch record put back (after the fence's rewrite or the write stop's request),
    started again when it does not answer, then the write stop undone in its running JVM."""
    broker = ctx.broker(step.broker_key)
    host = ctx.hosts[step.host]
    said: list[str] = []
    backup = run.backups.get(broker.key)
    original: str | None = None
    try:
        if backup is not None:
            original = (await host.read_file(backup)).decode("latin-1")
            if await _put_back(host, step.path, original):
                said.append(f"{step.path} put back")
    except HostError as exc:
        raise StepFailed(f"{step.path} not put back: {exc}") from None
    epoch = await restore_epoch_record(ctx, run, step, host)
    if epoch:
        said.append(epoch.removeprefix("; "))
    if not await answers(ctx, broker.addr, attempts=2):
        said.append(await _start(ctx, step, host, broker.addr))
    live = await _config(ctx, broker.addr)
    wanted = dict(step.edits)
    if any(live.get(k) != v for k, v in wanted.items()):
        if live.get("brokerId") != "0":
            raise StepFailed(
                f"{broker.addr} runs as {live.get('brokerRole')} with id {live.get('brokerId')}: "
                "its writes cannot be given back without a restart"
            )
        await _update(ctx, broker.addr, wanted)
        if original is not None:
            try:
                await _put_back(host, step.path, original)  # the request rewrote it whole
            except HostError as exc:
                raise StepFailed(f"writes back, but {step.path} not put back: {exc}") from None
        live = await _config(ctx, broker.addr)
        if any(live.get(k) != v for k, v in wanted.items()):
            raise StepFailed(
                f"{broker.addr} still says brokerRole={live.get('brokerRole')}, "
                f"brokerPermission={live.get('brokerPermission')}"
            )
        said.append("brokerRole=" + wanted["brokerRole"] + ", brokerPermission="
                    + wanted["brokerPermission"] + " again in its running JVM")  # fmt: skip
    else:
        said.append(f"it takes writes as {live.get('brokerRole')}")
    return f"{broker.key} takes writes again: " + "; ".join(said)


async def _start(ctx: StepContext, step: Step, host: Host, addr: str) -> str:
    timeout = ctx.config.failover.step_timeout_seconds
    try:
        result = await host.run(step.argv, timeout_seconds=timeout)
    except HostError as exc:
        raise StepFailed(f"start on host {host.name}: {exc}") from None
    if not result.is_ok:
        raise StepFailed(f"start command {result.summary()}")
    deadline = ctx.clock() + timeout
    while not await answers(ctx, addr):
        if ctx.clock() >= deadline:
            raise StepFailed(f"{addr} does not answer after its start")
        await asyncio.sleep(0.2)
    return "started again"


async def _verify_rejoin(ctx: StepContext, run: FailoverRun, step: Step) -> str:
    """VERIFY_REJOIN: every answering nameserver (a majority) lists the new master as id 0,
    and the old master runs as a slave whose log end reaches the new master's (as read when
    the step began: under load it keeps moving), within promote_timeout."""
    plan = run.plan
    old = ctx.broker(step.broker_key)
    new = ctx.broker(plan.new_master_key or "")
    timeout = ctx.config.failover.promote_timeout_seconds
    deadline = ctx.clock() + timeout
    target: int | None = None
    seen = "nothing read yet"
    while True:
        try:
            if target is None:
                target = await _log_end(ctx, new.addr)
            listed = await group_on_nameservers(ctx, plan.broker_name)
            answered = [ids for _, ids in listed if not isinstance(ids, RemotingError)]
            masters = sum(1 for ids in answered if ids.get(0) == new.addr)
            role = (await _config(ctx, old.addr)).get("brokerRole")
            end = await _log_end(ctx, old.addr)
            seen = (
                f"{masters}/{len(listed)} nameservers list {new.addr} as id 0; {old.key} runs "
                f"as {role}, its log end {end} of {target}"
            )
            is_listed = masters == len(answered) and masters * 2 > len(listed)
            if is_listed and role == "SLAVE" and end >= target:
                return f"{old.key} replicates from {new.key}: {seen}" + _clean_rejoin(ctx, run)
        except StepFailed as exc:
            seen = str(exc)
        if ctx.clock() >= deadline:
            raise StepFailed(f"not verified within {timeout:g} s: {seen}")
        await asyncio.sleep(0.2)


def _clean_rejoin(ctx: StepContext, run: FailoverRun) -> str:
    """The old master's rejoin needs no later check: its log ended where its writes stopped,
    within the promotion point, and it now replicates the new master's writes after it. Left
    in state.json, the check would judge it by its log end when a daemon next starts (past the
    point by then) and move its store aside. Kept when the journal cannot say."""
    plan = run.plan
    stopped = next(
        (
            int(e["offset"])
            for e in ctx.journal.read(run.failover_id)
            if e.get("event") == "writes_stopped"
        ),
        None,
    )
    point = run.promotion_offset
    state = ctx.store.load()
    record = state.group(plan.broker_name)
    if record.rejoin_check_key != plan.old_master_key:
        return ""
    if stopped is None or point is None or stopped > point:
        return f"; its rejoin is left to the daemon's check (stopped at {stopped}, point {point})"
    ctx.store.save(state.with_group(plan.broker_name, replace(record, rejoin_check_key=None)))
    return (
        f"; its log ended at {stopped} when its writes stopped, within the promotion point "
        f"{point}: a clean rejoin, no check left"
    )
