"""What the executor does next (act/_progress.py), as value tables over whole plans.

Each row runs a plan as the planner makes it against scripted step results and compares every
action with the expected sequence. Then, as Patroni's test_quorum does, it checks interrupted
runs: the journal the run wrote is cut after each of its entries, a new process resumes from
what the journal says (the real `Journal.progress`), and what it does must be the rest of the
uninterrupted sequence, or the documented resume behaviour:

- a step journaled as started, failed, or followed only by the fence gate's restore runs again
  (the crash came before the run acted on it), and everything after it is as before;
- once `fallback_started` is journaled (the in-place promotion failed), the fallback goes on
  at its first step not journaled done, and the PROMOTE_IN_PLACE step is not run again;
- once `rollback_started` is journaled, the rollback starts over from its first step, with the
  reason "resumed an interrupted rollback".

A resumed run is itself cut and resumed again, so a crash during a resume is covered too.

Plans with lanes (the fence side by side with the candidate's stop and rewrite) are run in
every order in which the steps running side by side can end, each of them cut after every
journal entry and resumed in two orders; every run, whole or resumed, is checked against the
rules of lanes (`Rules`): a step starts only once what it waits for is journaled done, one step
per lane at a time, nothing starts after a failure, and the candidate never starts before the
confirm_fenced gate is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from watchdog.act import Journal
from watchdog.act._progress import (
    Action,
    FenceProgress,
    Finish,
    Progress,
    RunStep,
    Start,
    StartFallback,
    StartRollback,
    StepStatus,
    Wait,
    next_action,
    retry_budget_seconds,
)
from watchdog.config import WatchdogConfig, parse_config
from watchdog.decide import (
    Fence,
    Plan,
    PluginAnswer,
    Promote,
    Refusal,
    Step,
    StepKind,
    plan_fence,
    plan_promotion,
)
from watchdog.remoting import PluginInfo

A0, A1, A2 = "broker-a:0", "broker-a:1", "broker-a:2"
ADDRS = {A0: "127.0.0.1:10911", A1: "127.0.0.1:10921", A2: "127.0.0.1:10931"}


def config(*, slaves: int = 1, fence_command: bool = False, **failover: Any) -> WatchdogConfig:
    keys = [A0, A1, A2][: slaves + 1]
    return parse_config(
        {
            "cluster_name": "c",
            "nameservers": ["127.0.0.1:9876", "127.0.0.1:9877"],
            "hosts": {
                "h": {
                    "kind": "local",
                    "fence_command": ["fence", "{addr}"] if fence_command else [],
                }
            },
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": ADDRS[key],
                    "properties": f"/etc/rmq/a{i}.properties",
                    "host": "h",
                    "start": ["start-broker", str(i)],
                    "stop": ["stop-broker", str(i)],
                }
                for i, key in enumerate(keys)
            ],
            "failover": failover,
        }
    )


def props(broker_id: int, role: str, extra: str = "") -> str:
    return f"brokerName=broker-a\nbrokerId={broker_id}\nbrokerRole={role}\n{extra}"


FILES = {
    A0: props(0, "ASYNC_MASTER"),
    A1: props(1, "SLAVE"),
    A2: props(2, "SLAVE", f"haMasterAddress={ADDRS[A0]}\n"),
}


def promotion(
    *,
    requires_master_down: bool = True,
    deregistered_for_seconds: float | None = None,
    **settings: Any,
) -> Plan:
    decision = Promote(
        broker_name="broker-a",
        old_master_key=A0,
        old_master_addr=ADDRS[A0],
        candidate_key=A1,
        candidate_addr=ADDRS[A1],
        candidate_offset=4800,
        expected_loss_bytes=200,
        new_role="ASYNC_MASTER",
        reason="master died",
        requires_master_down=requires_master_down,
        deregistered_for_seconds=deregistered_for_seconds,
    )
    plan = plan_promotion(decision, config(**settings), FILES, current_epoch=0)
    assert not isinstance(plan, Refusal), plan
    return plan


def in_place(*, slaves: int = 1) -> Plan:
    """A promotion in place: the candidate's plug-in (and the other slave's) answers."""
    base = config(slaves=slaves)
    # Without validation: the plan never reads the secret file (the step does).
    settings = base.failover.model_copy(
        update={"promotion": "inplace", "plugin_secret_file": "/nonexistent/plugin.secret"}
    )
    cfg = base.model_copy(update={"failover": settings})
    ready = PluginAnswer(
        PluginInfo("0.1.0", "4.9.7", "SLAVE", 1, 0, 4800, 0, "127.0.0.1:10912", True)
    )
    decision = Promote(
        broker_name="broker-a",
        old_master_key=A0,
        old_master_addr=ADDRS[A0],
        candidate_key=A1,
        candidate_addr=ADDRS[A1],
        candidate_offset=4800,
        expected_loss_bytes=200,
        new_role="ASYNC_MASTER",
        reason="master died",
        deregistered_for_seconds=0.0,
    )
    plugins = {A1: ready, A2: ready}
    plan = plan_promotion(decision, cfg, FILES, current_epoch=0, plugins=plugins)
    assert not isinstance(plan, Refusal), plan
    return plan


def fence_plan() -> Plan:
    decision = Fence("broker-a", A0, ADDRS[A0], A1, "second master")
    plan = plan_fence(
        decision,
        config(),
        FILES,
        1,
        target_offset=5000,
        promotion_offset=4800,
        used_ids=frozenset({0}),
    )
    assert not isinstance(plan, Refusal), plan
    return plan


PROMOTION = promotion()  # 9 steps: rewrite, stop, gate on A0; stop, rewrite, start A1; ...
WITH_FENCE_COMMAND = promotion(fence_command=True)  # the fence command before the gate
WITH_SLAVE = promotion(slaves=2)  # A2 is pinned to A0: it is re-pointed after the canary
SWITCH = promotion(requires_master_down=False)  # failover --force: A0 rejoins at the end
FENCE = fence_plan()  # rewrite, stop, move aside, start A0; record_epoch
# The old master down and dropped by every nameserver: fenced side by side with the candidate.
LANES = promotion(deregistered_for_seconds=0.0)
LANES_WITH_FENCE_COMMAND = promotion(deregistered_for_seconds=0.0, fence_command=True)
# Promoted in place (no lanes: the candidate has nothing to do before the gate), and with a
# second slave pinned to the old master, re-pointed in place.
IN_PLACE = in_place()
IN_PLACE_SLAVE = in_place(slaves=2)


def test_the_plans_are_the_planners() -> None:
    def kinds(plan: Plan) -> list[str]:
        return [f"{s.kind} {s.broker_key}" for s in plan.steps]

    assert kinds(PROMOTION) == [
        f"rewrite {A0}",
        f"stop {A0}",
        f"confirm_fenced {A0}",
        f"stop {A1}",
        f"rewrite {A1}",
        f"start {A1}",
        f"wait_master {A1}",
        f"canary {A1}",
        f"record_epoch {A1}",
    ]
    assert [f"{s.kind} {s.broker_key}" for s in PROMOTION.rollback] == [
        f"stop {A1}",
        f"rewrite {A1}",
        f"start {A1}",
        f"rewrite {A0}",
    ]
    assert kinds(WITH_FENCE_COMMAND)[2:4] == [f"fence_command {A0}", f"confirm_fenced {A0}"]
    assert kinds(WITH_SLAVE)[8:11] == [f"stop {A2}", f"rewrite {A2}", f"start {A2}"]
    assert kinds(SWITCH)[-2:] == [f"record_epoch {A1}", f"start {A0}"]
    assert kinds(FENCE) == [
        f"rewrite {A0}",
        f"stop {A0}",
        f"move_store_aside {A0}",
        f"start {A0}",
        f"record_epoch {A1}",
    ]

    def lanes(plan: Plan) -> list[str]:
        return [f"{s.lane or '-'} {s.kind} {s.broker_key}" for s in plan.steps]

    assert lanes(LANES) == [
        f"fence rewrite {A0}",
        f"fence stop {A0}",
        f"candidate stop {A1}",
        f"candidate rewrite {A1}",
        f"- confirm_fenced {A0}",
        f"- start {A1}",
        f"- wait_master {A1}",
        f"- canary {A1}",
        f"- record_epoch {A1}",
    ]
    assert lanes(LANES_WITH_FENCE_COMMAND)[:5] == [
        f"fence rewrite {A0}",
        f"fence stop {A0}",
        f"fence fence_command {A0}",
        f"candidate stop {A1}",
        f"candidate rewrite {A1}",
    ]
    assert LANES.rollback == PROMOTION.rollback
    assert not any(s.lane for p in (PROMOTION, SWITCH, FENCE) for s in p.steps)

    assert kinds(IN_PLACE) == [
        f"rewrite {A0}",
        f"stop {A0}",
        f"confirm_fenced {A0}",
        f"promote_in_place {A1}",
        f"rewrite {A1}",
        f"wait_master {A1}",
        f"canary {A1}",
        f"record_epoch {A1}",
    ]
    assert [f"{s.kind} {s.broker_key}" for s in IN_PLACE.fallback] == [
        f"stop {A1}",
        f"rewrite {A1}",
        f"start {A1}",
    ]
    assert IN_PLACE.rollback == PROMOTION.rollback
    assert kinds(IN_PLACE_SLAVE)[7:9] == [f"rewrite {A2}", f"set_ha_master {A2}"]
    assert not any(s.lane for p in (IN_PLACE, IN_PLACE_SLAVE) for s in p.steps)


# --------------------------------------------------------------------------- the stand-in run


@dataclass
class Script:
    """Step results of a deterministic world: (phase, index) -> status, `done` otherwise. A
    rewrite done in the main phase writes its file's backup (the first time: rollback
    rewrites find the file as it was or restore it, and write none)."""

    results: Mapping[tuple[str, int], StepStatus] = field(default_factory=dict)

    def status(self, action: RunStep) -> StepStatus:
        return self.results.get((action.phase, action.index), "done")


def render_step(action: RunStep) -> str:
    restore = " restore" if action.restore_backup else ""
    return f"{action.phase} {action.index} {action.step.kind} {action.step.broker_key}{restore}"


def render(action: Action) -> str:
    """A Start of several steps reads "main 0 ... | main 2 ...": they start side by side."""
    if isinstance(action, Start):
        return " | ".join(render_step(a) for a in action.steps)
    if isinstance(action, StartRollback):
        fence = " (fence)" if action.is_fence else ""
        return f"rollback_started{fence}: {action.why}"
    if isinstance(action, StartFallback):
        return f"fallback_started: {action.why}"
    if isinstance(action, Wait):
        return "wait"
    return f"{action.outcome}: {action.detail}"


# Which running step ends next: the one with the lowest index, or another policy.
Pick = Callable[[Sequence[RunStep]], RunStep]


def lowest(running: Sequence[RunStep]) -> RunStep:
    return min(running, key=lambda a: a.key)


def highest(running: Sequence[RunStep]) -> RunStep:
    return max(running, key=lambda a: a.key)


@dataclass
class Rules:
    """The rules every run keeps, judged from the journal (not from `Progress`): a main step
    starts only once every step it waits for is journaled done, alone in its lane (a step
    without a lane: alone), never after a failure; the candidate's start only after the gate
    is done; the run finishes or rolls back only when nothing runs."""

    plan: Plan
    done: set[int]  # main steps journaled done or skipped
    gate_done: bool = False
    failed: bool = False
    # The in-place step's fallback: started, and its steps done (all done: the step is done).
    is_falling_back: bool = False
    fallback_done: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, plan: Plan, entries: list[dict[str, Any]]) -> Rules:
        done = {
            e["index"]
            for e in entries
            if e["event"] in ("step_done", "step_skipped") and e["phase"] == "main"
        }
        gate = any(
            e["event"] == "step_done"
            and e["phase"] == "main"
            and plan.steps[e["index"]].kind is StepKind.CONFIRM_FENCED
            for e in entries
        )
        rules = cls(plan, done, gate_done=gate)
        if any(e["event"] == "fallback_started" for e in entries):
            rules.fall_back()
            for e in entries:
                if e["event"] == "step_done" and e["phase"] == "fallback":
                    rules.end(RunStep("fallback", e["index"], plan.fallback[e["index"]]), "done")
        return rules

    def fall_back(self) -> None:
        """The in-place step's failure is answered by its fallback: no longer a failure."""
        assert self.plan.in_place_index is not None and self.plan.in_place_index not in self.done
        self.failed = False
        self.is_falling_back = True

    def start(self, action: RunStep, running: Sequence[RunStep]) -> None:
        if action.phase in ("rollback", "fallback"):
            # One after the other, alone: nothing of the main phase runs beside them.
            assert not running, running
            return
        step = self.plan.steps[action.index]
        assert not self.failed, f"{render_step(action)} started after a failure"
        assert action.index not in self.done, f"{render_step(action)} again"
        assert self.plan.waits_for(action.index) <= self.done, render_step(action)
        for other in running:
            lane = self.plan.steps[other.index].lane
            assert step.lane and lane and lane != step.lane, (action, other)
        has_gate = any(s.kind is StepKind.CONFIRM_FENCED for s in self.plan.steps)
        if (
            step.kind is StepKind.START
            and step.broker_key == self.plan.new_master_key
            and has_gate
            and self.plan.requires_master_down
        ):
            assert self.gate_done, "the candidate started before the fence was confirmed"

    def end(self, action: RunStep, status: StepStatus) -> None:
        if action.phase == "fallback":
            assert self.is_falling_back, action
            if status == "failed":
                self.failed = True
                return
            self.fallback_done.add(action.index)
            if len(self.fallback_done) == len(self.plan.fallback):
                assert self.plan.in_place_index is not None
                self.done.add(self.plan.in_place_index)
            return
        if action.phase != "main":
            return
        if status == "failed":
            self.failed = True
            return
        self.done.add(action.index)
        if status == "done" and self.plan.steps[action.index].kind is StepKind.CONFIRM_FENCED:
            self.gate_done = True


def play(
    plan: Plan,
    script: Script,
    progress: Progress,
    journal: list[dict[str, Any]],
    *,
    pick: Pick = lowest,
    before: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Drive the resolver as the executor does, appending what the executor journals; `pick`
    chooses which running step ends next. Waits are not listed."""
    seen: list[str] = []
    backups = set(progress.backups)
    rules = Rules.of(plan, before or [])
    running: list[RunStep] = []
    while True:
        action = next_action(plan, progress)
        if not isinstance(action, Wait):
            seen.append(render(action))
        assert len(seen) < 100, seen
        if isinstance(action, Finish):
            assert not running, running
            journal.append({"event": "finished", "outcome": action.outcome})
            return seen
        if isinstance(action, StartRollback):
            assert not running, running
            journal.append({"event": "rollback_started", "reason": action.why})
            progress = progress.rolling_back(action.why, is_fence=action.is_fence)
            continue
        if isinstance(action, StartFallback):
            assert not running, running
            rules.fall_back()
            journal.append({"event": "fallback_started", "reason": action.why})
            progress = progress.falling_back(action.why)
            continue
        if isinstance(action, Start):
            for started in action.steps:
                rules.start(started, running)
                where = {"index": started.index, "phase": started.phase}
                journal.append({"event": "step_started", **where})
                running.append(started)
                progress = progress.started(started)
            continue
        assert running, "a wait with nothing running"
        ended = pick(running)
        running.remove(ended)
        status = script.status(ended)
        key = ended.step.broker_key
        if (
            ended.phase in ("main", "fallback")
            and ended.step.kind is StepKind.REWRITE
            and status == "done"
            and key not in backups
        ):
            backups.add(key)
            journal.append({"event": "backup_written", "broker_key": key, "backup": f"{key}.bak"})
        journal.append({"event": f"step_{status}", "index": ended.index, "phase": ended.phase})
        rules.end(ended, status)
        detail = "boom" if status != "done" else "ok"
        progress = progress.after(ended, status, detail, backups=frozenset(backups))


@dataclass
class Picker:
    """Ends the running steps in the order `choices` says (an index into them, lowest key
    first; 0 once the choices are used up), noting how many ran at each wait."""

    choices: list[int]
    widths: list[int] = field(default_factory=list)

    def __call__(self, running: Sequence[RunStep]) -> RunStep:
        k = len(self.widths)
        self.widths.append(len(running))
        choice = self.choices[k] if k < len(self.choices) else 0
        return sorted(running, key=lambda a: a.key)[choice]


def orders(plan: Plan, script: Script) -> list[list[int]]:
    """Every order in which the steps running side by side can end, as `Picker` choices."""
    found: list[list[int]] = []
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        picker = Picker(prefix)
        play(plan, script, Progress(), [], pick=picker)
        choices = prefix + [0] * (len(picker.widths) - len(prefix))
        found.append(choices)
        for k in range(len(prefix), len(picker.widths)):
            stack.extend(choices[:k] + [alt] for alt in range(1, picker.widths[k]))
    return found


def progress_of(tmp_path: Path, plan: Plan, entries: list[dict[str, Any]]) -> Progress:
    """What a new process reads from a journal holding `entries` after its plan."""
    journal = Journal(tmp_path)
    lines = [{"event": "planned", "plan": plan.to_json()}, *entries]
    journal.path("fo").parent.mkdir(parents=True, exist_ok=True)
    journal.path("fo").write_text("".join(json.dumps(e) + "\n" for e in lines))
    read = journal.progress("fo")
    assert not read.is_finished
    return Progress.resumed(read)


def expected_resume(sequence: list[str], entries: list[dict[str, Any]]) -> list[str]:
    """The documented resume behaviour, stated on the uninterrupted sequence `sequence` that
    journaled `entries` before the cut (a plan without lanes: one step at a time)."""
    if any(e["event"] == "rollback_started" for e in entries):
        start = next(i for i, s in enumerate(sequence) if s.startswith("rollback_started"))
        head, _, why = sequence[start].partition(": ")
        tail = sequence[start:]
        tail[0] = f"{head}: resumed an interrupted rollback"
        tail[-1] = tail[-1].replace(why, "resumed an interrupted rollback")
        return tail
    done = {
        f"{e['phase']} {e['index']} "
        for e in entries
        if e["event"] in ("step_done", "step_skipped") and e["phase"] in ("main", "fallback")
    }
    if any(e["event"] == "fallback_started" for e in entries):
        # The in-place step that failed is not run again: its fallback goes on.
        failed = next(
            e["index"] for e in entries if e["event"] == "step_failed" and e["phase"] == "main"
        )
        done |= {f"main {failed} ", "fallback_started: "}
    start = next(i for i, s in enumerate(sequence) if not s.startswith(tuple(done) or ("\0",)))
    return sequence[start:]


def check_interrupted(
    tmp_path: Path,
    plan: Plan,
    script: Script,
    expected: list[str],
    before: list[dict[str, Any]],
    depth: int,
) -> None:
    """Cut the run's journal after each entry; the resumed run does what `expected_resume`
    says; `depth` > 1 cuts the resumed run again."""
    journal: list[dict[str, Any]] = []
    play(plan, script, progress_of(tmp_path, plan, before), journal, before=before)
    for cut in range(len(journal)):  # the last entry is `finished`: nothing to resume
        entries = before + journal[:cut]
        resumed = progress_of(tmp_path, plan, entries)
        again: list[dict[str, Any]] = []
        seen = play(plan, script, resumed, again, before=entries)
        assert seen == expected_resume(expected, entries), (cut, journal[:cut])
        if depth > 1:
            check_interrupted(
                tmp_path, plan, script, expected_resume(expected, entries), entries, depth - 1
            )


def check_interrupted_lanes(
    tmp_path: Path, plan: Plan, script: Script, pick: Pick, finish: str
) -> None:
    """Cut a run with lanes after each journal entry and resume it, letting the steps side by
    side end lowest first, then highest first: each resumed run keeps the `Rules` (so it runs
    no step journaled done, and the candidate waits for the gate), runs every step the journal
    left started but not done when it still goes on, and ends as the whole run did; after a
    `rollback_started` it is the rollback from its first step, as in a plan without lanes."""
    journal: list[dict[str, Any]] = []
    whole = play(plan, script, Progress(), journal, pick=pick)
    assert whole[-1] == finish
    for cut in range(len(journal)):
        entries = journal[:cut]
        for order in (lowest, highest):
            resumed = progress_of(tmp_path, plan, entries)
            again: list[dict[str, Any]] = []
            seen = play(plan, script, resumed, again, pick=order, before=entries)
            if any(e["event"] == "rollback_started" for e in entries):
                assert seen == expected_resume(whole, entries), (cut, entries)
                continue
            assert seen[-1] == finish, (cut, seen)
            done = {
                e["index"]
                for e in entries
                if e["event"] in ("step_done", "step_skipped") and e["phase"] == "main"
            }
            started = {
                e["index"] for e in entries if e["event"] == "step_started" and e["phase"] == "main"
            }
            again_started = {
                e["index"] for e in again if e["event"] == "step_started" and e["phase"] == "main"
            }
            if finish.startswith("succeeded"):
                assert again_started == set(range(len(plan.steps))) - done, (cut, seen)
            else:
                # A step that was running when the crash came runs again.
                assert started - done <= again_started, (cut, seen)


def ran(plan: Plan, count: int | None = None) -> list[str]:
    """The lines of the plan's first `count` main steps (all of them: None), as play says them."""
    return [f"main {i} {s.kind} {s.broker_key}" for i, s in enumerate(plan.steps[:count])]


# A promotion undone: the candidate back to a slave, the old master's file put back.
UNDONE = [
    f"rollback 0 stop {A1}",
    f"rollback 1 rewrite {A1} restore",
    f"rollback 2 start {A1}",
    f"rollback 3 rewrite {A0} restore",
]

ROWS: list[tuple[str, Plan, dict[tuple[str, int], StepStatus], list[str]]] = [
    (
        "every step done",
        PROMOTION,
        {},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"main 3 stop {A1}",
            f"main 4 rewrite {A1}",
            f"main 5 start {A1}",
            f"main 6 wait_master {A1}",
            f"main 7 canary {A1}",
            f"main 8 record_epoch {A1}",
            "succeeded: master died",
        ],
    ),
    (
        "a best-effort fence step that fails is skipped and the plan goes on",
        PROMOTION,
        {("main", 1): "skipped"},
        ran(PROMOTION) + ["succeeded: master died"],
    ),
    (
        "no fence: the old master's rewrite is restored, nothing else is touched",
        PROMOTION,
        {("main", 1): "skipped", ("main", 2): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"rollback 9 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom",
        ],
    ),
    (
        "no fence and no rewrite (host unreachable): nothing to restore",
        PROMOTION,
        {("main", 0): "skipped", ("main", 1): "skipped", ("main", 2): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"awaiting_fence: not promoting until {A0} is fenced: boom",
        ],
    ),
    (
        "the restore after no fence failing changes nothing: still awaiting the fence",
        PROMOTION,
        {("main", 2): "failed", ("rollback", 9): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"rollback 9 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom",
        ],
    ),
    (
        "the fence command's gate fails the same way",
        WITH_FENCE_COMMAND,
        {("main", 1): "skipped", ("main", 2): "skipped", ("main", 3): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 fence_command {A0}",
            f"main 3 confirm_fenced {A0}",
            f"rollback 10 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom",
        ],
    ),
    (
        "the candidate's stop fails: it was not touched, no rollback",
        PROMOTION,
        {("main", 3): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"main 3 stop {A1}",
            "failed: step 4 (stop) failed: boom",
        ],
    ),
    (
        "the candidate's rewrite fails: rolled back, its file has no backup to restore",
        PROMOTION,
        {("main", 4): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"main 3 stop {A1}",
            f"main 4 rewrite {A1}",
            "rollback_started: step 5 (rewrite) failed: boom",
            f"rollback 0 stop {A1}",
            f"rollback 1 rewrite {A1}",
            f"rollback 2 start {A1}",
            f"rollback 3 rewrite {A0} restore",
            "rolled_back: step 5 (rewrite) failed: boom; rolled back",
        ],
    ),
    (
        "the new master never registers: rolled back, both files restored",
        PROMOTION,
        {("main", 6): "failed"},
        ran(PROMOTION, 7)
        + [
            "rollback_started: step 7 (wait_master) failed: boom",
            *UNDONE,
            "rolled_back: step 7 (wait_master) failed: boom; rolled back",
        ],
    ),
    (
        "a failed rollback step: the rest of the rollback still runs, the outcome is failed",
        PROMOTION,
        {("main", 6): "failed", ("rollback", 2): "failed"},
        ran(PROMOTION, 7)
        + [
            "rollback_started: step 7 (wait_master) failed: boom",
            *UNDONE,
            "failed: step 7 (wait_master) failed: boom; rolled back (rollback incomplete)",
        ],
    ),
    (
        "a failed canary: the group has a registered master, undoing it would leave none",
        PROMOTION,
        {("main", 7): "failed"},
        ran(PROMOTION, 8) + ["failed: step 8 (canary) failed: boom"],
    ),
    (
        "record_epoch fails: rolled back",
        PROMOTION,
        {("main", 8): "failed"},
        ran(PROMOTION)
        + [
            "rollback_started: step 9 (record_epoch) failed: boom",
            *UNDONE,
            "rolled_back: step 9 (record_epoch) failed: boom; rolled back",
        ],
    ),
    (
        "a pinned slave's re-point fails after the canary: rolled back",
        WITH_SLAVE,
        {("main", 9): "failed"},
        ran(WITH_SLAVE, 10)
        + [
            "rollback_started: step 10 (rewrite) failed: boom",
            *UNDONE,
            "rolled_back: step 10 (rewrite) failed: boom; rolled back",
        ],
    ),
    (
        # Once the epoch is recorded the promotion is final: the old master's failed rejoin
        # ends the run as failed, and nothing is undone.
        "a forced switch whose old master does not rejoin: failed, the promotion stands",
        SWITCH,
        {("main", 9): "failed"},
        ran(SWITCH)
        + [
            "failed: step 10 (start) failed: boom; the promotion stands (its epoch is recorded)",
        ],
    ),
    # ----- promoted in place (the fence before it, in sequence)
    (
        "in place: every step done, the candidate never stopped",
        IN_PLACE,
        {},
        ran(IN_PLACE) + ["succeeded: master died; promoted in place"],
    ),
    (
        "in place refused: the fallback restarts it, then the plan goes on",
        IN_PLACE,
        {("main", 3): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"main 3 promote_in_place {A1}",
            "fallback_started: the in-place promotion (step 4) failed: boom",
            f"fallback 0 stop {A1}",
            f"fallback 1 rewrite {A1}",
            f"fallback 2 start {A1}",
            f"main 4 rewrite {A1}",
            f"main 5 wait_master {A1}",
            f"main 6 canary {A1}",
            f"main 7 record_epoch {A1}",
            "succeeded: master died; promoted by restart: the in-place promotion (step 4) "
            "failed: boom",
        ],
    ),
    (
        "in place: no fence, nothing promoted, the candidate untouched",
        IN_PLACE,
        {("main", 1): "skipped", ("main", 2): "failed"},
        [
            f"main 0 rewrite {A0}",
            f"main 1 stop {A0}",
            f"main 2 confirm_fenced {A0}",
            f"rollback 8 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom",
        ],
    ),
    (
        "in place refused, and the fallback's stop fails: failed, the candidate runs on",
        IN_PLACE,
        {("main", 3): "failed", ("fallback", 0): "failed"},
        [
            *ran(IN_PLACE, 4),
            "fallback_started: the in-place promotion (step 4) failed: boom",
            f"fallback 0 stop {A1}",
            "failed: the in-place promotion (step 4) failed: boom; then fallback step 1 (stop) "
            "failed: boom",
        ],
    ),
    (
        "in place refused, and the fallback's start fails: rolled back as on the restart path",
        IN_PLACE,
        {("main", 3): "failed", ("fallback", 2): "failed"},
        [
            *ran(IN_PLACE, 4),
            "fallback_started: the in-place promotion (step 4) failed: boom",
            f"fallback 0 stop {A1}",
            f"fallback 1 rewrite {A1}",
            f"fallback 2 start {A1}",
            "rollback_started: the in-place promotion (step 4) failed: boom; then fallback "
            "step 3 (start) failed: boom",
            *UNDONE,
            "rolled_back: the in-place promotion (step 4) failed: boom; then fallback step 3 "
            "(start) failed: boom; rolled back",
        ],
    ),
    (
        "promoted in place, its properties cannot be rewritten: restarted as a slave",
        IN_PLACE,
        {("main", 4): "failed"},
        [
            *ran(IN_PLACE, 5),
            "rollback_started: step 5 (rewrite) failed: boom",
            f"rollback 0 stop {A1}",
            f"rollback 1 rewrite {A1}",
            f"rollback 2 start {A1}",
            f"rollback 3 rewrite {A0} restore",
            "rolled_back: step 5 (rewrite) failed: boom; rolled back",
        ],
    ),
    (
        "promoted in place but never registered: no demote in place, the restart path's rollback",
        IN_PLACE,
        {("main", 5): "failed"},
        [
            *ran(IN_PLACE, 6),
            "rollback_started: step 6 (wait_master) failed: boom",
            *UNDONE,
            "rolled_back: step 6 (wait_master) failed: boom; rolled back",
        ],
    ),
    (
        "fell back, then never registered: rolled back",
        IN_PLACE,
        {("main", 3): "failed", ("main", 5): "failed"},
        [
            *ran(IN_PLACE, 4),
            "fallback_started: the in-place promotion (step 4) failed: boom",
            f"fallback 0 stop {A1}",
            f"fallback 1 rewrite {A1}",
            f"fallback 2 start {A1}",
            f"main 4 rewrite {A1}",
            f"main 5 wait_master {A1}",
            "rollback_started: step 6 (wait_master) failed: boom",
            *UNDONE,
            "rolled_back: step 6 (wait_master) failed: boom; rolled back",
        ],
    ),
    (
        "promoted in place, a failed canary: the group has a master, nothing undone",
        IN_PLACE,
        {("main", 6): "failed"},
        ran(IN_PLACE, 7) + ["failed: step 7 (canary) failed: boom"],
    ),
    (
        "a slave not re-pointed in place (best effort) holds nothing up",
        IN_PLACE_SLAVE,
        {("main", 8): "skipped"},
        ran(IN_PLACE_SLAVE) + ["succeeded: master died; promoted in place"],
    ),
    (
        "the pinned slave's file cannot be rewritten: rolled back, as on the restart path",
        IN_PLACE_SLAVE,
        {("main", 7): "failed"},
        ran(IN_PLACE_SLAVE, 8)
        + [
            "rollback_started: step 8 (rewrite) failed: boom",
            *UNDONE,
            "rolled_back: step 8 (rewrite) failed: boom; rolled back",
        ],
    ),
    (
        "a fence plan runs to its end",
        FENCE,
        {},
        ran(FENCE) + ["succeeded: second master"],
    ),
    (
        "a fence plan is never rolled back",
        FENCE,
        {("main", 2): "failed"},
        ran(FENCE, 3) + ["failed: step 3 (move_store_aside) failed: boom"],
    ),
]


@pytest.mark.parametrize(
    ("plan", "results", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_a_whole_plan_and_every_interruption_of_it(
    tmp_path: Path,
    plan: Plan,
    results: dict[tuple[str, int], StepStatus],
    expected: list[str],
) -> None:
    script = Script(results)
    assert play(plan, script, Progress(), []) == expected
    check_interrupted(tmp_path, plan, script, expected, [], depth=2)


L = LANES.steps
LANES_START = [
    f"main 0 rewrite {A0} | main 2 stop {A1}",
    f"main 1 stop {A0}",
    f"main 3 rewrite {A1}",
    f"main 4 confirm_fenced {A0}",
]
ROLLBACK = [f"rollback 0 stop {A1}", f"rollback 1 rewrite {A1} restore", f"rollback 2 start {A1}"]

# Side by side, the running step with the lowest index ending first; every other order is
# checked by test_lanes_in_every_order_and_every_interruption.
LANE_ROWS: list[tuple[str, Plan, dict[tuple[str, int], StepStatus], list[str]]] = [
    (
        "every step done: the fence and the candidate's stop and rewrite side by side",
        LANES,
        {},
        [
            *LANES_START,
            f"main 5 start {A1}",
            f"main 6 wait_master {A1}",
            f"main 7 canary {A1}",
            f"main 8 record_epoch {A1}",
            "succeeded: master died",
        ],
    ),
    (
        "a best-effort fence step that fails holds up no lane",
        LANES,
        {("main", 0): "skipped", ("main", 1): "skipped"},
        [
            *LANES_START,
            *[f"main {i} {L[i].kind} {A1}" for i in range(5, 9)],
            "succeeded: master died",
        ],
    ),
    (
        "no fence: the candidate, stopped side by side, is restored and started as a slave",
        LANES,
        {("main", 1): "skipped", ("main", 4): "failed"},
        [
            *LANES_START,
            "rollback_started (fence): boom",
            *ROLLBACK,
            f"rollback 3 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom; {A1} rolled back",
        ],
    ),
    (
        "no fence and no rewrite of the old master: its file is written as it was",
        LANES,
        {("main", 0): "skipped", ("main", 1): "skipped", ("main", 4): "failed"},
        [
            *LANES_START,
            "rollback_started (fence): boom",
            *ROLLBACK,
            f"rollback 3 rewrite {A0}",
            f"awaiting_fence: not promoting until {A0} is fenced: boom; {A1} rolled back",
        ],
    ),
    (
        "no fence, and the candidate's restore fails: failed, not awaiting the fence",
        LANES,
        {("main", 4): "failed", ("rollback", 2): "failed"},
        [
            *LANES_START,
            "rollback_started (fence): boom",
            *ROLLBACK,
            f"rollback 3 rewrite {A0} restore",
            "failed: boom; rolled back (rollback incomplete)",
        ],
    ),
    (
        "the candidate's stop fails: the running fence step ends, nothing else starts",
        LANES,
        {("main", 2): "failed"},
        [LANES_START[0], LANES_START[1], "failed: step 3 (stop) failed: boom"],
    ),
    (
        "the candidate's rewrite fails: rolled back once the fence lane's step has ended",
        LANES,
        {("main", 3): "failed"},
        [
            *LANES_START[:3],
            "rollback_started: step 4 (rewrite) failed: boom",
            f"rollback 0 stop {A1}",
            f"rollback 1 rewrite {A1}",
            f"rollback 2 start {A1}",
            f"rollback 3 rewrite {A0} restore",
            "rolled_back: step 4 (rewrite) failed: boom; rolled back",
        ],
    ),
    (
        "the new master never registers: rolled back as without lanes",
        LANES,
        {("main", 6): "failed"},
        [
            *LANES_START,
            f"main 5 start {A1}",
            f"main 6 wait_master {A1}",
            "rollback_started: step 7 (wait_master) failed: boom",
            *ROLLBACK,
            f"rollback 3 rewrite {A0} restore",
            "rolled_back: step 7 (wait_master) failed: boom; rolled back",
        ],
    ),
    (
        "the fence command runs in the fence lane, after the stop",
        LANES_WITH_FENCE_COMMAND,
        {("main", 1): "skipped"},
        [
            f"main 0 rewrite {A0} | main 3 stop {A1}",
            f"main 1 stop {A0}",
            f"main 2 fence_command {A0}",
            f"main 4 rewrite {A1}",
            f"main 5 confirm_fenced {A0}",
            f"main 6 start {A1}",
            f"main 7 wait_master {A1}",
            f"main 8 canary {A1}",
            f"main 9 record_epoch {A1}",
            "succeeded: master died",
        ],
    ),
    (
        "no fence after the fence command either: the candidate is rolled back",
        LANES_WITH_FENCE_COMMAND,
        {("main", 1): "skipped", ("main", 2): "skipped", ("main", 5): "failed"},
        [
            f"main 0 rewrite {A0} | main 3 stop {A1}",
            f"main 1 stop {A0}",
            f"main 2 fence_command {A0}",
            f"main 4 rewrite {A1}",
            f"main 5 confirm_fenced {A0}",
            "rollback_started (fence): boom",
            *ROLLBACK,
            f"rollback 3 rewrite {A0} restore",
            f"awaiting_fence: not promoting until {A0} is fenced: boom; {A1} rolled back",
        ],
    ),
]


@pytest.mark.parametrize(
    ("plan", "results", "expected"), [r[1:] for r in LANE_ROWS], ids=[r[0] for r in LANE_ROWS]
)
def test_lanes_in_every_order_and_every_interruption(
    tmp_path: Path,
    plan: Plan,
    results: dict[tuple[str, int], StepStatus],
    expected: list[str],
) -> None:
    script = Script(results)
    assert play(plan, script, Progress(), []) == expected
    every = orders(plan, script)
    assert len(every) > 1
    for choices in every:
        check_interrupted_lanes(tmp_path, plan, script, Picker(choices), expected[-1])


def test_a_crash_between_a_failure_and_its_rollback_runs_the_failed_step_again(
    tmp_path: Path,
) -> None:
    """Spelled out once (the tables check it for every row): the journal says step 7 failed
    and nothing after; the resumed run runs step 7 again, and fails into the rollback."""
    journal: list[dict[str, Any]] = []
    play(PROMOTION, Script({("main", 6): "failed"}), Progress(), journal)
    cut = next(i for i, e in enumerate(journal) if e["event"] == "step_failed") + 1
    resumed = progress_of(tmp_path, PROMOTION, journal[:cut])
    assert resumed == Progress(
        done=frozenset(range(6)), backups=frozenset({A0, A1}), is_rollback_interrupted=False
    )
    assert render(next_action(PROMOTION, resumed)) == f"main 6 wait_master {A1}"


# --------------------------------------------------------------------------- single transitions

WAIT = RunStep("main", 6, PROMOTION.steps[6])


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (Progress(), f"main 0 rewrite {A0}"),
        (Progress(done=frozenset(range(9))), "succeeded: master died"),
        # Done steps are skipped wherever they are, not only as a prefix.
        (Progress(done=frozenset({0, 1, 2, 4})), f"main 3 stop {A1}"),
        (
            Progress(is_rollback_interrupted=True),
            "rollback_started: resumed an interrupted rollback",
        ),
        (
            Progress(done=frozenset(range(6)), failed=6, failed_detail="x"),
            "rollback_started: step 7 (wait_master) failed: x",
        ),
        # Once the candidate is touched, an unjournaled failure of an earlier step cannot
        # happen; a failure while it is untouched just fails.
        (
            Progress(done=frozenset({0, 1}), failed=3, failed_detail="x"),
            "failed: step 4 (stop) failed: x",
        ),
        (
            Progress(failed=2, failed_detail="x", backups=frozenset({A0})),
            f"rollback 9 rewrite {A0} restore",
        ),
        (
            Progress(failed=2, failed_detail="x", backups=frozenset({A0}), is_fence_restored=True),
            f"awaiting_fence: not promoting until {A0} is fenced: x",
        ),
        # Only the old master's backup counts for the restore after no fence.
        (
            Progress(failed=2, failed_detail="x", backups=frozenset({A1})),
            f"awaiting_fence: not promoting until {A0} is fenced: x",
        ),
        (
            Progress(rollback_why="why", rollback_ran=1, backups=frozenset({A1})),
            f"rollback 1 rewrite {A1} restore",
        ),
        (Progress(rollback_why="why", rollback_ran=1), f"rollback 1 rewrite {A1}"),
        (Progress(rollback_why="why", rollback_ran=4), "rolled_back: why; rolled back"),
        (
            Progress(rollback_why="why", rollback_ran=4, is_rollback_incomplete=True),
            "failed: why; rolled back (rollback incomplete)",
        ),
    ],
)
def test_next_action(progress: Progress, expected: str) -> None:
    assert render(next_action(PROMOTION, progress)) == expected


M = frozenset  # for the running sets below


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (Progress(), f"main 0 rewrite {A0} | main 2 stop {A1}"),
        (Progress(running=M({("main", 0), ("main", 2)})), "wait"),
        (Progress(done=M({0}), running=M({("main", 2)})), f"main 1 stop {A0}"),
        (Progress(done=M({2}), running=M({("main", 0)})), f"main 3 rewrite {A1}"),
        (Progress(done=M({0, 1, 2}), running=M({("main", 3)})), "wait"),
        # The gate joins the lanes; the candidate's start waits for the gate.
        (Progress(done=M({0, 1, 2, 3})), f"main 4 confirm_fenced {A0}"),
        (Progress(done=M({0, 1, 2, 3, 4})), f"main 5 start {A1}"),
        # Out of order, as a resumed journal may say: each lane goes on where it stands.
        (Progress(done=M({1, 3})), f"main 0 rewrite {A0} | main 2 stop {A1}"),
        (Progress(done=M({0, 1, 3})), f"main 2 stop {A1}"),
        # A failure: the running step ends first, nothing else starts, then it is judged.
        (Progress(done=M({0}), running=M({("main", 1)}), failed=2, failed_detail="x"), "wait"),
        (Progress(done=M({0, 1}), failed=2, failed_detail="x"), "failed: step 3 (stop) failed: x"),
        (
            Progress(done=M({0, 1, 2}), failed=3, failed_detail="x"),
            "rollback_started: step 4 (rewrite) failed: x",
        ),
        (
            Progress(done=M({0, 1, 2, 3}), failed=4, failed_detail="x", backups=M({A0, A1})),
            "rollback_started (fence): x",
        ),
        # A resumed rollback: after the gate (everything it waits for done) or not.
        (
            Progress(done=M({0, 1, 2, 3}), is_rollback_interrupted=True),
            "rollback_started (fence): resumed an interrupted rollback",
        ),
        (
            Progress(done=M({0, 1, 2}), is_rollback_interrupted=True),
            "rollback_started: resumed an interrupted rollback",
        ),
        (
            Progress(done=M(range(6)), is_rollback_interrupted=True),
            "rollback_started: resumed an interrupted rollback",
        ),
        (
            Progress(rollback_why="x", is_fence_rollback=True, rollback_ran=4),
            f"awaiting_fence: not promoting until {A0} is fenced: x; {A1} rolled back",
        ),
        (Progress(rollback_why="x", running=M({("rollback", 0)})), "wait"),
    ],
)
def test_next_action_side_by_side(progress: Progress, expected: str) -> None:
    assert render(next_action(LANES, progress)) == expected


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (Progress(done=M({0, 1, 2})), f"main 3 promote_in_place {A1}"),
        (
            Progress(done=M({0, 1, 2}), failed=3, failed_detail="refused (log_moved)"),
            "fallback_started: the in-place promotion (step 4) failed: refused (log_moved)",
        ),
        # Falling back: the fallback steps one by one, then the steps after the in-place one.
        (Progress(done=M({0, 1, 2}), fallback_why="w"), f"fallback 0 stop {A1}"),
        (
            Progress(done=M({0, 1, 2}), fallback_why="w", fallback_done=M({0})),
            f"fallback 1 rewrite {A1}",
        ),
        (
            Progress(done=M({0, 1, 2}), fallback_why="w", running=M({("fallback", 1)})),
            "wait",
        ),
        (
            Progress(done=M({0, 1, 2}), fallback_why="w", fallback_done=M({0, 1, 2})),
            f"main 4 rewrite {A1}",
        ),
        (
            Progress(done=M(range(8)) - {3}, fallback_why="w", fallback_done=M({0, 1, 2})),
            "succeeded: master died; promoted by restart: w",
        ),
        (Progress(done=M(range(8))), "succeeded: master died; promoted in place"),
        (
            Progress(done=M({0, 1, 2}), fallback_why="w", fallback_failed=0, failed_detail="x"),
            "failed: w; then fallback step 1 (stop) failed: x",
        ),
        (
            Progress(
                done=M({0, 1, 2}),
                fallback_why="w",
                fallback_done=M({0}),
                fallback_failed=1,
                failed_detail="x",
            ),
            "rollback_started: w; then fallback step 2 (rewrite) failed: x",
        ),
        # Promoted in place: a later failure rolls the candidate back (restarted as a slave).
        (
            Progress(done=M({0, 1, 2, 3}), failed=4, failed_detail="x"),
            "rollback_started: step 5 (rewrite) failed: x",
        ),
    ],
)
def test_next_action_in_place(progress: Progress, expected: str) -> None:
    assert render(next_action(IN_PLACE, progress)) == expected


def test_an_in_place_step_without_a_fallback_rolls_back_when_it_fails() -> None:
    """A plan journaled with no fallback (none planned): the step's outcome may be unknown,
    so the candidate is restarted as a slave rather than left as it may be."""
    plan = replace(IN_PLACE, fallback=())
    progress = Progress(done=M({0, 1, 2}), failed=3, failed_detail="x")
    assert render(next_action(plan, progress)) == (
        "rollback_started: step 4 (promote_in_place) failed: x"
    )


def test_a_resumed_fallback_reads_its_reason_and_steps_from_the_journal(tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = [
        *({"event": "step_done", "index": i, "phase": "main"} for i in range(3)),
        {"event": "step_started", "index": 3, "phase": "main"},
        {"event": "step_failed", "index": 3, "phase": "main"},
        {"event": "fallback_started", "reason": "refused"},
        {"event": "step_done", "index": 0, "phase": "fallback"},
        {"event": "step_started", "index": 1, "phase": "fallback"},
    ]
    resumed = progress_of(tmp_path, IN_PLACE, entries)
    assert (resumed.fallback_why, resumed.fallback_done, resumed.done) == (
        "refused",
        frozenset({0}),
        frozenset({0, 1, 2}),
    )
    assert render(next_action(IN_PLACE, resumed)) == f"fallback 1 rewrite {A1}"


def test_started_steps_run_until_they_end() -> None:
    first, second = RunStep("main", 0, L[0]), RunStep("main", 2, L[2])
    progress = Progress().started(first).started(second)
    assert progress.running == {("main", 0), ("main", 2)}
    progress = progress.after(second, "failed", "x", backups=frozenset())
    assert (progress.running, progress.failed) == (frozenset({("main", 0)}), 2)
    # A second failure while the first is judged changes nothing but the running set.
    third = RunStep("main", 1, L[1])
    again = progress.started(third).after(third, "failed", "y", backups=frozenset())
    assert (again.failed, again.failed_detail, again.running) == (2, "x", frozenset({("main", 0)}))


@pytest.mark.parametrize(
    ("before", "ran", "status", "after"),
    [
        (Progress(), RunStep("main", 0, PROMOTION.steps[0]), "done", Progress(done=frozenset({0}))),
        (
            Progress(),
            RunStep("main", 1, PROMOTION.steps[1]),
            "skipped",
            Progress(done=frozenset({1})),
        ),
        (Progress(), WAIT, "failed", Progress(failed=6, failed_detail="d")),
        (
            Progress(failed=2, failed_detail="x"),
            RunStep("rollback", 9, PROMOTION.steps[0], restore_backup=True),
            "failed",
            Progress(failed=2, failed_detail="x", is_fence_restored=True),
        ),
        (
            Progress(rollback_why="w"),
            RunStep("rollback", 0, PROMOTION.rollback[0]),
            "done",
            Progress(rollback_why="w", rollback_ran=1),
        ),
        (
            Progress(rollback_why="w"),
            RunStep("rollback", 0, PROMOTION.rollback[0]),
            "failed",
            Progress(rollback_why="w", rollback_ran=1, is_rollback_incomplete=True),
        ),
    ],
)
def test_progress_after_a_step(
    before: Progress, ran: RunStep, status: StepStatus, after: Progress
) -> None:
    assert before.after(ran, status, "d", backups=frozenset()) == after


def test_rolling_back_starts_the_rollback_at_its_first_step() -> None:
    progress = Progress(done=frozenset({0}), is_rollback_interrupted=True).rolling_back("w")
    assert (progress.rollback_why, progress.rollback_ran) == ("w", 0)
    assert render(next_action(PROMOTION, progress)) == f"rollback 0 stop {A1}"


# --------------------------------------------------------------------------- retries


def step(kind: StepKind, *, best_effort: bool = False) -> Step:
    return Step(kind, A1, "h", "p", is_best_effort=best_effort)


@pytest.mark.parametrize(
    ("step_", "timeout", "budget"),
    [
        (step(StepKind.STOP), 60.0, 60.0),
        (step(StepKind.REWRITE), 60.0, 60.0),
        (step(StepKind.START), 3.0, 3.0),
        (step(StepKind.MOVE_STORE_ASIDE), 60.0, 60.0),
        (step(StepKind.RECORD_EPOCH), 60.0, 60.0),
        # A best-effort step: a dead host must not hold the promotion for long.
        (step(StepKind.STOP, best_effort=True), 60.0, 15.0),
        (step(StepKind.REWRITE, best_effort=True), 3.0, 3.0),
        # They wait within their own deadline; a fence command is not repeated blindly.
        (step(StepKind.WAIT_MASTER), 60.0, None),
        (step(StepKind.CANARY), 60.0, None),
        (step(StepKind.CONFIRM_FENCED), 60.0, None),
        (step(StepKind.FENCE_COMMAND, best_effort=True), 60.0, None),
    ],
)
def test_retry_budget(step_: Step, timeout: float, budget: float | None) -> None:
    assert retry_budget_seconds(step_, timeout) == budget


@pytest.mark.parametrize(
    ("step_", "budget"),
    [
        # An earlier best-effort step could not reach the host: one try, not 15 s more.
        (step(StepKind.STOP, best_effort=True), None),
        (step(StepKind.REWRITE, best_effort=True), None),
        # A step the promotion needs keeps its whole budget on any host.
        (step(StepKind.STOP), 60.0),
        (step(StepKind.START), 60.0),
    ],
)
def test_retry_budget_on_a_host_found_unreachable(step_: Step, budget: float | None) -> None:
    assert retry_budget_seconds(step_, 60.0, is_host_unreachable=True) == budget


# --------------------------------------------------------------------------- fence progress

S = {f"{s.kind} {s.broker_key}": s for s in WITH_FENCE_COMMAND.steps}


@pytest.mark.parametrize(
    ("plan", "step_", "command_ran", "after"),
    [
        (WITH_FENCE_COMMAND, S[f"rewrite {A0}"], True, FenceProgress(is_rewritten=True)),
        (WITH_FENCE_COMMAND, S[f"stop {A0}"], True, FenceProgress(is_stopped=True)),
        (WITH_FENCE_COMMAND, S[f"fence_command {A0}"], True, FenceProgress(is_command_fenced=True)),
        # "not needed: the host fence succeeded"
        (WITH_FENCE_COMMAND, S[f"fence_command {A0}"], False, FenceProgress()),
        # The candidate's steps and a fence plan's steps are no fence of an old master.
        (WITH_FENCE_COMMAND, S[f"stop {A1}"], True, FenceProgress()),
        (WITH_FENCE_COMMAND, S[f"rewrite {A1}"], True, FenceProgress()),
        (FENCE, FENCE.steps[1], True, FenceProgress()),
    ],
)
def test_fence_progress_after_a_step(
    plan: Plan, step_: Step, command_ran: bool, after: FenceProgress
) -> None:
    assert FenceProgress().after(plan, step_, command_ran=command_ran) == after


@pytest.mark.parametrize(
    ("done", "skipped", "expected"),
    [
        (set(), set(), FenceProgress()),
        ({0}, set(), FenceProgress(is_rewritten=True)),
        ({0, 1}, {1}, FenceProgress(is_rewritten=True)),
        ({0, 1}, set(), FenceProgress(is_rewritten=True, is_stopped=True)),
        # The journal keeps no detail: a fence command journaled as done counts as run.
        ({0, 1, 2}, {0, 1}, FenceProgress(is_command_fenced=True)),
        ({0, 1, 2, 3, 4}, {2}, FenceProgress(is_rewritten=True, is_stopped=True)),
    ],
)
def test_fence_progress_from_the_journal(
    tmp_path: Path, done: set[int], skipped: set[int], expected: FenceProgress
) -> None:
    entries = [
        {"event": "step_skipped" if i in skipped else "step_done", "index": i, "phase": "main"}
        for i in sorted(done)
    ]
    journal = Journal(tmp_path)
    journal.path("fo").parent.mkdir(parents=True)
    planned = {"event": "planned", "plan": WITH_FENCE_COMMAND.to_json()}
    journal.path("fo").write_text("".join(json.dumps(e) + "\n" for e in [planned, *entries]))
    read = journal.progress("fo")
    assert FenceProgress.resumed(WITH_FENCE_COMMAND, read) == expected
