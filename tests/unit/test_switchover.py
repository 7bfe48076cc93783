"""The planned switchover as values: who may be switched (decide_switchover), the steps around
the promotion (plan_switchover), what the executor does after each result and after every
interruption (act/_progress.py), and the write pause read from a run's records."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.unit._worlds import A0 as ADDR0
from tests.unit._worlds import A1 as ADDR1
from tests.unit._worlds import NS1, NS2, Replay, World, seconds
from tests.unit.test_progress import (
    Script,
    check_interrupted,
    check_interrupted_lanes,
    highest,
    lowest,
    play,
)
from watchdog.act._progress import (
    Finish,
    Progress,
    RunStep,
    Start,
    StepStatus,
    next_action,
    retry_budget_seconds,
)
from watchdog.config import WatchdogConfig, parse_config
from watchdog.daemon import Send, SwitchoverRequest, start_control_server, wire_json
from watchdog.decide import (
    WRITE_STOP_EDITS,
    Plan,
    PluginAnswer,
    Promote,
    Refusal,
    StepKind,
    catch_up_bound,
    decide_switchover,
    is_switchover,
    plan_promotion,
    plan_switchover,
    writes_back,
)
from watchdog.observe import write_pause_seconds
from watchdog.remoting import PluginInfo

A0, A1 = "broker-a:0", "broker-a:1"
NOW = 1_700_000_013.0
MIB = 1_048_576


def config(*, kill: bool = True, fence_command: bool = False, **failover: Any) -> WatchdogConfig:
    return parse_config(
        {
            "cluster_name": "XdclassCluster",
            "nameservers": [NS1, NS2],
            "state_dir": "/nonexistent",
            "hosts": {"h": {"kind": "local", "fence_command": ["fence"] if fence_command else []}},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": addr,
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": "h",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                    **({"kill": ["kill-broker", str(i)]} if kill else {}),
                }
                for i, addr in ((0, ADDR0), (1, ADDR1))
            ],
            "failover": failover,
        }
    )


def judged(world: World) -> tuple[Any, Any]:
    replay = Replay()
    verdict = replay.run(world, seconds(0, 13.0))
    (group,) = verdict.groups
    return replay.snapshots[-1], group


# --------------------------------------------------------------------------- who may switch

HEALTHY = World(base_offset=MIB)
SWITCH = Promote(
    broker_name="broker-a",
    old_master_key=A0,
    old_master_addr=ADDR0,
    candidate_key=A1,
    candidate_addr=ADDR1,
    candidate_offset=MIB + 1300,
    expected_loss_bytes=0,
    max_loss_bytes=0,
    new_role="ASYNC_MASTER",
    reason=f"switchover of broker-a: {A0}@{ADDR0} -> {A1}@{ADDR1} (an operator's planned "
    f"switch; {A0}@{ADDR0} answers as ASYNC_MASTER; {A1} 0 bytes behind now)",
    old_master_registered_on=2,
    deregistered_for_seconds=None,
    master_write_rate=0.0,
    requires_master_down=False,
    decided_at=NOW,
)
NOT_UP = (
    "a switchover moves the role away from a master that answers, and broker-a has none "
)

DECISIONS: list[tuple[str, World, str | None, Promote | str]] = [
    ("a healthy group: the slave takes the role, nothing lost", HEALTHY, None, SWITCH),
    ("--to the slave", HEALTHY, A1, SWITCH),
    (
        "a lagging slave: switched all the same (the switchover waits for it), the lag said",
        World(base_offset=MIB, slave_lag_bytes=5000),
        None,
        replace(
            SWITCH,
            candidate_offset=MIB + 1300 - 5000,
            reason=SWITCH.reason.replace("0 bytes behind now", "5000 bytes behind now"),
        ),
    ),
    (
        "a SYNC_MASTER keeps its role in the decision",
        World(base_offset=MIB, master_role="SYNC_MASTER"),
        None,
        replace(
            SWITCH,
            new_role="SYNC_MASTER",
            reason=SWITCH.reason.replace("as ASYNC_MASTER", "as SYNC_MASTER"),
        ),
    ),
    (
        "a dead master is failover's",
        World(master_down=(10.5, 1e9), deregistered_by=(NS1, NS2), base_offset=MIB),
        None,
        NOT_UP,
    ),
    (
        "no slave answers",
        World(base_offset=MIB, slave_down=(5.0, 1e9)),
        None,
        "no slave of broker-a can be promoted: broker-a:1 not answering",
    ),
    (
        "--to the master itself",
        HEALTHY,
        A0,
        "no slave of broker-a can be promoted: broker-a:0 is not a slave of broker-a",
    ),
    (
        "two brokers answer as master",
        World(base_offset=MIB, slave_is_master_from=11.0),
        None,
        "broker-a has two brokers answering as master",
    ),
]


@pytest.mark.parametrize(
    ("world", "to_key", "expected"), [pytest.param(*r[1:], id=r[0]) for r in DECISIONS]
)
def test_decide_switchover(world: World, to_key: str | None, expected: Promote | str) -> None:
    snapshot, group = judged(world)
    got = decide_switchover(snapshot, group, config(), to_key=to_key, now=NOW)
    if isinstance(expected, Promote):
        assert got == replace(expected, state=group.state)
    else:
        assert isinstance(got, Refusal), got
        assert got.reason.startswith(expected), got.reason


# --------------------------------------------------------------------------- the plan


def props(broker_id: int, role: str, extra: str = "") -> str:
    head = "# the operator's\nbrokerName=broker-a\n"
    return f"{head}brokerId={broker_id}\nbrokerRole={role}\n{extra}"


FILES: dict[str, str | None] = {A0: props(0, "ASYNC_MASTER"), A1: props(1, "SLAVE")}
READY = PluginAnswer(PluginInfo("0.1.0", "4.9.7", "SLAVE", 1, 0, 4800, 0, "127.0.0.1:10912", True))


def switchover_plan(
    decision: Promote = SWITCH,
    files: dict[str, str | None] = FILES,
    *,
    plugins: dict[str, PluginAnswer] | None = None,
    **settings: Any,
) -> Plan:
    cfg = config(**settings)
    if plugins is not None:
        update = {"promotion": "inplace", "plugin_secret_file": "/nonexistent/plugin.secret"}
        cfg = cfg.model_copy(update={"failover": cfg.failover.model_copy(update=update)})
    plan = plan_switchover(
        decision, cfg, files, 3, catch_up_timeout_seconds=30.0, plugins=plugins
    )
    assert isinstance(plan, Plan), plan
    return plan


def kinds(steps: Any) -> list[str]:
    return [f"{s.lane + ' ' if s.lane else ''}{s.kind} {s.broker_key}" for s in steps]


RESTART = switchover_plan()
IN_PLACE = switchover_plan(plugins={A1: READY})
SYNC = switchover_plan(replace(SWITCH, new_role="SYNC_MASTER"))

HEAD = [f"catch_up {A1}", f"stop_writes {A0}", f"catch_up {A1}"]
FENCE = [f"rewrite {A0}", f"stop {A0}", f"confirm_fenced {A0}"]
LANES = [f"fence rewrite {A0}", f"fence stop {A0}", f"candidate stop {A1}"]
LANES.append(f"candidate rewrite {A1}")
TAIL = [f"wait_master {A1}", f"canary {A1}", f"record_epoch {A1}", f"start {A0}"]
ROLLBACK = [f"stop {A1}", f"rewrite {A1}", f"start {A1}", f"rewrite {A0}", f"restore_writes {A0}"]

PLANS: list[tuple[str, Plan, list[str], list[str]]] = [
    (
        "restart path: the candidate stopped beside the fence, started after the gate",
        RESTART,
        [*HEAD, *LANES, f"confirm_fenced {A0}", f"start {A1}", *TAIL, f"verify_rejoin {A0}"],
        ROLLBACK,
    ),
    (
        "in place: the plug-in promotes the candidate after the gate",
        IN_PLACE,
        [*HEAD, *FENCE, f"promote_in_place {A1}", f"rewrite {A1}", *TAIL, f"verify_rejoin {A0}"],
        ROLLBACK,
    ),
    (
        "a fence command goes before the gate",
        switchover_plan(fence_command=True),
        [
            *HEAD,
            *LANES[:2],
            f"fence fence_command {A0}",
            *LANES[2:],
            f"confirm_fenced {A0}",
            f"start {A1}",
            *TAIL,
            f"verify_rejoin {A0}",
        ],
        ROLLBACK,
    ),
]


@pytest.mark.parametrize(
    ("plan", "steps", "rollback"), [pytest.param(*r[1:], id=r[0]) for r in PLANS]
)
def test_the_steps(plan: Plan, steps: list[str], rollback: list[str]) -> None:
    assert kinds(plan.steps) == steps
    assert kinds(plan.rollback) == rollback
    assert is_switchover(plan)
    assert not plan.requires_master_down
    base = plan_promotion(SWITCH, config(), FILES, 3)
    assert isinstance(base, Plan)
    assert plan.epoch == base.epoch == 4
    order = dict(plan.details)["order"]
    if plan.in_place_index is None:
        assert order.startswith("side by side: the candidate holds the old master's whole log")
    else:  # promoted right after the gate: nothing of the candidate's to do before it
        assert not any(s.lane for s in plan.steps)
        assert order.startswith("in sequence: promoted in place")
    assert plan.expected_loss_bytes == plan.max_loss_bytes == 0


def test_the_switchover_steps_carry_their_parameters() -> None:
    before, stop, equal = RESTART.steps[:3]
    assert catch_up_bound(before) == catch_up_bound(before)
    assert (catch_up_bound(before).within_bytes, catch_up_bound(before).master_key) == (MIB, A0)
    assert catch_up_bound(before).timeout_seconds == catch_up_bound(equal).timeout_seconds == 30
    assert catch_up_bound(equal).within_bytes == 0
    assert stop.edits == WRITE_STOP_EDITS == (("brokerRole", "SLAVE"), ("brokerPermission", "4"))
    assert stop.path == "/etc/rmq/a0.properties"
    undo = writes_back(RESTART)
    assert undo is not None and undo.argv == ("start-broker", "0")
    assert undo.edits == (("brokerRole", "ASYNC_MASTER"), ("brokerPermission", "6"))
    with pytest.raises(ValueError, match="without"):
        catch_up_bound(replace(before, edits=()))


def test_the_old_master_is_killed_if_it_can_be() -> None:
    (fence_stop,) = [s for s in RESTART.steps if s.kind is StepKind.STOP and s.broker_key == A0]
    assert fence_stop.argv == ("kill-broker", "0")
    assert "graceful stop would only lengthen the write pause" in fence_stop.purpose
    plan = switchover_plan(kill=False)
    (fence_stop,) = [s for s in plan.steps if s.kind is StepKind.STOP and s.broker_key == A0]
    assert fence_stop.argv == ("stop-broker", "0")
    assert "it has no kill command" in fence_stop.purpose


def test_writes_come_back_as_they_were() -> None:
    # A SYNC_MASTER whose only slave is promoted becomes ASYNC_MASTER (sync_master_without_slave);
    # its own writes, given back, are a SYNC_MASTER's again.
    assert SYNC.new_role == "ASYNC_MASTER" and SYNC.lowered_from == "SYNC_MASTER"
    undo = writes_back(SYNC)
    assert undo is not None and dict(undo.edits)["brokerRole"] == "SYNC_MASTER"
    # A permission the operator set in the file is the one given back.
    files = {**FILES, A0: props(0, "ASYNC_MASTER", "brokerPermission=7\n")}
    undo = writes_back(switchover_plan(files=files))
    assert undo is not None and dict(undo.edits)["brokerPermission"] == "7"


def test_refusals() -> None:
    cfg = config()
    unread = plan_switchover(SWITCH, cfg, {**FILES, A0: None}, 3, catch_up_timeout_seconds=5)
    assert unread == Refusal(
        "broker-a", "cannot read broker-a:0's properties /etc/rmq/a0.properties on h"
    )
    dead = replace(SWITCH, requires_master_down=True)
    assert plan_switchover(dead, cfg, FILES, 3, catch_up_timeout_seconds=5) == Refusal(
        "broker-a", "a switchover needs a master that answers"
    )


def test_a_journaled_switchover_reads_back_the_same() -> None:
    for plan in (RESTART, IN_PLACE):
        assert Plan.from_json(plan.to_json()) == plan


def test_other_plans_are_no_switchover() -> None:
    base = plan_promotion(SWITCH, config(), FILES, 3)
    assert isinstance(base, Plan)
    assert not is_switchover(base) and writes_back(base) is None


# --------------------------------------------------------------------------- what runs next

N = len(RESTART.steps)  # the restore's index in the rollback phase (as the gate's restore)
R = RESTART.reason


def main(plan: Plan, upto: int) -> list[str]:
    return [f"main {i} {s.kind} {s.broker_key}" for i, s in enumerate(plan.steps[:upto])]


RESTORE = f"rollback {N} restore_writes {A0}"
BACK = f"{A0} takes writes again"
# The restart path's lanes, as the stand-in run ends them (lowest first).
SIDE = [f"main 3 rewrite {A0} | main 5 stop {A1}", f"main 4 stop {A0}", f"main 6 rewrite {A1}"]
ROLLBACK_RUN = [
    f"rollback 0 stop {A1}",
    f"rollback 1 rewrite {A1} restore",
    f"rollback 2 start {A1}",
    f"rollback 3 rewrite {A0} restore",
    f"rollback 4 restore_writes {A0}",
]

ROWS: list[tuple[str, Plan, dict[tuple[str, int], StepStatus], list[str]]] = [
    (
        "every step done",
        RESTART,
        {},
        [*main(RESTART, 3), *SIDE, *main(RESTART, N)[7:], f"succeeded: {R}"],
    ),
    (
        "the candidate too far behind before anything changed: refused, the undo a no-op",
        RESTART,
        {("main", 0): "failed"},
        [*main(RESTART, 1), RESTORE, f"refused: boom; {BACK}"],
    ),
    (
        "the write stop does not take: given back, refused",
        RESTART,
        {("main", 1): "failed"},
        [*main(RESTART, 2), RESTORE, f"refused: step 2 (stop_writes) failed: boom; {BACK}"],
    ),
    (
        "the candidate does not catch up once writes stopped: given back, refused",
        RESTART,
        {("main", 2): "failed"},
        [*main(RESTART, 3), RESTORE, f"refused: boom; {BACK}"],
    ),
    (
        "and the writes cannot be given back: failed, said so",
        RESTART,
        {("main", 2): "failed", ("rollback", N): "failed"},
        [*main(RESTART, 3), RESTORE, f"failed: boom; and {A0}'s writes could not be given back"],
    ),
    (
        "the candidate's stop fails: it is untouched, the old master gets its writes back",
        RESTART,
        {("main", 5): "failed"},
        [
            *main(RESTART, 3),
            *SIDE[:2],
            RESTORE,
            f"refused: step 6 (stop) failed: boom; {BACK}",
        ],
    ),
    (
        "no fence (the old master's kill failed): the candidate restored, writes given back",
        RESTART,
        {("main", 4): "skipped", ("main", 7): "failed"},
        [
            *main(RESTART, 3),
            *SIDE,
            f"main 7 confirm_fenced {A0}",
            "rollback_started (fence): boom",
            *ROLLBACK_RUN,
            f"refused: boom; {BACK}",
        ],
    ),
    (
        "the candidate never registers: rolled back, the old master's writes given back last",
        RESTART,
        {("main", 9): "failed"},
        [
            *main(RESTART, 3),
            *SIDE,
            *main(RESTART, 10)[7:],
            "rollback_started: step 10 (wait_master) failed: boom",
            *ROLLBACK_RUN,
            "rolled_back: step 10 (wait_master) failed: boom; rolled back",
        ],
    ),
    (
        "the old master's rejoin is not verified: failed, the promotion stands",
        RESTART,
        {("main", N - 1): "failed"},
        [
            *main(RESTART, 3),
            *SIDE,
            *main(RESTART, N)[7:],
            f"failed: step {N} (verify_rejoin) failed: boom; the promotion stands (its epoch "
            "is recorded)",
        ],
    ),
    (
        "in place: the candidate waits for the gate, in sequence",
        IN_PLACE,
        {},
        [*main(IN_PLACE, len(IN_PLACE.steps)), f"succeeded: {IN_PLACE.reason}; promoted in place"],
    ),
    (
        "in place, the candidate does not catch up: given back, refused",
        IN_PLACE,
        {("main", 2): "failed"},
        [*main(IN_PLACE, 3), f"rollback {len(IN_PLACE.steps)} restore_writes {A0}",
         f"refused: boom; {BACK}"],  # fmt: skip
    ),
    (
        "in place refused: the restart path instead, then on",
        IN_PLACE,
        {("main", 6): "failed"},
        [
            *main(IN_PLACE, 7),
            "fallback_started: the in-place promotion (step 7) failed: boom",
            f"fallback 0 stop {A1}",
            f"fallback 1 rewrite {A1}",
            f"fallback 2 start {A1}",
            *[
                f"main {i} {s.kind} {s.broker_key}"
                for i, s in enumerate(IN_PLACE.steps)
                if i > 6
            ],
            f"succeeded: {IN_PLACE.reason}; promoted by restart: the in-place promotion "
            "(step 7) failed: boom",
        ],
    ),
]


@pytest.mark.parametrize(
    ("plan", "results", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_a_whole_switchover_and_every_interruption_of_it(
    tmp_path: Path,
    plan: Plan,
    results: dict[tuple[str, int], StepStatus],
    expected: list[str],
) -> None:
    script = Script(results)
    assert play(plan, script, Progress(), []) == expected
    if any(s.lane for s in plan.steps):
        # Every order the lanes' steps can end in, each cut after every journal entry.
        check_interrupted_lanes(tmp_path, plan, script, lowest, expected[-1])
        check_interrupted_lanes(tmp_path, plan, script, highest, expected[-1])
    else:
        check_interrupted(tmp_path, plan, script, expected, [], depth=2)


def test_the_restore_runs_once_then_the_run_ends() -> None:
    failed = Progress(done=frozenset({0, 1}), failed=2, failed_detail="too slow")
    action = next_action(RESTART, failed)
    assert isinstance(action, Start)
    (restore,) = action.steps
    assert restore == RunStep("rollback", N, RESTART.rollback[-1])
    after = failed.after(restore, "done", "given back", backups=frozenset({A0}))
    assert next_action(RESTART, after) == Finish("refused", f"too slow; {BACK}")


@pytest.mark.parametrize(
    ("kind", "budget"),
    [
        (StepKind.STOP_WRITES, None),
        (StepKind.CATCH_UP, None),
        (StepKind.VERIFY_REJOIN, None),
        (StepKind.RESTORE_WRITES, 90.0),
    ],
)
def test_retry_budget(kind: StepKind, budget: float | None) -> None:
    step = next(s for s in (*RESTART.steps, *RESTART.rollback) if s.kind is kind)
    assert retry_budget_seconds(step, 90.0) == budget


# --------------------------------------------------------------------------- the write pause


def done(kind: str, at: float, phase: str = "main") -> dict[str, Any]:
    return {"event": "step_done", "kind": kind, "phase": phase, "at": at}


STOPPED = {"event": "writes_stopped", "offset": 5000, "at": 100.0}
PAUSES: list[tuple[str, list[dict[str, Any]], float | None]] = [
    (
        "from the write stop to wait_master's end (lanes overlap: times, not durations)",
        [done("catch_up", 99.5), STOPPED, done("stop_writes", 100.1), done("catch_up", 100.3),
         done("rewrite", 100.4), done("stop", 100.9), done("stop", 101.0), done("rewrite", 101.0),
         done("confirm_fenced", 101.1), done("start", 103.0), done("wait_master", 103.25),
         done("canary", 104.0)],  # fmt: skip
        3.25,
    ),
    (
        "refused: until the writes are given back (the rollback phase)",
        [STOPPED, done("stop_writes", 100.1), done("restore_writes", 102.5, "rollback")],
        2.5,
    ),
    (
        "a fallback's wait_master is the main one's",
        [STOPPED, done("wait_master", 104.0, "fallback"), done("wait_master", 104.5)],
        4.5,
    ),
    ("refused before the writes stopped", [done("restore_writes", 30.0, "rollback")], None),
    ("stopped, not given back yet", [STOPPED, done("stop_writes", 100.1)], None),
]


@pytest.mark.parametrize(("entries", "pause"), [pytest.param(*r[1:], id=r[0]) for r in PAUSES])
def test_write_pause(entries: list[dict[str, Any]], pause: float | None) -> None:
    got = write_pause_seconds(entries)
    assert got == pytest.approx(pause) if pause is not None else got is None


# --------------------------------------------------------------------------- the control socket


def test_the_switchover_request_on_the_wire() -> None:
    request = SwitchoverRequest("broker-a", A1, 12.5)
    wire = request.to_json()
    assert wire == {
        "op": "switchover",
        "broker_name": "broker-a",
        "to_key": A1,
        "catch_up_timeout_seconds": 12.5,
    }
    assert SwitchoverRequest.from_json(wire) == request
    assert SwitchoverRequest.from_json({"op": "switchover", "broker_name": "broker-a"}) == (
        SwitchoverRequest("broker-a", None, 30.0)
    )


def ask_server(tmp_path: Path, line: bytes, *, with_handler: bool) -> tuple[bytes, list[Any]]:
    """`line` to a control server with scripted handlers: what came back, what the switchover
    handler got (an older daemon has none)."""
    got: list[SwitchoverRequest] = []

    async def failover(request: Any, send: Send) -> None:
        raise AssertionError("not a failover")

    async def switchover(request: SwitchoverRequest, send: Send) -> None:
        got.append(request)
        send({"event": "accepted", "failover_id": "fo-1"})
        send({"event": "result", "outcome": "refused", "detail": "too slow"})

    async def go() -> bytes:
        path = tmp_path / "control.sock"
        server = await start_control_server(
            path,
            failover,
            lambda name: {},
            lambda: {},
            switchover if with_handler else None,
        )
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(line)
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            server.close()

    return asyncio.run(go()), got


def test_the_daemon_takes_a_switchover_over_its_socket(tmp_path: Path) -> None:
    request = SwitchoverRequest("broker-a", None, 5.0)
    line = (wire_json(request.to_json()) + "\n").encode()
    answer, got = ask_server(tmp_path, line, with_handler=True)
    assert answer == (
        b'{"event": "accepted", "failover_id": "fo-1"}\n'
        b'{"event": "result", "outcome": "refused", "detail": "too slow"}\n'
    )
    assert got == [request]
    # A daemon without the op (older) says so in one line; the CLI prints it.
    answer, got = ask_server(tmp_path, line, with_handler=False)
    assert answer == b'{"error": "unknown op \'switchover\'"}\n' and got == []
