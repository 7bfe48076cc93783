"""Several daemon instances, one actor (daemon/_ha.py), with a fake etcd and a fake clock:
only the leader acts, each step is committed to etcd first, a deposed leader stops before its
next step (no rollback), a new leader takes the state over from etcd and resumes, and without
etcd nobody acts. The real executor's gate is checked on its stand-in world (_act_world.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.unit._act_world import World as ActWorld
from tests.unit._act_world import run as run_world
from tests.unit._worlds import A0, NS1, NS2, World
from tests.unit.test_daemon_loop import (
    FakeClock,
    PropertiesHost,
    RecordingNotifier,
    ScriptedProber,
    make_config,
    properties,
)
from watchdog.act import FailoverResult, Journal, JournalProgress, StateStore, WatchdogState
from watchdog.config import WatchdogConfig
from watchdog.coord import (
    CoordView,
    EtcdUnavailable,
    FenceRefused,
    ForwardedRequest,
    GroupView,
    InstanceView,
    LeaderRecord,
)
from watchdog.daemon import Daemon, FailoverEvents
from watchdog.daemon._ha import Deposed, own_group_views, view_disagreements
from watchdog.decide import Plan
from watchdog.hosts import Host

# -- a fake etcd shared by the instances of one test ------------------------------------------


class FakeEtcd:
    def __init__(self) -> None:
        self.leader: str | None = None
        self.token = 0
        self.unreachable: set[str] = set()  # instances cut off from it
        self.state: dict[str, bytes] = {}
        self.views: dict[str, InstanceView] = {}
        self.writes: list[tuple[str, dict[str, bytes]]] = []
        self.requests: list[ForwardedRequest] = []  # waiting for the leader
        self.replies: dict[str, list[Mapping[str, Any]]] = {}  # request id -> answers

    def elect(self, name: str | None) -> None:
        self.leader = name
        self.token += 1


class FakeCoordinator:
    def __init__(self, etcd: FakeEtcd, name: str, clock: FakeClock) -> None:
        self.etcd = etcd
        self.instance_name = name
        self.clock = clock
        self.lease_left_seconds = 3.0
        self.token: int | None = None  # as confirmed by its last cycle
        self.closed: bool | None = None

    async def start(self) -> None:
        pass

    async def close(self, *, resign: bool = True) -> None:
        self.closed = resign

    async def cycle(self, groups: Mapping[str, GroupView]) -> CoordView:
        e, me = self.etcd, self.instance_name
        if me in e.unreachable:
            self.token = None
            return CoordView(me, False, False, None, (), 0.0, None, "not leader: etcd unreachable")
        wall = self.clock.wall()
        stamped = {k: replace(g, at=wall) for k, g in groups.items()}
        e.views[me] = InstanceView(me, 0.0, wall, stamped)
        is_leader = e.leader == me
        self.token = e.token if is_leader else None
        leader = None if e.leader is None else LeaderRecord(e.leader, 0.0, 0.0)
        return CoordView(
            me,
            True,
            is_leader,
            leader,
            tuple(sorted(e.views.values(), key=lambda v: v.name)),
            3.0,
            self.token,
            "leader" if is_leader else f"not leader: {e.leader} leads",
            revision=len(e.writes) + 1,
        )

    async def fenced_write(self, puts: Mapping[str, bytes], deletes: tuple[str, ...] = ()) -> int:
        e, me = self.etcd, self.instance_name
        if me in e.unreachable or e.leader != me or self.token != e.token:
            raise FenceRefused(f"{me} no longer holds the leader key (now: {e.leader})")
        e.state.update(puts)
        e.writes.append((me, dict(puts)))
        return len(e.writes)

    async def read_state(self, prefix: str = "") -> dict[str, bytes]:
        if self.instance_name in self.etcd.unreachable:
            raise EtcdUnavailable("cut off")
        return dict(self.etcd.state)

    async def take_requests(self) -> list[ForwardedRequest]:
        e, me = self.etcd, self.instance_name
        if me in e.unreachable or e.leader != me:
            return []
        taken, e.requests = e.requests, []
        return taken

    async def reply(self, request: ForwardedRequest, seq: int, message: Mapping[str, Any]) -> None:
        answers = self.etcd.replies.setdefault(request.request_id, [])
        assert seq == len(answers) + 1, (seq, answers)
        answers.append(message)


# -- an executor that journals like the real one and passes each step through the gate -------


class StepwiseExecutor:
    def __init__(self, config: WatchdogConfig, emit: FailoverEvents) -> None:
        self.journal = Journal(config.state_dir)
        self.store = StateStore(config.state_dir)
        self.emit = emit
        self.gate: Any = None  # the daemon's before_step, set once the daemon exists
        self.runs: list[tuple[str, frozenset[int] | None]] = []
        self.done: list[tuple[str, int]] = []
        self.during_step: dict[int, Any] = {}  # index -> async callable run inside that step

    async def run(
        self, plan: Plan, failover_id: str, *, resume: JournalProgress | None = None
    ) -> FailoverResult:
        j, st = self.journal, self.store
        self.runs.append((failover_id, None if resume is None else resume.done_steps))
        if resume is None:
            j.append(failover_id, "planned", plan=plan.to_json())
            st.save(st.load().with_running(plan.broker_name, failover_id))
            done: set[int] = set()
        else:
            j.append(failover_id, "resumed", done_steps=sorted(resume.done_steps))
            done = set(resume.done_steps)
        for i, step in enumerate(plan.steps):
            if i in done:
                continue
            await self.gate(failover_id, i, "main")
            j.append(failover_id, "step_started", index=i, phase="main", kind=str(step.kind))
            if i in self.during_step:
                await self.during_step[i]()
            j.append(failover_id, "step_done", index=i, phase="main", kind=str(step.kind))
            self.done.append((failover_id, i))
        j.append(failover_id, "finished", outcome="succeeded", detail="scripted")
        state = st.load()
        blocked = replace(state.group(plan.broker_name), blocked_until=4e9, block_reason="done")
        st.save(state.with_group(plan.broker_name, blocked).with_running(plan.broker_name, None))
        result = FailoverResult(
            failover_id, plan.broker_name, plan.kind, "succeeded", "scripted", 0.1, ()
        )
        self.emit("failover_finished", {"failover_id": failover_id, "result": result})
        return result


class Instance:
    """One daemon instance: its own state dir, the shared world, clock and fake etcd."""

    def __init__(
        self, tmp_path: Path, name: str, etcd: FakeEtcd, world: World, clock: FakeClock
    ) -> None:
        self.name = name
        self.config = make_config(
            tmp_path / name,
            dry_run=False,
            instance_name=name,
            etcd={"endpoints": ["127.0.0.1:2379"], "lease_ttl": "3s"},
        )
        self.coordinator = FakeCoordinator(etcd, name, clock)
        made: list[StepwiseExecutor] = []

        def executors(
            config: WatchdogConfig, hosts: Mapping[str, Host], emit: FailoverEvents
        ) -> StepwiseExecutor:
            made.append(StepwiseExecutor(config, emit))
            return made[-1]

        self.daemon = Daemon(
            "watchdog.toml",
            self.config,
            prober=ScriptedProber(world, clock),
            notifier=RecordingNotifier(),
            hosts={
                "local": PropertiesHost(
                    {"/p0": properties(0, "ASYNC_MASTER"), "/p1": properties(1, "SLAVE")}
                )
            },
            executor=executors,
            registry=CollectorRegistry(),
            clock=clock.now,
            wall_clock=clock.wall,
            coordinator=self.coordinator,
        )
        assert self.daemon.ha is not None
        self.executor = made[-1]
        self.executor.gate = self.daemon.ha.before_step

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        return self.daemon.metrics.registry.get_sample_value(name, dict(labels or {}))

    def failover_ids(self) -> list[str]:
        return sorted(p.stem for p in (Path(self.config.state_dir) / "failovers").glob("*.jsonl"))

    def journal(self, failover_id: str) -> list[dict[str, Any]]:
        return Journal(self.config.state_dir).read(failover_id)


async def settle() -> None:
    """Let failover tasks run as far as they can (their awaits are on the loop only)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def cycles(
    instances: list[Instance], clock: FakeClock, until: float, logs: list[dict[str, Any]]
) -> None:
    """Each instance's cycle, one after another, once per fake second, up to `until`."""
    while clock.t <= until:
        for inst in instances:
            with capture_logs() as captured:
                await inst.daemon.run_cycle()
                await settle()
            logs.extend({**e, "instance": inst.name} for e in captured)
        clock.t += 1.0


def crash(at: float) -> World:
    """The master killed -9 at `at`: refused, dropped by both nameservers (ODOWN at once)."""
    return World(master_down=(at, 1e9), master_failure="refused", deregistered_by=(NS1, NS2))


def events(logs: list[dict[str, Any]], start: str, instance: str | None = None) -> list[str]:
    return [
        str(e["event"])
        for e in logs
        if str(e["event"]).startswith(start) and instance in (None, e["instance"])
    ]


# -- only the leader acts ---------------------------------------------------------------------


def test_only_the_leader_starts_the_failover_and_commits_each_step_first(tmp_path: Path) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1, wd2 = (Instance(tmp_path, n, etcd, world, clock) for n in ("wd-1", "wd-2"))
    logs: list[dict[str, Any]] = []
    asyncio.run(cycles([wd1, wd2], clock, until=8.0, logs=logs))

    assert wd2.executor.runs == [] and wd2.failover_ids() == []  # the follower never acts
    [failover_id] = wd1.failover_ids()
    assert wd1.executor.runs == [(failover_id, None)]
    steps = len(Plan.from_json(wd1.journal(failover_id)[0]["plan"]).steps)
    assert [i for _, i in wd1.executor.done] == list(range(steps))
    # The follower said once what it would do, and why it does not.
    would = events(logs, "not the leader (wd-1): would act: promoting broker-a", "wd-2")
    assert len(would) == 1, would
    lines = [e for e in logs if e["instance"] == "wd-2" and e.get("decision") == "promote"]
    lines = [e for e in lines if "cycle" in e]  # the canonical line of each cycle
    assert len(lines) > 1
    assert all(e["event"].startswith("not the leader, would act: promoting") for e in lines)
    assert not events(logs, "not the leader", "wd-1")

    # Before each step, one fenced write held its journal up to the step before.
    commits = [dict(p) for who, p in etcd.writes if f"failovers/{failover_id}.jsonl" in p]
    assert {who for who, _ in etcd.writes} == {"wd-1"}
    for i in range(steps):
        journal = [json.loads(x) for x in commits[i][f"failovers/{failover_id}.jsonl"].splitlines()]
        done = [e["index"] for e in journal if e["event"] == "step_done"]
        assert done == list(range(i)), (i, done)
        assert json.loads(commits[i]["state.json"])["running"] == {"broker-a": failover_id}
    # ... and one more after the end: the finished journal and the state without it running.
    final = commits[-1]
    assert b'"finished"' in final[f"failovers/{failover_id}.jsonl"]
    assert json.loads(final["state.json"])["running"] == {}
    assert json.loads(etcd.state["state.json"]) == json.loads(
        (Path(wd1.config.state_dir) / "state.json").read_bytes()
    )
    # Metrics: one leader, both see two instances and etcd.
    assert (wd1.metric("rmq_watchdog_leader"), wd2.metric("rmq_watchdog_leader")) == (1.0, 0.0)
    assert wd2.metric("rmq_watchdog_etcd_up") == 1.0
    assert wd1.metric("rmq_watchdog_instances_seen") == 2.0
    assert wd1.metric(
        "rmq_watchdog_failovers_total", {"broker_name": "broker-a", "outcome": "succeeded"}
    )


def test_a_deposed_leader_stops_before_its_next_step_and_the_new_one_resumes(
    tmp_path: Path,
) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1, wd2 = (Instance(tmp_path, n, etcd, world, clock) for n in ("wd-1", "wd-2"))

    async def lose_the_lead() -> None:
        etcd.elect("wd-2")  # wd-1's lease lapsed meanwhile: wd-2 holds the key now

    wd1.executor.during_step[1] = lose_the_lead
    # wd-2's own (stale) state dir must not count: etcd's copy wins at the takeover.
    StateStore(wd2.config.state_dir).save(WatchdogState(running={"broker-a": "stale-id"}))
    logs: list[dict[str, Any]] = []
    asyncio.run(cycles([wd1, wd2], clock, until=10.0, logs=logs))

    [failover_id] = wd1.failover_ids()
    # wd-1: steps 1 and 2, then the gate of step 3 refused: stopped there, nothing undone.
    assert [i for _, i in wd1.executor.done] == [0, 1]
    deposed = events(logs, "deposed:", "wd-1")
    assert deposed == [
        f"deposed: stopped before step 3 of {failover_id}; the new leader resumes it"
    ]
    local = [e["event"] for e in wd1.journal(failover_id)]
    assert "finished" not in local and "rollback_started" not in local
    assert local[-1] == "deposed"
    assert StateStore(wd1.config.state_dir).load().running == {}
    assert wd1.metric(
        "rmq_watchdog_failovers_total", {"broker_name": "broker-a", "outcome": "succeeded"}
    ) in (None, 0.0)
    assert wd1.metric("rmq_watchdog_leader") == 0.0

    # wd-2 took over etcd's journal (its steps up to step 1 done, as committed before step
    # 2) and resumed it: step 2 again, since wd-1's "done" of it never reached etcd.
    assert wd2.failover_ids() == [failover_id]
    assert wd2.executor.runs == [(failover_id, frozenset({0}))]
    steps = len(Plan.from_json(wd2.journal(failover_id)[0]["plan"]).steps)
    assert [i for _, i in wd2.executor.done] == list(range(1, steps))
    took_over = events(logs, "wd-2 took over", "wd-2")
    assert len(took_over) == 1 and "1 journal(s) from etcd" in took_over[0]
    assert [e["event"] for e in wd2.journal(failover_id)].count("finished") == 1
    assert StateStore(wd2.config.state_dir).load().running == {}
    assert b'"finished"' in etcd.state[f"failovers/{failover_id}.jsonl"]
    assert {who for who, _ in etcd.writes} == {"wd-1", "wd-2"}
    assert wd2.metric("rmq_watchdog_leader") == 1.0


def test_a_leader_whose_lease_runs_out_mid_step_stops_there(tmp_path: Path) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1 = Instance(tmp_path, "wd-1", etcd, world, clock)
    stuck = asyncio.Event()

    async def hang() -> None:
        wd1.coordinator.lease_left_seconds = 0.2  # etcd stopped answering: no renewal
        await stuck.wait()

    wd1.executor.during_step[2] = hang

    async def body() -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = []
        await cycles([wd1], clock, until=5.0, logs=logs)
        with capture_logs() as captured:
            await asyncio.sleep(0.5)  # the lease watch looks every 0.1 s
        return logs + [{**e, "instance": "wd-1"} for e in captured]

    logs = asyncio.run(body())
    [failover_id] = wd1.failover_ids()
    assert [i for _, i in wd1.executor.done] == [0, 1]
    assert events(logs, "deposed:") == [
        f"deposed: stopped during step 3 of {failover_id}; the new leader resumes it"
    ]
    assert "finished" not in [e["event"] for e in wd1.journal(failover_id)]


def test_the_new_leader_resumes_only_after_taking_the_state_over(tmp_path: Path) -> None:
    """A leader killed mid-failover (nothing more from it): the next one writes etcd's state
    and journal into its state dir first, then resumes, and starts nothing new before."""
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1, wd2 = (Instance(tmp_path, n, etcd, world, clock) for n in ("wd-1", "wd-2"))
    never = asyncio.Event()

    async def die() -> None:
        etcd.unreachable.add("wd-1")  # gone: it neither answers nor writes again
        etcd.elect(None)
        await never.wait()

    wd1.executor.during_step[3] = die
    logs: list[dict[str, Any]] = []

    async def body() -> None:
        await cycles([wd1, wd2], clock, until=5.0, logs=logs)
        assert etcd.leader is None and wd2.executor.runs == []  # nobody leads: nobody acts
        etcd.elect("wd-2")
        await cycles([wd2], clock, until=8.0, logs=logs)
        never.set()

    asyncio.run(body())
    [failover_id] = wd1.failover_ids()
    assert wd2.executor.runs == [(failover_id, frozenset({0, 1, 2}))]
    state = json.loads((Path(wd2.config.state_dir) / "state.json").read_bytes())
    assert state["running"] == {}
    assert wd2.failover_ids() == [failover_id]  # resumed, no second failover


# -- the failsafe -----------------------------------------------------------------------------


def test_no_failover_without_etcd_and_one_when_it_is_back(tmp_path: Path) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1 = Instance(tmp_path, "wd-1", etcd, world, clock)
    logs: list[dict[str, Any]] = []

    async def body() -> None:
        await cycles([wd1], clock, until=1.0, logs=logs)
        etcd.unreachable.add("wd-1")
        await cycles([wd1], clock, until=9.0, logs=logs)
        assert wd1.executor.runs == []
        assert wd1.metric("rmq_watchdog_etcd_up") == 0.0
        assert wd1.metric("rmq_watchdog_leader") == 0.0
        assert wd1.metric("rmq_watchdog_instances_seen") == 0.0
        # Probing and judging go on: the master is objectively down, nobody acts.
        states = {e.get("state") for e in logs if e.get("decision") == "promote"}
        assert states == {"MASTER_ODOWN"}
        etcd.unreachable.clear()
        await cycles([wd1], clock, until=12.0, logs=logs)

    asyncio.run(body())
    assert len(events(logs, "etcd unreachable: wd-1 is not the leader")) == 1
    assert len(events(logs, "etcd answers again")) == 1
    assert len(events(logs, "not the leader (etcd unreachable): would act: promoting")) == 1
    assert len(wd1.executor.runs) == 1 and wd1.metric("rmq_watchdog_leader") == 1.0


def test_other_instances_views_are_vantage_points(tmp_path: Path) -> None:
    """Another instance that still reaches the master keeps the leader from ODOWN; once it
    too says down, the leader fails over. Views of the previous cycle, as published."""
    clock, etcd = FakeClock(), FakeEtcd()
    world = World(master_down=(3.0, 1e9), deregistered_by=(NS1, NS2))  # timeouts: down_after
    etcd.elect("wd-1")
    wd1 = Instance(tmp_path, "wd-1", etcd, world, clock)

    def wd2_says(alive: bool) -> None:
        at = clock.wall()
        view = GroupView(A0, down=not alive, alive=alive, reason="wd-2's probe", at=at)
        etcd.views["wd-2"] = InstanceView("wd-2", 0.0, at, {"broker-a": view})

    logs: list[dict[str, Any]] = []

    async def body() -> None:
        while clock.t <= 10.0:
            wd2_says(alive=True)
            await cycles([wd1], clock, until=clock.t, logs=logs)
        lines = [e for e in logs if e.get("decision")]
        assert "MASTER_ODOWN" not in {e["state"] for e in lines}
        assert wd1.executor.runs == []
        sample = {"broker_name": "broker-a", "peer": "wd-2"}
        assert wd1.metric("rmq_watchdog_view_disagreement", sample) == 1.0
        while clock.t <= 14.0:
            wd2_says(alive=False)
            await cycles([wd1], clock, until=clock.t, logs=logs)
        assert wd1.metric("rmq_watchdog_view_disagreement", sample) == 0.0

    asyncio.run(body())
    assert len(wd1.executor.runs) == 1
    odown = next(e for e in logs if e.get("state") == "MASTER_ODOWN")
    assert odown["cycle"] > 11  # wd-2's "alive" of t=10, read at t=11, held it back
    assert odown["event"].endswith("from 4 of 4 vantage points")  # own, 2 nameservers, wd-2


# -- the control socket on a follower ---------------------------------------------------------


def test_a_follower_refuses_failover_and_ack_naming_the_leader(tmp_path: Path) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=3.0)
    etcd.elect("wd-1")
    wd1, wd2 = (Instance(tmp_path, n, etcd, world, clock) for n in ("wd-1", "wd-2"))
    sent: list[Mapping[str, Any]] = []

    async def body() -> Mapping[str, Any]:
        await cycles([wd1, wd2], clock, until=1.0, logs=[])
        from watchdog.daemon import FailoverRequest

        await wd2.daemon._control_failover(FailoverRequest("broker-a"), sent.append)
        return wd2.daemon._control_ack("broker-a")

    ack = asyncio.run(body())
    assert sent == [{"error": "wd-2 is not the leader: wd-1 leads; ask wd-1"}]
    assert ack == {"error": "wd-2 is not the leader: wd-1 leads; ask wd-1"}
    assert wd2.executor.runs == []


def test_the_leader_runs_requests_other_hosts_put_in_etcd_and_answers_each_in_order(
    tmp_path: Path,
) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=30.0)
    etcd.elect("wd-1")
    wd1, wd2 = (Instance(tmp_path, n, etcd, world, clock) for n in ("wd-1", "wd-2"))

    async def body() -> None:
        await cycles([wd1, wd2], clock, until=1.0, logs=[])
        etcd.requests = [
            ForwardedRequest("r-ack", {"op": "ack", "broker_name": "broker-a", "from": "h3"}, 7),
            ForwardedRequest("r-live", {"op": "failover", "broker_name": "broker-a"}, 7),
            ForwardedRequest("r-forced", {"op": "failover", "broker_name": "broker-a",
                                          "force": True, "from": "h3"}, 7),  # fmt: skip
            ForwardedRequest("r-bad", None, 7, "bad request: not a JSON object"),
            ForwardedRequest("r-odd", {"op": "switchover", "catch_up_timeout_seconds": []}, 7),
        ]
        await cycles([wd1, wd2], clock, until=2.0, logs=[])
        for _ in range(50):
            await settle()

    asyncio.run(body())
    r = etcd.replies
    assert r["r-ack"] == [
        {"ok": True, "message": "automatic failover of broker-a re-enabled"},
        {"end": True},
    ]
    # Refused as the leader refuses its own control socket: the master answers.
    assert len(r["r-live"]) == 2 and "error" in r["r-live"][0] and r["r-live"][1] == {"end": True}
    forced = r["r-forced"]
    assert forced[0]["event"] == "accepted" and forced[-2]["event"] == "result", forced
    assert forced[-2]["outcome"] == "succeeded" and forced[-1] == {"end": True}
    assert wd1.executor.runs == [(forced[0]["failover_id"], None)]
    assert r["r-bad"] == [{"error": "bad request: not a JSON object"}, {"end": True}]
    assert r["r-odd"][0]["error"].startswith("bad request: ") and r["r-odd"][1] == {"end": True}
    assert wd2.executor.runs == []  # the follower takes nothing


def test_a_follower_takes_no_request(tmp_path: Path) -> None:
    clock, etcd, world = FakeClock(), FakeEtcd(), crash(at=30.0)
    etcd.elect("wd-1")
    wd2 = Instance(tmp_path, "wd-2", etcd, world, clock)
    etcd.requests = [ForwardedRequest("r-ack", {"op": "ack", "broker_name": "broker-a"}, 7)]
    asyncio.run(cycles([wd2], clock, until=2.0, logs=[]))
    assert etcd.replies == {} and len(etcd.requests) == 1


# -- pure parts -------------------------------------------------------------------------------


def test_own_views_come_from_the_own_probe_and_an_isolated_instance_says_nothing() -> None:
    from tests.unit._worlds import Replay

    replay = Replay()
    alive = own_group_views(World().snapshot(0.0), replay.feed(World().snapshot(0.0)))
    assert alive["broker-a"] == GroupView(A0, False, True, "own probe answered")
    world = crash(at=1.0)
    down = own_group_views(world.snapshot(2.0), replay.feed(world.snapshot(2.0)))["broker-a"]
    assert (down.master, down.down, down.alive) == (A0, True, False)
    assert down.reason.startswith("own probe: refused for")
    cut = World(cut_off=(0.0, 1e9))
    replay = Replay()
    replay.run(cut, [0.0, 1.0, 2.0, 3.0, 4.0])
    isolated = own_group_views(cut.snapshot(5.0), replay.feed(cut.snapshot(5.0)))["broker-a"]
    assert (isolated.down, isolated.alive) == (False, False)


def test_view_disagreement_compares_judgements_of_fresh_views() -> None:
    mine = {"broker-a": GroupView(A0, False, True, "up")}
    same = InstanceView("b", 0.0, 100.0, {"broker-a": GroupView(A0, False, True, "other words")})
    other = InstanceView("c", 0.0, 100.0, {"broker-a": GroupView(A0, True, False, "down")})
    blind = InstanceView("d", 0.0, 100.0, {})
    stale = InstanceView("e", 0.0, 50.0, {"broker-a": GroupView(A0, True, False, "down")})
    got = view_disagreements(
        "a", mine, [same, other, blind, stale], now_wall=101.0, max_age_seconds=3.0
    )
    assert got == {"broker-a": {"b": False, "c": True, "d": True}}


# -- the real executor's gate -----------------------------------------------------------------


@pytest.mark.parametrize("refused_at", [2, 4])
def test_the_executor_stops_before_a_refused_step_without_rollback(
    tmp_path: Path, refused_at: int
) -> None:
    """Side by side (a crash): steps 0|2 start together, then 1|3, the gate step 4. A refusal
    starts no step of the batch, rolls nothing back, and leaves the journal unfinished."""
    gates: list[tuple[int, str]] = []

    async def body(world: ActWorld) -> None:
        async def gate(failover_id: str, index: int, phase: str) -> None:
            gates.append((index, phase))
            if index == refused_at:
                raise Deposed(f"stopped before step {index + 1} of {failover_id}", "test")

        config = world.config()
        await world.stop("broker-a:0")
        plan = world.promotion(config, deregistered_for_seconds=5.0)
        assert plan.lanes == ("fence", "candidate")
        with pytest.raises(Deposed, match=f"before step {refused_at + 1} of fo-1"):
            await world.executor(config, before_step=gate).run(plan, "fo-1")
        journal = Journal(config.state_dir).read("fo-1")
        started = [e["index"] for e in journal if e["event"] == "step_started"]
        assert refused_at not in started
        assert all((i, "main") in gates for i in started)  # no step without its gate
        kinds = {e["event"] for e in journal}
        assert "rollback_started" not in kinds and "finished" not in kinds
        assert StateStore(config.state_dir).load().running == {"broker-a": "fo-1"}
        if refused_at == 4:  # both lanes done: the candidate stays stopped and rewritten
            assert sorted(started) == [0, 1, 2, 3]
            assert world.brokers["broker-a:1"].fault == "refuse"
            assert world.props("broker-a:1").read_bytes() != world.originals["broker-a:1"]
        else:  # steps 0 and 2 start together: both gated first, 2 refused, none started
            assert started == [] and world.host.commands == []
            assert gates == [(0, "main"), (2, "main")]

    run_world(body, tmp_path)


def test_rollback_steps_pass_the_gate_too(tmp_path: Path) -> None:
    gates: list[tuple[int, str]] = []

    async def body(world: ActWorld) -> None:
        async def gate(failover_id: str, index: int, phase: str) -> None:
            gates.append((index, phase))

        config = world.config()
        await world.stop("broker-a:0")
        world.is_registering = False  # the new master never shows up: rolled back
        result = await world.executor(config, before_step=gate).run(world.promotion(config), "fo-1")
        assert result.outcome != "succeeded"
        journal = Journal(config.state_dir).read("fo-1")
        started = [(e["index"], e["phase"]) for e in journal if e["event"] == "step_started"]
        assert sorted(gates) == sorted(started)
        assert "rollback" in {phase for _, phase in gates}

    run_world(body, tmp_path)


def test_coordination_gauges_absent_until_set_and_etcd_ones_only_with_etcd() -> None:
    from watchdog.observe import WatchdogMetrics

    metrics = WatchdogMetrics(CollectorRegistry(), include_process_metrics=False)
    sample = metrics.registry.get_sample_value
    assert sample("rmq_watchdog_leader") is None
    metrics.update_coordination(is_leader=True)  # a watchdog alone: it is the actor
    assert sample("rmq_watchdog_leader") == 1.0
    assert sample("rmq_watchdog_etcd_up") is None
    assert sample("rmq_watchdog_instances_seen") is None
    metrics.update_coordination(is_leader=False, etcd_up=False, instances_seen=0)
    assert (sample("rmq_watchdog_leader"), sample("rmq_watchdog_etcd_up")) == (0.0, 0.0)
    assert sample("rmq_watchdog_instances_seen") == 0.0
