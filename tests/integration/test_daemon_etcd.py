"""Three watchdog daemons, one actor, on a real 3-member etcd (tests/etcd_cluster.py) and a real
RocketMQ 4.9.7 sandbox: every test kills the master with kill -9 and counts the promotions from
every instance's journals (and etcd's): exactly one, by whoever leads, whatever happens to the
leader or to etcd on the way.

The daemons are real processes (`python -m watchdog run`), each with its own state dir, config
and etcd key prefix per test; RMQ_WATCHDOG_CRASH_AFTER_STEP=N makes one exit 70 right after
failover step N. Leases are 3 s. One sandbox serves the module, restored between tests (brokers
stopped, files and stores reset), and one etcd cluster. Nothing asserts a speed: waits are
deadlines; the seconds a leader took to step down are printed.

The ≥ 20-run random kill point test is `long` (make chaos).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_cluster import EtcdCluster, start_etcd_cluster
from tests.integration.conftest import start_sandbox, stop_sandbox
from tests.integration.daemon_harness import (
    Daemon,
    StateDir,
    Topology,
    append_config,
    broker_config,
    nft_drop,
    registrations,
    wait_until,
)
from watchdog.model import PropertiesFile
from watchdog.tools.daemon_child import logged_at
from watchdog.tools.etcd import etcd_toml_table
from watchdog.tools.sandbox import Sandbox

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
NAMES = ("wd-1", "wd-2", "wd-3")
TTL_SECONDS = 3
CRASH_EXIT_CODE = 70
STEPS = 9  # the side-by-side promotion: fence | candidate lanes, the gate, then 4 more


def report(what: str, seconds: float) -> None:
    print(f"[ha timing] {what}: {seconds:.1f} s")


# --------------------------------------------------------------------------- the shared parts


@dataclass
class Box:
    sandbox: Sandbox
    top: Topology
    pristine: dict[str, bytes]
    is_dirty: bool = False

    def restore(self) -> None:
        """A healthy master/slave pair with empty stores and no epoch records."""
        if not self.is_dirty:
            self.is_dirty = True
            return
        box, top = self.sandbox, self.top
        for key in (A1, A0):
            if box.pid(key) is not None:
                box.stop(key)
        for key, data in self.pristine.items():
            top.properties[key].write_bytes(data)
            root = PropertiesFile.parse(data.decode("latin-1")).get("storePathRootDir")
            assert root
            shutil.rmtree(root, ignore_errors=True)
        for leftover in [*top.dir.glob("*.epoch"), *top.dir.glob("*.bak")]:
            leftover.unlink()
        for aside in (top.dir / "store").glob("*aside*"):
            shutil.rmtree(aside)
        box.start(A0, wait_registered=True)
        box.start(A1, wait_registered=True)
        one_master(top, top.addrs[A0])


def one_master(top: Topology, addr: str, timeout_seconds: float = 90) -> None:
    def check() -> bool:
        tables = registrations(top.nameservers).values()
        return all(t is not None and t.get("broker-a", {}).get(0) == addr for t in tables)

    wait_until(check, timeout_seconds, f"{addr} as the one id 0 on every nameserver")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    directory = tmp_path_factory.mktemp("sandbox-ha")
    sandbox = start_sandbox(directory)
    try:
        top = Topology.of(sandbox)
        yield Box(sandbox, top, {key: top.properties[key].read_bytes() for key in (A0, A1)})
    finally:
        stop_sandbox(directory)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with start_etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def healthy(box: Box, etcd: EtcdCluster) -> Box:
    """The sandbox restored and every etcd member up (a test may have left one down)."""
    for member in etcd.members:
        if member.frozen:
            member.thaw()
        if not member.is_running:
            member.start()
    etcd.wait_healthy(etcd.members)
    box.restore()
    return box


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- the instances


@dataclass
class Instance:
    name: str
    config: Path
    state: StateDir
    log: Path
    metrics_port: int
    daemon: Daemon | None = None

    def start(self, env: Mapping[str, str] | None = None) -> Daemon:
        self.daemon = Daemon(self.config, self.log, env)
        return self.daemon

    def wait(self, start: str, timeout_seconds: float = 60, after: float = 0.0) -> dict[str, Any]:
        assert self.daemon is not None
        return self.daemon.wait_event(
            lambda e: str(e.get("event", "")).startswith(start),
            timeout_seconds,
            f"{self.name}: {start!r}",
            after=after,
        )

    def said(self, start: str) -> list[dict[str, Any]]:
        assert self.daemon is not None
        return [e for e in self.daemon.events() if str(e.get("event", "")).startswith(start)]

    def metric(self, name: str) -> float | None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics").read()
        for line in text.decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return None


@dataclass
class Group:
    instances: dict[str, Instance]
    prefix: str
    etcd: EtcdCluster
    started: list[Daemon] = field(default_factory=list)

    def __getitem__(self, name: str) -> Instance:
        return self.instances[name]

    def start(self, *names: str, env: Mapping[str, str] | None = None) -> None:
        for name in names or tuple(self.instances):
            self.started.append(self[name].start(env))

    def stop(self) -> None:
        for daemon in self.started:
            daemon.stop(timeout_seconds=60)

    def leader(self, timeout_seconds: float = 60) -> Instance:
        """The instance that leads and has taken over (its log says so)."""

        def found() -> Instance | None:
            for inst in self.instances.values():
                if inst.daemon is not None and inst.said(f"{inst.name} took over"):
                    return inst
            return None

        return wait_until(found, timeout_seconds, "an instance to take over as leader")

    def acted(self) -> dict[str, set[str]]:
        """failover id -> the instances whose state dir holds a started step of it."""
        out: dict[str, set[str]] = {}
        for inst in self.instances.values():
            for failover_id in inst.state.failover_ids():
                journal = inst.state.journal(failover_id)
                if any(e.get("event") == "step_started" for e in journal):
                    out.setdefault(failover_id, set()).add(inst.name)
        return out

    def finished_in(self, timeout_seconds: float = 120) -> tuple[str, Instance]:
        """The one failover that finished, and the instance whose journal says so."""

        def found() -> tuple[str, Instance] | None:
            for inst in self.instances.values():
                for failover_id in inst.state.failover_ids():
                    if inst.state.outcome(failover_id):
                        return failover_id, inst
            return None

        return wait_until(found, timeout_seconds, "a failover to finish")

    def etcd_journals(self) -> list[str]:
        member = next(m for m in self.etcd.members if m.is_running and not m.frozen)
        out = member.etcdctl("get", f"{self.prefix}/state/failovers/", "--prefix", "--keys-only")
        assert out.returncode == 0, out.stderr
        return [line for line in out.stdout.split() if line]


def make_group(
    box: Box,
    etcd: EtcdCluster,
    directory: Path,
    prefix: str,
    endpoints: Mapping[str, Sequence[str]] | None = None,
) -> Group:
    """Three instance configs from the sandbox's watchdog.toml: own name, state dir, metrics
    port; the [etcd] members in a different order each (or as given), lease_ttl 3 s."""
    base = box.top.config.read_text()
    instances: dict[str, Instance] = {}
    for i, name in enumerate(NAMES):
        port = free_port()
        state = directory / name / "state"
        order = list(etcd.endpoints[i:] + etcd.endpoints[:i])
        text = re.sub(r"(?m)^state_dir = .*$", f"state_dir = {json.dumps(str(state))}", base)
        text = re.sub(r"(?m)^listen = .*$", f'listen = "127.0.0.1:{port}"', text)
        text = (
            f"instance_name = {json.dumps(name)}\n"
            + text
            + etcd_toml_table(
                (endpoints or {}).get(name, order), lease_ttl=f"{TTL_SECONDS}s", prefix=prefix
            )
            + 'timeout = "1s"\n'
            + '\n[failover]\nrecovery_block = "1h"\ncanary_timeout = "30s"\n'
        )
        config = directory / f"{name}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(text)
        instances[name] = Instance(name, config, StateDir(state), directory / f"{name}.log", port)
    return Group(instances, prefix, etcd)


@contextlib.contextmanager
def running(group: Group) -> Iterator[Group]:
    try:
        yield group
    finally:
        group.stop()


def promoted_once(box: Box, group: Group, failover_id: str, by: Instance) -> None:
    """One promotion of the slave, finished by `by`, as every journal and etcd count it."""
    assert group.acted().keys() == {failover_id}
    assert by.state.outcome(failover_id) == "succeeded", by.state.journal(failover_id)[-3:]
    finished = [
        inst.name
        for inst in group.instances.values()
        if failover_id in inst.state.failover_ids() and inst.state.outcome(failover_id)
    ]
    assert finished == [by.name]
    assert by.state.group("broker-a")["epoch"] == 1  # promoted once
    assert group.etcd_journals() == [f"{group.prefix}/state/failovers/{failover_id}.jsonl"]
    one_master(box.top, box.top.addrs[A1])
    live = broker_config(box.top.addrs[A1])
    assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")


def healthy_everywhere(group: Group, leader: Instance) -> None:
    """Every instance cycles (a HEALTHY line) and the followers know who leads."""
    for inst in group.instances.values():
        inst.wait("no action: master broker-a@")
        if inst is not leader:
            inst.wait(f"leader: {leader.name}")


# --------------------------------------------------------------------------- the tests


def test_one_promotion_by_the_leader_with_one_etcd_member_down(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Three instances, one etcd member stopped (the quorum holds): master killed -9 ->
    exactly one promotion, by the leader; the followers only say what they would do."""
    box = healthy
    etcd.members[1].stop()  # wd-2's first endpoint: it moves on to the next
    group = make_group(box, etcd, tmp_path, "/rmq-watchdog/test-one")
    with running(group):
        group.start()
        leader = group.leader()
        healthy_everywhere(group, leader)
        followers = [i for i in group.instances.values() if i is not leader]
        assert leader.metric("rmq_watchdog_leader") == 1.0
        assert [f.metric("rmq_watchdog_leader") for f in followers] == [0.0, 0.0]
        wait_until(lambda: leader.metric("rmq_watchdog_instances_seen") == 3.0, 10, "3 seen")
        assert {f.metric("rmq_watchdog_etcd_up") for f in followers} == {1.0}
        killed = time.time()
        box.sandbox.kill(A0, "KILL")
        failover_id, by = group.finished_in()
        assert by is leader
        promoted_once(box, group, failover_id, by)
        for f in followers:
            assert f.state.failover_ids() == []
            assert not f.said("deposed")
        report(
            "kill -9 -> finished, three instances", by.state.journal(failover_id)[-1]["at"] - killed
        )


def test_the_leader_killed_mid_failover_twice_the_third_finishes_it_once(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """wd-1 leads and dies right after step 2 (the old master's fence, its stop); wd-2 takes
    over and dies right after step 6 (the candidate started as master); wd-3 finishes."""
    box = healthy
    group = make_group(box, etcd, tmp_path, "/rmq-watchdog/test-killed")
    with running(group):
        group.start("wd-1", env={"RMQ_WATCHDOG_CRASH_AFTER_STEP": "2"})
        assert group.leader() is group["wd-1"]
        group.start("wd-2", env={"RMQ_WATCHDOG_CRASH_AFTER_STEP": "6"})
        wd1, wd2, wd3 = (group[n] for n in NAMES)
        wd2.wait("no action: master broker-a@")
        wd2.wait("leader: wd-1")
        box.sandbox.kill(A0, "KILL")

        assert wd1.daemon is not None and wd1.daemon.wait_exit(120) == CRASH_EXIT_CODE
        [failover_id] = wd1.state.failover_ids()
        assert 1 in wd1.state.done_indexes(failover_id)  # step 2 (index 1) done there...
        wd2.wait(f"{wd2.name} took over", 60)
        group.start("wd-3")  # no hook: the last one standing finishes
        assert wd2.daemon is not None and wd2.daemon.wait_exit(120) == CRASH_EXIT_CODE
        wd3.wait(f"{wd3.name} took over", 60)
        found, by = group.finished_in()
        assert (found, by) == (failover_id, wd3)
        promoted_once(box, group, failover_id, by)
        journal = wd3.state.journal(failover_id)
        plan_steps = len(journal[0]["plan"]["steps"])
        assert plan_steps == STEPS
        resumed = [e["done_steps"] for e in journal if e["event"] == "resumed"]
        assert len(resumed) == 2, resumed  # wd-2's, then wd-3's
        # ... but not in etcd: its "done" was to be committed before the next step started.
        # Step N is index N-1: wd-2 resumed after the fence's rewrite, before the gate (5);
        # wd-3 after the gate, before the candidate's start (6), which it ran again.
        assert 0 in resumed[0] and 4 not in resumed[0], resumed
        assert {0, 1, 2, 3, 4} <= set(resumed[1]) and 5 not in resumed[1], resumed
        # Never two actors at once: each resumed only after the one before had stopped.
        own = acting_intervals(group, failover_id)
        assert [name for name, _, _ in own] == ["wd-1", "wd-2", "wd-3"]
        for (_, _, end), (_, start, _) in zip(own, own[1:], strict=False):
            assert end < start


def test_a_leader_cut_off_from_etcd_stops_and_another_leads(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Each instance talks to one member only; wd-1 leads; its member is frozen (SIGSTOP) and
    the master killed at once: wd-1 acts on nothing, another instance promotes once."""
    box = healthy
    endpoints = {name: [etcd.endpoints[i]] for i, name in enumerate(NAMES)}
    group = make_group(box, etcd, tmp_path, "/rmq-watchdog/test-cut", endpoints)
    wd1 = group["wd-1"]
    try:
        with running(group):
            group.start("wd-1")
            assert group.leader() is wd1
            group.start("wd-2", "wd-3")
            healthy_everywhere(group, wd1)
            cut = time.time()
            etcd.members[0].freeze()
            box.sandbox.kill(A0, "KILL")
            unreachable = wd1.wait("etcd unreachable: wd-1 is not the leader", 60, after=cut)
            failover_id, by = group.finished_in()
            assert by is not wd1
            promoted_once(box, group, failover_id, by)
            took_over = by.wait(f"{by.name} took over", 5)
            stepped_down = logged_at(unreachable) - cut
            report("wd-1's member frozen -> wd-1 says it is no leader", stepped_down)
            report(f"wd-1's member frozen -> {by.name} took over", logged_at(took_over) - cut)
    finally:
        # Thawed once the daemons are gone: etcd 3.4 before 3.4.28 lets a raft leader that
        # wakes up revoke the leases it thinks expired (etcd-io/etcd#15247, fixed by #16822),
        # which would end the new leader's lease under it (its next fenced write is refused).
        etcd.members[0].thaw()


def test_no_quorum_no_failover_then_the_failover_once_members_return(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    box = healthy
    group = make_group(box, etcd, tmp_path, "/rmq-watchdog/test-quorum")
    with running(group):
        group.start()
        leader = group.leader()
        healthy_everywhere(group, leader)
        lost = time.time()
        etcd.members[1].stop()
        etcd.members[2].stop()
        for inst in group.instances.values():
            inst.wait(f"etcd unreachable: {inst.name} is not the leader", 60, after=lost)
        box.sandbox.kill(A0, "KILL")
        for inst in group.instances.values():  # each saw it down and held back
            inst.wait("not the leader (etcd unreachable): would act: promoting broker-a", 60)
        assert group.acted() == {}
        live = broker_config(box.top.addrs[A1])
        assert live is not None and (live["brokerId"], live["brokerRole"]) == ("1", "SLAVE")
        assert leader.metric("rmq_watchdog_etcd_up") == 0.0
        assert leader.metric("rmq_watchdog_leader") == 0.0

        etcd.members[1].start()
        etcd.members[2].start()
        failover_id, by = group.finished_in()
        promoted_once(box, group, failover_id, by)
        for inst in group.instances.values():
            inst.wait("etcd answers again", 10)


def test_a_leader_cut_off_from_the_master_only_is_held_back_by_the_others(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """wd-1 leads and probes from 127.0.0.2, whose packets to the master (its port and the
    VIP port, port - 2) are dropped; no instance has a secondary check, and wd-1's quorum is 1:
    only wd-2's and wd-3's "alive" views stand between its own SDOWN and a failover. For 15 s:
    wd-1 sees the master down, no failover starts anywhere (journals, etcd), one master. Then
    the master dies for real (kill -9): the others see it down too, and one promotion follows."""
    box = healthy
    group = make_group(box, etcd, tmp_path, "/rmq-watchdog/test-master-cut")
    for inst in group.instances.values():
        text = inst.config.read_text()
        text = re.sub(r"(?ms)^\[\[secondary_checks\]\]\n.*?(?=^\[)", "", text)
        assert "secondary_checks" not in text
        inst.config.write_text(text)
    wd1 = group["wd-1"]
    append_config(wd1.config, '[probe]\nsource_address = "127.0.0.2"\n[detect]\nquorum = 1\n')
    master = box.top.addrs[A0]
    port = int(master.rsplit(":", 1)[1])
    with running(group):
        group.start("wd-1")
        assert group.leader() is wd1
        group.start("wd-2", "wd-3")
        healthy_everywhere(group, wd1)
        with nft_drop("127.0.0.2", [port, port - 2], table_prefix="rmqwd_ha"):
            cut = time.time()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                for inst in group.instances.values():
                    assert inst.daemon is not None and inst.daemon.is_running, inst.name
                    for e in inst.daemon.events():
                        text = str(e.get("event", ""))
                        assert e.get("decision") != "promote", (inst.name, e)
                        assert not text.startswith("failover started"), (inst.name, e)
                time.sleep(0.5)
            assert wd1.daemon is not None
            sdown = [
                e
                for e in wd1.daemon.events()
                if e.get("state") == "MASTER_SDOWN" and logged_at(e) >= cut
            ]
            assert sdown, wd1.daemon.tail()
            held = [e for e in sdown if re.search(r"instance wd-[23] reaches it", e["event"])]
            assert held, sdown[-1]
            for inst in group.instances.values():
                assert inst.state.failover_ids() == [], inst.name
                if inst is not wd1:  # they reach the master: never SDOWN
                    assert not [e for e in inst.said("") if e.get("state") == "MASTER_SDOWN"]
            assert group.acted() == {}
            assert group.etcd_journals() == []
            assert not wd1.said("deposed")
            one_master(box.top, master, 5)

            killed = time.time()
            box.sandbox.kill(A0, "KILL")
            failover_id, by = group.finished_in()
            assert by is wd1
            promoted_once(box, group, failover_id, by)
            report(
                "master cut off from the leader, then kill -9 -> finished",
                by.state.journal(failover_id)[-1]["at"] - killed,
            )
            report("the cut-off stretch with no failover", killed - cut)


# --------------------------------------------------------------------------- long: random kills


def acting_intervals(group: Group, failover_id: str) -> list[tuple[str, float, float]]:
    """(instance, first, last) time of the journal lines each instance wrote itself: from
    `planned` (the first leader) or its `resumed` line to its last line, in time order."""
    out = []
    for inst in group.instances.values():
        if failover_id not in inst.state.failover_ids():
            continue
        journal = inst.state.journal(failover_id)
        starts = [i for i, e in enumerate(journal) if e["event"] == "resumed"]
        own = journal[starts[-1] :] if starts else journal
        if any(e["event"] in ("step_started", "finished") for e in own):
            out.append((inst.name, float(own[0]["at"]), float(own[-1]["at"])))
    return sorted(out, key=lambda x: x[1])


@pytest.mark.long
def test_random_kill_points_two_instances_never_act_at_once(
    healthy: Box, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """RMQWD_HA_RUNS (default 20) rounds: the leader dies after a random step 1-9 (or not at
    all); each round one promotion, finished once, the instances acting one after another."""
    runs = int(os.environ.get("RMQWD_HA_RUNS", "20"))
    rng = random.Random(int(os.environ.get("RMQWD_HA_SEED", "14")))
    box = healthy
    began = time.monotonic()
    for run in range(runs):
        if run:
            box.restore()
        kill_after = rng.choice([*range(1, STEPS + 1), 0])
        directory = tmp_path / f"run-{run}"
        group = make_group(box, etcd, directory, f"/rmq-watchdog/test-random-{run}")
        env = {"RMQ_WATCHDOG_CRASH_AFTER_STEP": str(kill_after)} if kill_after else None
        with running(group):
            group.start("wd-1", env=env)
            assert group.leader() is group["wd-1"]
            group.start("wd-2", "wd-3")
            healthy_everywhere(group, group["wd-1"])
            box.sandbox.kill(A0, "KILL")
            failover_id, by = group.finished_in(180)
            assert (by is group["wd-1"]) == (kill_after == 0), (kill_after, by.name)
            promoted_once(box, group, failover_id, by)
            own = acting_intervals(group, failover_id)
            for (_, _, end), (_, start, _) in zip(own, own[1:], strict=False):
                assert end < start, own
            print(f"[ha random] run {run}: killed after step {kill_after or '-'}, "
                  f"finished by {by.name}, actors {[n for n, _, _ in own]}")  # fmt: skip
    report(f"{runs} random kill rounds", time.monotonic() - began)
