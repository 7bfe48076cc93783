"""`switchover`: move a live master's role to a slave with nothing acknowledged lost; a dry run,
a request to the running daemon, or a run of its own under the state-dir lock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..act import Journal, StateStore, prepare_switchover
from ..config import WatchdogConfig
from ..daemon import DaemonLock, LockHeld, SwitchoverRequest
from ..decide import Plan, Promote, Refusal, decide_switchover, properties_diffs
from ..detect import GroupVerdict
from ..hosts import Host, make_host
from ..observe import write_pause_seconds
from ..probe import client_pool
from ._failover import _ask_daemon, _execute_locally, _observe, _refused, render_plan
from ._forward import forward, route

__all__ = ["run_switchover", "write_pause_seconds"]

Echo = Callable[[str], None]


def _pause_line(config: WatchdogConfig, failover_id: str | None) -> str:
    """The write pause, read from the run's journal (the daemon's or this process's: the same
    state dir)."""
    try:
        entries = Journal(config.state_dir).read(failover_id) if failover_id else []
    except OSError:
        entries = []
    pause = write_pause_seconds(entries)
    if pause is None:
        return "writes were not stopped"
    return (
        f"write pause: {pause:.2f} s (from the write stop until the new master was listed as "
        "id 0 on every nameserver, or the old master took writes again)"
    )


async def _look(
    config: WatchdogConfig, broker_name: str, to_key: str | None
) -> tuple[GroupVerdict | None, Promote | Refusal]:
    """One probe cycle and the switchover it allows (the CLI's own view, for its question)."""
    pool = client_pool(config)
    try:
        snapshot, verdict = await _observe(config, pool, cycles=1)
    finally:
        await pool.close_all()
    group = verdict.group(broker_name)
    if group is None:
        return None, Refusal(broker_name, f"{broker_name} not seen in the cluster")
    return group, decide_switchover(snapshot, group, config, to_key=to_key, now=time.time())


def _question(decision: Promote, catch_up_timeout_seconds: float) -> str:
    old = f"{decision.old_master_key}@{decision.old_master_addr}"
    new = f"{decision.candidate_key}@{decision.candidate_addr}"
    return (
        f"Stop new writes on {old} until {new} holds its whole log (at most "
        f"{catch_up_timeout_seconds:g} s, else refused and writes given back), promote {new} "
        f"and rejoin {old} as its slave?"
    )


def _is_confirmed(
    decision: Promote,
    catch_up_timeout_seconds: float,
    assume_yes: bool,
    confirm: Callable[[str], bool] | None,
    echo: Echo,
) -> bool:
    if assume_yes:
        return True
    question = _question(decision, catch_up_timeout_seconds)
    if confirm is None:
        echo(f"refused: {question} Confirm with --yes (no terminal to ask on).")
        return False
    if not confirm(question):
        echo("not confirmed; nothing was changed")
        return False
    return True


async def run_switchover(
    config: WatchdogConfig,
    broker_name: str,
    *,
    to_key: str | None,
    dry_run: bool,
    as_json: bool,
    echo: Echo,
    catch_up_timeout_seconds: float = 30.0,
    assume_yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    """The switchover of `broker_name`'s master: printed (`dry_run`), asked of the running
    daemon (one actor; with [etcd] the leader, through etcd when it runs elsewhere), or run
    here under the state-dir lock when no daemon runs."""
    if dry_run:
        return await _plan_here(
            config, broker_name, to_key, catch_up_timeout_seconds, as_json, echo
        )
    to = await route(config)
    if to.refusal is not None:
        return _refused(to.refusal, as_json, echo)
    lock = DaemonLock(config.state_dir)
    if to.leader is None:
        try:
            lock.acquire()
        except LockHeld:
            pass
        else:
            try:
                return await _plan_here(
                    config,
                    broker_name,
                    to_key,
                    catch_up_timeout_seconds,
                    as_json,
                    echo,
                    run=(assume_yes, confirm),
                )
            finally:
                lock.release()
    # A daemon runs the switchover: this host's (it holds the lock), or the leader elsewhere.
    _, decision = await _look(config, broker_name, to_key)
    if isinstance(decision, Refusal):
        return _refused(decision.reason, as_json, echo)
    if not _is_confirmed(decision, catch_up_timeout_seconds, assume_yes, confirm, echo):
        return 1
    request = SwitchoverRequest(broker_name, to_key, catch_up_timeout_seconds)
    if to.leader is not None:  # its state dir, not ours, has the journal the pause is read from
        return await forward(config, to.leader, request.to_json(), as_json, echo, noun="switchover")
    seen: list[dict[str, Any]] = []
    code = await _ask_daemon(config, request, as_json, echo, noun="switchover", seen=seen)
    accepted = next((m for m in seen if m.get("event") == "accepted"), None)
    if not as_json and accepted is not None:
        echo(_pause_line(config, str(accepted.get("failover_id"))))
    return code


async def _plan_here(
    config: WatchdogConfig,
    broker_name: str,
    to_key: str | None,
    catch_up_timeout_seconds: float,
    as_json: bool,
    echo: Echo,
    *,
    run: tuple[bool, Callable[[str], bool] | None] | None = None,
) -> int:
    """Plan on this process's own probe; print it (`run` None: the dry run) or, confirmed
    (`run` = (assume_yes, confirm)), execute it here."""
    group, decision = await _look(config, broker_name, to_key)
    if isinstance(decision, Refusal):
        return _refused(decision.reason, as_json, echo)
    assert group is not None
    pool = client_pool(config)
    hosts: dict[str, Host] = {n: make_host(n, h) for n, h in config.hosts.items()}
    try:
        store = StateStore(config.state_dir)
        plan, files = await prepare_switchover(
            decision,
            config,
            hosts,
            store.load(),
            pool,
            catch_up_timeout_seconds=catch_up_timeout_seconds,
        )
        if isinstance(plan, Refusal):
            return _refused(plan.reason, as_json, echo)
        if run is None:
            _print_plan(plan, group, files, config, as_json, echo)
            return 0
        assume_yes, confirm = run
        if not _is_confirmed(decision, catch_up_timeout_seconds, assume_yes, confirm, echo):
            return 1
        return await _execute_locally(
            config,
            plan,
            hosts,
            pool,
            store,
            as_json,
            echo,
            noun="switchover",
            summary=lambda result: _pause_line(config, result.failover_id),
        )
    finally:
        await pool.close_all()
        for host in hosts.values():
            await host.close()


def _print_plan(
    plan: Plan,
    group: GroupVerdict,
    files: Mapping[str, str | None],
    config: WatchdogConfig,
    as_json: bool,
    echo: Echo,
) -> None:
    if as_json:
        doc = {
            "dry_run": True,
            "group_state": str(group.state),
            "group_reason": group.reason,
            "plan": plan.to_json(),
            "diffs": properties_diffs(plan, files, config),
        }
        echo(json.dumps(doc, indent=2))
        return
    echo("DRY RUN — nothing will be changed")
    echo(render_plan(plan, group, files, config))
