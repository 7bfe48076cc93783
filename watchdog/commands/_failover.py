"""Operator-driven failover and ack: dry runs, asking a running daemon (or the leader through
etcd), or acting under the lock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..act import (
    Executor,
    FailoverResult,
    Journal,
    StateStore,
    new_failover_id,
    prepare_plan,
    recorded_masters,
)
from ..config import WatchdogConfig
from ..daemon import (
    ControlConnection,
    DaemonLock,
    FailoverRequest,
    LockHeld,
    SwitchoverRequest,
    acknowledge,
    canary_runner,
    control_socket_path,
    event_message,
    wire_json,
)
from ..decide import (
    GroupFailoverPolicy,
    Plan,
    Refusal,
    choose_candidate,
    is_switchover,
    manual_promote,
    operator_refusal,
    properties_diffs,
)
from ..detect import ClusterVerdict, DetectorState, GroupVerdict, detect
from ..hosts import Host, make_host
from ..model import ClusterSnapshot, format_utc
from ..observe import HookRunner, WebhookNotifier
from ..probe import Prober, client_pool
from ..remoting import ClientPool
from ._forward import asking_verb, forward, route, show_answers

__all__ = ["run_failover", "run_ack", "render_plan"]

Echo = Callable[[str], None]


async def _observe(
    config: WatchdogConfig, pool: ClientPool, *, cycles: int
) -> tuple[ClusterSnapshot, ClusterVerdict]:
    """Probe `cycles` times at the configured interval and judge, as the daemon would."""
    prober = Prober(config, pool)
    state = DetectorState.initial()
    recorded = recorded_masters(
        StateStore(config.state_dir).load(), Journal(config.state_dir), config
    )
    for name, master in recorded.items():
        state = state.with_master(name, master.addr, master.role)
    snapshot: ClusterSnapshot | None = None
    verdict: ClusterVerdict | None = None
    for i in range(cycles):
        if i:
            await asyncio.sleep(config.probe.interval_seconds)
        snapshot = await prober.snapshot()
        state, verdict = detect(state, snapshot, config.detect, config.probe)
    assert snapshot is not None and verdict is not None
    return snapshot, verdict


def render_plan(
    plan: Plan,
    group: GroupVerdict,
    files: Mapping[str, str | None],
    config: WatchdogConfig,
) -> str:
    if plan.kind == "restore_role":
        lines = _restore_header(plan, group)
    elif is_switchover(plan):
        lines = _switchover_header(plan, group)
    else:
        lines = _promotion_header(plan, group)
    lane = ""
    for i, step in enumerate(plan.steps, 1):
        # Steps of a lane run in order, lanes side by side; a step without one waits for all.
        if step.lane and not lane:
            lines.append("  side by side, each lane in order:")
        if step.lane and step.lane != lane:
            lines.append(f"    lane {step.lane}:")
        if lane and not step.lane:
            lines.append("  then, once every lane is done:")
        lane = step.lane
        pad = "    " if step.lane else ""
        lines.append(f"{pad}  {i}. [{step.kind}] {step.purpose}")
        if step.argv:
            lines.append(f"{pad}       on host {step.host}: {json.dumps(list(step.argv))}")
        elif step.path and step.kind == "rewrite":
            edits = ", ".join(f"{k}={v}" for k, v in step.edits)
            lines.append(f"{pad}       on host {step.host}: edit {step.path}: {edits}")
        if step.is_best_effort:
            lines.append(
                f"{pad}       (may fail, e.g. host unreachable: the confirm_fenced gate judges)"
            )
    if plan.fallback:
        where = (plan.in_place_index or 0) + 1
        lines.append(
            f"if the in-place promotion (step {where}) is refused or fails, instead of it "
            "(the restart path; then the steps after it):"
        )
        for step in plan.fallback:
            lines.append(f"  - [{step.kind}] {step.purpose}")
    if plan.rollback:
        lines.append(
            "if the candidate does not register as master within "
            f"{config.failover.promote_timeout_seconds:g} s, roll back:"
        )
        for step in plan.rollback:
            lines.append(f"  - [{step.kind}] {step.purpose}")
    diffs = properties_diffs(plan, files, config)
    if diffs:
        lines.append("")
        lines.append("properties changes:")
        lines.extend(d.rstrip("\n") for d in diffs)
    return "\n".join(lines)


def _promotion_header(plan: Plan, group: GroupVerdict) -> list[str]:
    """A promotion's (or fence's) dry-run lines before its steps."""
    lines = [
        f"group {plan.broker_name}: {group.state} — {group.reason}",
        f"decision: {plan.reason}",
        f"candidate: {plan.new_master_key}@{plan.new_master_addr} at offset "
        f"{plan.candidate_offset}, new role {plan.new_role}",
        "expected loss: "
        + (
            "unknown (master offset never seen)"
            if plan.expected_loss_bytes is None
            else f"{plan.expected_loss_bytes} bytes"
            + (
                ""
                if plan.max_loss_bytes in (None, plan.expected_loss_bytes)
                else f", up to {plan.max_loss_bytes} bytes with what the master may have "
                "written since it last answered"
            )
        ),
        f"old master: {plan.old_master_key}@{plan.old_master_addr}",
        "fence (no fence, no promotion): " + (dict(plan.details).get("fence") or "none needed"),
    ]
    path = dict(plan.details).get("path")
    if path:
        lines.append(f"promotion: {path}")
    order = dict(plan.details).get("order")
    if order:
        lines.append(f"fence and candidate: {order}")
    lines += [f"epoch after: {plan.epoch}", "", "steps:"]
    return lines


def _switchover_header(plan: Plan, group: GroupVerdict) -> list[str]:
    """A switchover's dry-run lines before its steps (decide/_switchover.py)."""
    details = dict(plan.details)
    lines = [
        f"group {plan.broker_name}: {group.state} — {group.reason}",
        f"decision: {plan.reason}",
        f"old master: {plan.old_master_key}@{plan.old_master_addr}",
        f"candidate: {plan.new_master_key}@{plan.new_master_addr}, new role {plan.new_role}",
        f"switchover: {details.get('switchover', '?')}",
        "fence (no fence, no promotion): " + (details.get("fence") or "none needed"),
    ]
    if details.get("path"):
        lines.append(f"promotion: {details['path']}")
    return [*lines, f"epoch after: {plan.epoch}", "", "steps:"]


def _restore_header(plan: Plan, group: GroupVerdict) -> list[str]:
    """A role restore's dry-run lines before its steps (decide/_restore.py)."""
    details = dict(plan.details)
    return [
        f"group {plan.broker_name}: {group.state} — {group.reason}",
        f"decision: {plan.reason}",
        f"master: {plan.new_master_key}@{plan.new_master_addr}, role "
        f"{details.get('role', '?')} (lowered by failover {details.get('lowered_by', '?')})",
        f"slave in sync: {details.get('slave', '?')}",
        f"through: its plug-in {details.get('plugin', '?')} (SET_MASTER_ROLE); no restart",
        f"epoch: {plan.epoch} (unchanged: the master stays)",
        "",
        "steps:",
    ]


async def run_failover(
    config: WatchdogConfig,
    broker_name: str,
    *,
    dry_run: bool,
    to_key: str | None,
    force: bool,
    as_json: bool,
    echo: Echo,
    fenced_by_operator: bool = False,
    allow_loss: bool = False,
    assume_yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    if force and not dry_run:
        refused = await _check_live_master(
            config, broker_name, to_key, allow_loss, assume_yes, confirm, echo
        )
        if refused is not None:
            return refused
    if fenced_by_operator:
        echo(
            "WARNING: --fenced-by-operator: you confirm the old master can no longer take "
            "writes (powered off, cut off from every client). If it still can, the group will "
            "have two masters and acknowledged messages will be lost. Recorded in the journal."
        )
    if not dry_run:
        request = FailoverRequest(broker_name, to_key, force, fenced_by_operator)
        to = await route(config)
        if to.refusal is not None:
            return _refused(to.refusal, as_json, echo)
        if to.leader is not None:  # its state dir, not ours, has the block it leaves
            asked = request.to_json()
            return await forward(config, to.leader, asked, as_json, echo, noun="failover")
        lock = DaemonLock(config.state_dir)
        try:
            lock.acquire()
        except LockHeld:
            code = await _ask_daemon(config, request, as_json, echo)
        else:
            try:
                code = await _plan_and_maybe_run(
                    config, broker_name, dry_run, to_key, force, as_json, echo, fenced_by_operator
                )
            finally:
                lock.release()
        if code == 0 and not as_json:
            _say_block(config, broker_name, echo)
        return code
    return await _plan_and_maybe_run(
        config, broker_name, dry_run, to_key, force, as_json, echo, fenced_by_operator
    )


# How long a forced failover of a master that answers waits for the candidate to catch up.
CATCH_UP_SECONDS = 30.0


async def _check_live_master(
    config: WatchdogConfig,
    broker_name: str,
    to_key: str | None,
    allow_loss: bool,
    assume_yes: bool,
    confirm: Callable[[str], bool] | None,
    echo: Echo,
) -> int | None:
    """`--force` on a master that answers: wait (bounded) until the candidate holds the
    master's log, refuse a lag without --allow-loss, and ask (or need --yes) before stopping a
    live master. None: go on; else the exit code."""
    pool = client_pool(config)
    try:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while True:
            snapshot, verdict = await _observe(config, pool, cycles=1)
            group = next((g for g in verdict.groups if g.broker_name == broker_name), None)
            master = None if group is None else snapshot.broker_at(group.master_addr or "")
            if group is None or group.is_odown or master is None or not master.is_up:
                return None  # not a live master: the usual rules apply
            chosen, rejected = choose_candidate(
                snapshot, group, config.brokers, GroupFailoverPolicy(), only_key=to_key
            )
            if chosen is None:
                return None  # refused later with the reasons
            obs, offset, _ = chosen
            behind = max((master.commitlog_max_offset or 0) - offset, 0)
            if behind == 0 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(config.probe.interval_seconds)
    finally:
        await pool.close_all()
    who = f"{group.master_key}@{group.master_addr}"
    if behind and not allow_loss:
        echo(
            f"refused: the master {who} answers and {obs.key} is still {behind} bytes behind it "
            f"after {CATCH_UP_SECONDS:g} s; promoting now loses them (--allow-loss to accept)"
        )
        return 1
    question = (
        f"The master {who} answers. Stop it, promote {obs.key}@{obs.addr}"
        + (f" ({behind} bytes behind: they will be lost)" if behind else " (caught up)")
        + " and rejoin the old master as its slave?"
    )
    if assume_yes:
        return None
    if confirm is None:
        echo(f"refused: {question} Confirm with --yes (no terminal to ask on).")
        return 1
    if not confirm(question):
        echo("not confirmed; nothing was changed")
        return 1
    return None


async def _plan_and_maybe_run(
    config: WatchdogConfig,
    broker_name: str,
    dry_run: bool,
    to_key: str | None,
    force: bool,
    as_json: bool,
    echo: Echo,
    fenced_by_operator: bool = False,
) -> int:
    pool = client_pool(config)
    hosts: dict[str, Host] = {n: make_host(n, h) for n, h in config.hosts.items()}
    try:
        # A real run judges over down_after like the daemon; a dry run needs one look.
        cycles = (
            1
            if (dry_run or force)
            else int(config.detect.down_after_seconds / config.probe.interval_seconds) + 2
        )
        snapshot, verdict = await _observe(config, pool, cycles=cycles)
        group = next((g for g in verdict.groups if g.broker_name == broker_name), None)
        if group is None:
            echo(f"error: {broker_name} not seen in the cluster")
            return 2
        store = StateStore(config.state_dir)
        state = store.load()
        if not dry_run:
            record = state.group(broker_name)
            refusal = operator_refusal(
                group, record.blocked_until, record.block_reason, force=force, now=time.time()
            )
            if refusal is not None:
                return _refused(refusal, as_json, echo)
        decision = manual_promote(
            snapshot,
            group,
            config,
            to_key=to_key,
            force=force,
            now=time.time(),
            fenced_by_operator=fenced_by_operator,
        )
        if isinstance(decision, Refusal):
            return _refused(decision.reason, as_json, echo)
        plan, files = await prepare_plan(decision, config, snapshot, hosts, state, pool=pool)
        if isinstance(plan, Refusal):
            return _refused(plan.reason, as_json, echo)
        if dry_run:
            if as_json:
                echo(
                    json.dumps(
                        {
                            "dry_run": True,
                            "group_state": str(group.state),
                            "group_reason": group.reason,
                            "plan": plan.to_json(),
                            "diffs": properties_diffs(plan, files, config),
                        },
                        indent=2,
                    )
                )
            else:
                echo("DRY RUN — nothing will be changed")
                echo(render_plan(plan, group, files, config))
            return 0
        return await _execute_locally(config, plan, hosts, pool, store, as_json, echo)
    finally:
        await pool.close_all()
        for host in hosts.values():
            await host.close()


def _say_block(config: WatchdogConfig, broker_name: str, echo: Echo) -> None:
    """After a failover: the anti-flap block it left, so a second fault is no surprise."""
    record = StateStore(config.state_dir).peek().group(broker_name)
    if record.blocked_until is None or not record.is_blocked(time.time()):
        return
    until = format_utc(record.blocked_until)
    echo(
        f"automatic failovers of {broker_name} are blocked until {until} ({record.block_reason}); "
        f"`rmq-watchdog ack -c FILE --broker-name {broker_name}` lifts the block"
    )


def _refused(reason: str, as_json: bool, echo: Echo) -> int:
    if as_json:
        echo(json.dumps({"refused": reason}))
    else:
        echo(f"refused: {reason}")
    return 1


async def _execute_locally(
    config: WatchdogConfig,
    plan: Plan,
    hosts: Mapping[str, Host],
    pool: ClientPool,
    store: StateStore,
    as_json: bool,
    echo: Echo,
    *,
    noun: str = "failover",
    summary: Callable[[FailoverResult], str] | None = None,
) -> int:
    def emit(event: str, fields: Mapping[str, Any]) -> None:
        if as_json:
            echo(wire_json(event_message(event, fields)))
            return
        if event in ("step_done", "step_skipped", "step_failed"):
            rec = fields["record"]
            echo(
                f"  step {rec.index + 1} {rec.status} ({rec.duration_seconds:.1f} s): "
                f"{fields['step'].purpose} — {rec.detail}"
            )
        elif event == "failover_started":
            echo(f"{noun} {fields['failover_id']}: {plan.reason}")
        elif event == "rollback_started":
            echo(f"rolling back: {fields['reason']}")
        elif event == "fallback_started":
            echo(f"falling back to a restart: {fields['reason']}")
        elif event == "inplace_promotion":
            echo(f"  in-place promotion {fields['result']}: {fields['detail']}")

    failover_id = new_failover_id(plan.broker_name)
    notifier = WebhookNotifier(config.notify.webhook)
    executor = Executor(
        config,
        hosts,
        pool,
        store,
        Journal(config.state_dir),
        canary=canary_runner(pool),
        emit=emit,
        notifier=notifier,
        hooks=HookRunner(config.hooks),
    )
    try:
        result: FailoverResult = await executor.run(plan, failover_id)
    finally:
        await notifier.aclose()
    if not as_json:
        echo(f"{noun} {result.outcome} in {result.duration_seconds:.1f} s: {result.detail}")
        if summary is not None:
            echo(summary(result))
    return 0 if result.is_success else 1


async def _ask_daemon(
    config: WatchdogConfig,
    request: FailoverRequest | SwitchoverRequest,
    as_json: bool,
    echo: Echo,
    *,
    noun: str = "failover",
    seen: list[dict[str, Any]] | None = None,
) -> int:
    """Send `request` to the running daemon and show its answers; `seen` collects them."""
    try:
        daemon = await ControlConnection.open(config)
    except OSError as exc:
        path = control_socket_path(config)
        echo(f"error: a daemon holds the lock but its control socket {path} does not answer: {exc}")
        return 2
    try:
        await daemon.send(request.to_json())
        if not as_json:
            echo(f"a running daemon holds the lock; asking it to {asking_verb(noun)}")
        return await show_answers(daemon.answers(), as_json, echo, noun=noun, seen=seen)
    finally:
        daemon.close()


async def run_ack(config: WatchdogConfig, broker_name: str, *, echo: Echo) -> int:
    """Lift a group's block: through the running daemon, or under the lock when none runs;
    with [etcd], the leader's (through etcd when it runs elsewhere)."""
    to = await route(config)
    if to.refusal is not None:
        return _refused(to.refusal, False, echo)
    if to.leader is not None:
        request = {"op": "ack", "broker_name": broker_name}
        return await forward(config, to.leader, request, False, echo, noun="ack")
    lock = DaemonLock(config.state_dir)
    try:
        lock.acquire()
    except LockHeld:
        try:
            daemon = await ControlConnection.open(config)
        except OSError as exc:
            path = control_socket_path(config)
            echo(f"error: a daemon holds the lock but its control socket {path} is silent: {exc}")
            return 2
        try:
            await daemon.send({"op": "ack", "broker_name": broker_name})
            answer = await daemon.answer() or {}
        finally:
            daemon.close()
    else:
        try:
            answer = acknowledge(config, StateStore(config.state_dir), broker_name)
        finally:
            lock.release()
    echo(answer.get("message") or answer.get("error") or str(answer))
    return 0 if answer.get("ok") else 1
