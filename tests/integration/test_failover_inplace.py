"""In-place promotion on a real RocketMQ 4.9.7 sandbox (`sandbox up --promotion inplace`): the
daemon promotes the slave through its broker plug-in after a kill -9 of the master, without
restarting it; a refused promotion falls back to the restart path; a daemon killed around the
in-place step finishes the failover once; the old master rejoins as a slave of the promoted
one; the promoted broker restarted later keeps its role and every message; with two slaves,
the other slave is re-pointed in place (SET_HA_MASTER) and replicates from the promoted one.

One sandbox (master + slave, the plug-in on both) serves the module. The first three tests
share one failover (the `promoted` fixture, run in file order, as tests/integration/
test_plugin.py does); the others restore the sandbox first (brokers stopped, properties and
stores as they were, the plug-in's secrets kept, the watchdog's state wiped); the two-slave
test has a sandbox of its own. Times are printed; run with -s to see them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Daemon,
    StateDir,
    Topology,
    append_config,
    broker_config,
    registrations,
    runtime_info,
    wait_until,
)
from tests.integration.plugin_clients import call, has_topic_config, info, make_topic, pull, send
from watchdog.config import read_plugin_secret
from watchdog.decide import Plan
from watchdog.model import PropertiesFile
from watchdog.remoting import (
    Promotion,
    promote_in_place,
)
from watchdog.tools.daemon_child import logged_at
from watchdog.tools.sandbox import Sandbox

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
TOPIC = "InPlaceFailoverTopic"
QUEUES = 4
FAILOVER_SECONDS = 120
CRASH_EXIT_CODE = 70
STORE_SECRET = "watchdog-plugin.secret"  # in each broker's storePathRootDir


def report(what: str, seconds: float) -> None:
    print(f"[in-place timing] {what}: {seconds:.3f} s")


def promote(addr: str, secret: bytes, *, expect: int, epoch: int) -> Promotion:
    return call(
        addr,
        lambda c: promote_in_place(
            c,
            secret=secret,
            role="ASYNC_MASTER",
            expect_max_phy_offset=expect,
            epoch=epoch,
            timeout_seconds=30.0,
        ),
    )


def log_end(addr: str) -> int:
    table = runtime_info(addr)
    assert table is not None, f"{addr} does not answer"
    return int(table["commitLogMaxOffset"])


def wait_caught_up(master: str, slave: str, seconds: float = 60) -> int:
    def done() -> int | None:
        end = log_end(master)
        return end if log_end(slave) == end else None

    return wait_until(done, seconds, f"{slave} catching up with {master}")


def ha_master_of(addr: str) -> Callable[[], str]:
    """A wait_until probe: the HA master the broker at `addr` replicates from ("" while none)."""
    return lambda: info(addr).ha_master_address


# --------------------------------------------------------------------------- the sandbox


@dataclass(frozen=True)
class Cluster:
    box: Sandbox
    top: Topology
    pristine: dict[Path, bytes]  # properties files and watchdog.toml as set up
    store_secrets: dict[Path, bytes]  # each broker's plug-in secret, kept across restores

    @property
    def states(self) -> StateDir:
        return self.top.state_dir

    def addr(self, key: str) -> str:
        return self.top.addrs[key]


def store_root(properties: Path) -> Path:
    root = PropertiesFile.parse(properties.read_text(encoding="latin-1")).get("storePathRootDir")
    assert root, properties
    return Path(root)


@pytest.fixture(scope="module")
def cluster(plugin_sandboxes: Any) -> Cluster:
    box = plugin_sandboxes()
    top = Topology.of(box)
    # watchdog.toml ends in the [failover] table the sandbox wrote: these keys go into it.
    append_config(top.config, 'recovery_block = "1h"\ncanary_timeout = "30s"')
    pristine = {p: p.read_bytes() for p in [*top.properties.values(), top.config]}
    secrets = {}
    for key in (A0, A1):
        path = store_root(top.properties[key]) / STORE_SECRET
        secrets[path] = path.read_bytes()
    return Cluster(box, top, pristine, secrets)


def one_master(cluster: Cluster, key: str, timeout_seconds: float = 60) -> None:
    addr = cluster.addr(key)

    def check() -> bool:
        tables = registrations(cluster.top.nameservers).values()
        return all(t is not None and t.get("broker-a", {}).get(0) == addr for t in tables)

    wait_until(check, timeout_seconds, f"{addr} as the one id 0 on every nameserver")


def restore(cluster: Cluster) -> None:
    """Back to a master/slave pair with empty stores (the plug-in's secrets kept) and no
    watchdog state; the topic made on the master, on the slave too, the slave replicating."""
    box, top = cluster.box, cluster.top
    for key in (A1, A0):
        if box.pid(key) is not None:
            box.stop(key)
    for path, data in cluster.pristine.items():
        path.write_bytes(data)
    for key in (A0, A1):
        shutil.rmtree(store_root(top.properties[key]), ignore_errors=True)
    for path, data in cluster.store_secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o600)
    for leftover in [*top.dir.glob("*.epoch"), *top.dir.glob("*.bak")]:
        leftover.unlink()
    shutil.rmtree(cluster.states.path, ignore_errors=True)
    box.start(A0, wait_registered=True)
    box.start(A1, wait_registered=True)
    one_master(cluster, A0)
    prepare_topic(cluster)


def prepare_topic(cluster: Cluster) -> list[str]:
    """TOPIC on the master and (SlaveSynchronize, every 10 s) the slave, 10 messages a queue
    written and replicated; their keys."""
    master, slave = cluster.addr(A0), cluster.addr(A1)
    make_topic(master, TOPIC, QUEUES)
    wait_until(lambda: has_topic_config(slave, TOPIC), 60, f"the slave syncing {TOPIC}")
    before = send(cluster.top.namesrv, TOPIC, "before", 10 * QUEUES)
    assert len(before["acked"]) == 10 * QUEUES, before
    wait_until(lambda: info(slave).ha_master_address, 60, "the slave's HA link")
    wait_caught_up(master, slave)
    keys: list[str] = before["acked"]
    return keys


def daemon(cluster: Cluster, log: Path, env: dict[str, str] | None = None) -> Daemon:
    return Daemon(cluster.top.config, log, env)


def wait_healthy(running: Daemon) -> None:
    running.wait_event(lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "HEALTHY")


def journal_steps(cluster: Cluster, failover_id: str, event: str, kind: str) -> list[Any]:
    return [
        e
        for e in cluster.states.journal(failover_id)
        if e.get("event") == event and e.get("kind") == kind and e.get("phase") == "main"
    ]


def assert_promoted_in_place(cluster: Cluster, failover_id: str, pid: int | None) -> None:
    """broker-a:1 is the master in the JVM it ran as a slave, its file says so, both
    nameservers list it as id 0, epoch 1 everywhere."""
    box = cluster.box
    assert cluster.states.outcome(failover_id) == "succeeded", cluster.states.journal(
        failover_id
    )[-3:]
    assert box.pid(A1) == pid  # the same JVM: not restarted
    live = broker_config(cluster.addr(A1))
    assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
    values = PropertiesFile.parse(cluster.top.properties[A1].read_text(encoding="latin-1"))
    assert (values.get("brokerId"), values.get("brokerRole")) == ("0", "ASYNC_MASTER")
    one_master(cluster, A1, 10)
    found = info(cluster.addr(A1))
    assert (found.broker_role, found.broker_id, found.last_epoch) == ("ASYNC_MASTER", 0, 1)
    group = cluster.states.group("broker-a")
    assert (group["epoch"], group["master_key"]) == (1, A1)
    assert not [e for e in cluster.states.journal(failover_id) if e["event"] == "fallback_started"]


# --------------------------------------------------------------------------- kill -9, in place


@dataclass(frozen=True)
class Promoted:
    cluster: Cluster
    failover_id: str
    daemon: Daemon
    before: list[str]
    pid: int | None
    killed_at: float


@pytest.fixture(scope="module")
def promoted(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Promoted]:
    """kill -9 of the master with the daemon running: it promotes the slave in place."""
    before = prepare_topic(cluster)
    pid = cluster.box.pid(A1)
    log = tmp_path_factory.mktemp("inplace") / "daemon.log"
    running = daemon(cluster, log)
    try:
        wait_healthy(running)
        cluster.box.kill(A0, "KILL")
        killed_at = time.time()
        failover_id = cluster.states.wait_finished(FAILOVER_SECONDS)
        yield Promoted(cluster, failover_id, running, before, pid, killed_at)
    finally:
        running.stop()


def test_a_killed_master_is_replaced_in_place(promoted: Promoted) -> None:
    cluster, failover_id = promoted.cluster, promoted.failover_id
    assert_promoted_in_place(cluster, failover_id, promoted.pid)
    plan = cluster.states.plan(failover_id)
    assert dict(plan["details"])["path"].startswith("in place: promotion = inplace and ")
    [done] = journal_steps(cluster, failover_id, "step_done", "promote_in_place")
    assert done["detail"].startswith("promoted in place as ASYNC_MASTER at offset ")
    # Neither the fence nor the promotion ran the candidate's stop or start command.
    kinds = [(e["kind"], e["broker_key"]) for e in cluster.states.journal(failover_id)
             if e["event"] == "step_done"]  # fmt: skip
    assert ("stop", A1) not in kinds and ("start", A1) not in kinds
    registered = journal_steps(cluster, failover_id, "step_done", "wait_master")[0]["at"]
    report("kill -9 -> the plug-in's reply (registered as id 0 when it answers)",
           done["at"] - promoted.killed_at)  # fmt: skip
    report("kill -9 -> every nameserver lists it as id 0 (wait_master)",
           registered - promoted.killed_at)  # fmt: skip
    assert promoted.daemon.wait_event(
        lambda e: str(e.get("event", "")).startswith("in-place promotion done: "), 10, "the log"
    )
    finished = promoted.daemon.wait_event(
        lambda e: str(e.get("event", "")).startswith("failover succeeded: "), 10, "the result"
    )
    assert str(finished["event"]).endswith("; promoted in place")

    # A real producer writes to every queue, more than the slave held at its boot; a real
    # consumer reads every message once, each queue's offsets contiguous.
    namesrv = cluster.top.namesrv
    after = send(namesrv, TOPIC, "after", 30 * QUEUES)
    assert len(after["acked"]) == 30 * QUEUES, after
    stored = pull(namesrv, TOPIC)
    keys = Counter(m["key"] for m in stored)
    missing = [k for k in promoted.before + after["acked"] if keys[k] != 1]
    assert missing == [], f"{len(missing)} acked messages not read once: {missing[:10]}"
    per_queue: dict[int, list[int]] = {}
    for m in stored:
        per_queue.setdefault(m["queue_id"], []).append(m["queue_offset"])
    assert sorted(per_queue) == list(range(QUEUES))
    for queue_id, offsets in per_queue.items():
        assert sorted(offsets) == list(range(len(offsets))), f"queue {queue_id}: {offsets}"

    # Detection follows the promoted broker at once, although it kept its bootTimestamp (the
    # prober re-reads a broker's config only after a restart or every 15-30 cycles): the
    # daemon logs a cycle line when the group's state changes, and after the one cycle that
    # may have been in flight when the failover ended, none names the old master as master.
    ended = logged_at(finished)
    old, new = cluster.addr(A0), cluster.addr(A1)
    promoted.daemon.wait_event(
        lambda e: "cycle" in e and f"master broker-a@{new}" in str(e.get("event")),
        10,
        "a cycle following the promoted master",
        after=ended,
    )
    cycles = [
        str(e["event"])
        for e in promoted.daemon.events()
        if "cycle" in e and e.get("broker_name") == "broker-a" and logged_at(e) > ended + 1.5
    ]
    assert not [c for c in cycles if f"master broker-a@{old}" in c], cycles
    assert cluster.states.failover_ids() == [failover_id]


def test_the_old_master_rejoins_as_a_slave_of_the_promoted_one(promoted: Promoted) -> None:
    """As on the restart path (test_failover's returning old master): started again with the
    properties the fence left (SLAVE, the freed id 1), it replicates from the new master."""
    cluster = promoted.cluster
    old, new = cluster.addr(A0), cluster.addr(A1)
    cluster.box.start(A0, wait_registered=True)
    config = wait_until(lambda: broker_config(old), 60, "the old master answering")
    assert (config["brokerId"], config["brokerRole"]) == ("1", "SLAVE")
    one_master(cluster, A1)
    assert not send(cluster.top.namesrv, TOPIC, "rejoined", 10 * QUEUES)["errors"]
    end = wait_caught_up(new, old, 90)
    assert end > 0 and info(old).ha_master_address.endswith(f":{int(new.rsplit(':')[1]) + 1}")
    # The daemon's rejoin check found its log within the promotion point: no second fence.
    assert cluster.states.failover_ids() == [promoted.failover_id]
    group = cluster.states.group("broker-a")
    assert group["master_key"] == A1


def test_the_promoted_broker_restarted_keeps_its_role_and_every_message(
    promoted: Promoted,
) -> None:
    cluster = promoted.cluster
    promoted.daemon.stop()  # a planned restart is no failover
    namesrv, new = cluster.top.namesrv, cluster.addr(A1)
    stored = sorted((m["queue_id"], m["queue_offset"], m["key"]) for m in pull(namesrv, TOPIC))
    cluster.box.stop(A1)
    cluster.box.start(A1, wait_registered=True)
    again = sorted((m["queue_id"], m["queue_offset"], m["key"]) for m in pull(namesrv, TOPIC))
    assert again == stored
    found = info(new)
    assert (found.broker_role, found.broker_id, found.last_epoch) == ("ASYNC_MASTER", 0, 1)
    one_master(cluster, A1)
    post = send(namesrv, TOPIC, "post-restart", 4 * QUEUES)
    assert len(post["acked"]) == 4 * QUEUES, post


# --------------------------------------------------------------------------- falling back


def test_a_refused_in_place_promotion_falls_back_to_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The watchdog's secret file holds another secret than the brokers': the plug-in answers
    NO_PERMISSION (bad mac), and the restart path promotes the slave instead."""
    restore(cluster)
    wrong = cluster.top.dir / "wrong-plugin.secret"
    wrong.write_text("ffffffffffffffffffffffffffffffff\n")
    os.chmod(wrong, 0o600)
    config = cluster.top.config
    right = str(read_plugin_secret_path(config))
    config.write_text(config.read_text().replace(right, str(wrong)))
    pid = cluster.box.pid(A1)
    running = daemon(cluster, tmp_path / "daemon.log")
    try:
        wait_healthy(running)
        cluster.box.kill(A0, "KILL")
        killed_at = time.time()
        failover_id = cluster.states.wait_finished(FAILOVER_SECONDS)
        assert cluster.states.outcome(failover_id) == "succeeded", cluster.states.journal(
            failover_id
        )[-3:]
        [failed] = journal_steps(cluster, failover_id, "step_failed", "promote_in_place")
        assert "bad mac" in failed["detail"]
        [fell] = [e for e in cluster.states.journal(failover_id)
                  if e["event"] == "fallback_started"]  # fmt: skip
        assert fell["reason"].startswith("the in-place promotion (step 4) failed: ")
        assert "bad mac" in fell["reason"]
        fallback = [(e["kind"], e["phase"]) for e in cluster.states.journal(failover_id)
                    if e["event"] == "step_done" and e["phase"] == "fallback"]  # fmt: skip
        assert fallback == [("stop", "fallback"), ("rewrite", "fallback"), ("start", "fallback")]
        assert cluster.box.pid(A1) not in (None, pid)  # restarted
        live = broker_config(cluster.addr(A1))
        assert live is not None and (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
        one_master(cluster, A1)
        registered = journal_steps(cluster, failover_id, "step_done", "wait_master")[0]["at"]
        report("kill -9 -> registered after falling back to a restart", registered - killed_at)
        refused = running.wait_event(
            lambda e: str(e.get("event", "")).startswith("in-place promotion refused: "),
            10,
            "the refusal in the log",
        )
        assert "bad mac" in str(refused["event"])
        result = running.wait_event(
            lambda e: str(e.get("event", "")).startswith("failover succeeded: "), 10, "result"
        )
        assert "; promoted by restart: the in-place promotion (step 4) failed: " in str(
            result["event"]
        )
        # The plug-in served no epoch: it refused before changing anything.
        assert info(cluster.addr(A1)).last_epoch == 0
    finally:
        running.stop()
        config.write_bytes(cluster.pristine[config])


def read_plugin_secret_path(config: Path) -> Path:
    for line in config.read_text().splitlines():
        if line.startswith("plugin_secret_file"):
            path = Path(json.loads(line.split("=", 1)[1].strip()))
            read_plugin_secret(path)
            return path
    raise AssertionError(f"{config} names no plugin_secret_file")


# --------------------------------------------------------------------------- crash and resume


def crashed_at(cluster: Cluster, tmp_path: Path, step: int) -> tuple[str, Plan, int | None]:
    """A daemon that exits (70) once step `step` is journaled, after a kill -9 of the master."""
    restore(cluster)
    pid = cluster.box.pid(A1)
    running = daemon(cluster, tmp_path / f"crash-{step}.log",
                     {"RMQ_WATCHDOG_CRASH_AFTER_STEP": str(step)})  # fmt: skip
    try:
        wait_healthy(running)
        cluster.box.kill(A0, "KILL")
        assert running.wait_exit(FAILOVER_SECONDS) == CRASH_EXIT_CODE, running.tail()
    finally:
        running.stop()
    [failover_id] = cluster.states.failover_ids()
    plan = Plan.from_json(cluster.states.plan(failover_id))
    assert plan.in_place_index == 3
    assert cluster.states.state()["running"] == {"broker-a": failover_id}
    return failover_id, plan, pid


def resume(cluster: Cluster, tmp_path: Path, failover_id: str) -> None:
    """A daemon without the hook finishes the failover it finds running."""
    running = daemon(cluster, tmp_path / "resumed.log")
    try:
        wait_until(lambda: cluster.states.outcome(failover_id), FAILOVER_SECONDS, "the resume")
    finally:
        assert running.stop() == 0
    assert cluster.states.failover_ids() == [failover_id]  # resumed, not started again
    assert cluster.states.state()["running"] == {}


def test_a_daemon_killed_once_the_promotion_is_journaled_finishes_it_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    failover_id, plan, pid = crashed_at(cluster, tmp_path, 4)  # promote_in_place is step 4
    assert len(journal_steps(cluster, failover_id, "step_done", "promote_in_place")) == 1
    assert broker_config(cluster.addr(A1)) is not None
    resume(cluster, tmp_path, failover_id)
    assert_promoted_in_place(cluster, failover_id, pid)
    entries = cluster.states.journal(failover_id)
    resumed_at = next(i for i, e in enumerate(entries) if e["event"] == "resumed")
    assert resumed_at and entries[resumed_at]["done_steps"] == [0, 1, 2, 3]
    assert not [e for e in entries[resumed_at:] if e.get("kind") == "promote_in_place"]


def test_a_daemon_killed_while_the_promotion_was_out_finishes_it_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Killed after the gate; the promote request it was sending reached the broker (sent here
    as the daemon would: its epoch, the log end, the secret) and the journal says only that
    the step started. The resumed daemon finds the promotion taken and does not send it
    again."""
    failover_id, plan, pid = crashed_at(cluster, tmp_path, 3)  # the confirm_fenced gate
    candidate = cluster.addr(A1)
    secret = read_plugin_secret(read_plugin_secret_path(cluster.top.config))
    taken = promote(candidate, secret, expect=log_end(candidate), epoch=plan.epoch)
    assert taken.epoch == plan.epoch == 1
    journal = cluster.states.path / "failovers" / f"{failover_id}.jsonl"
    started = {"at": time.time(), "failover_id": failover_id, "event": "step_started",
               "index": 3, "phase": "main", "kind": "promote_in_place", "broker_key": A1,
               "lane": ""}  # fmt: skip
    with journal.open("a") as fh:
        fh.write(json.dumps(started, sort_keys=True) + "\n")
    resume(cluster, tmp_path, failover_id)
    assert_promoted_in_place(cluster, failover_id, pid)
    [done] = journal_steps(cluster, failover_id, "step_done", "promote_in_place")
    assert done["detail"].startswith("already promoted in place at epoch 1"), done
    assert info(candidate).last_epoch == 1


# --------------------------------------------------------------------------- two slaves


def test_the_other_slave_is_re_pointed_in_place_and_replicates(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    """`sandbox up --slaves 2 --promotion inplace`, kill -9 of the master: the daemon promotes
    one slave in place and re-points the other through its plug-in (SET_HA_MASTER), neither
    restarted. The other slave serves epoch 1 and names the new master's HA port at once (not
    at its next registration, up to 30 s later), and its log grows to the new master's end
    after writes made there."""
    box = fresh_sandbox(slaves=2, promotion="inplace")
    top = Topology.of(box)
    append_config(top.config, 'recovery_block = "1h"\ncanary_timeout = "30s"')
    slaves = ("broker-a:1", "broker-a:2")
    master = top.addrs[A0]
    make_topic(master, TOPIC, QUEUES)
    before = send(top.namesrv, TOPIC, "before", 4 * QUEUES)
    assert len(before["acked"]) == 4 * QUEUES, before
    for key in slaves:
        wait_until(ha_master_of(top.addrs[key]), 60, f"{key}'s HA link")
        wait_caught_up(master, top.addrs[key])
    pids = {key: box.pid(key) for key in slaves}
    running = Daemon(top.config, tmp_path / "daemon.log")
    try:
        wait_healthy(running)
        box.kill(A0, "KILL")
        killed_at = time.time()
        failover_id = top.state_dir.wait_finished(FAILOVER_SECONDS)
    finally:
        running.stop()
    journal = top.state_dir.journal(failover_id)
    assert top.state_dir.outcome(failover_id) == "succeeded", journal[-3:]
    new_key = top.state_dir.group("broker-a")["master_key"]
    [other_key] = [k for k in slaves if k != new_key]
    new, other = top.addrs[new_key], top.addrs[other_key]
    assert {k: box.pid(k) for k in slaves} == pids  # neither JVM restarted
    steps = [(e["kind"], e["broker_key"]) for e in journal if e["event"] == "step_done"]
    assert ("promote_in_place", new_key) in steps and ("set_ha_master", other_key) in steps
    repointed = top.state_dir.step_event(failover_id, "set_ha_master")
    assert repointed is not None and repointed["detail"].startswith("replicates from ")
    report("kill -9 -> the other slave re-pointed in place", repointed["at"] - killed_at)
    ha = f"{new.rsplit(':', 1)[0]}:{int(new.rsplit(':', 1)[1]) + 1}"
    found = info(other)
    assert (found.broker_role, found.last_epoch, found.ha_master_address) == ("SLAVE", 1, ha)
    end_before = log_end(new)
    after = send(top.namesrv, TOPIC, "after", 4 * QUEUES)
    assert len(after["acked"]) == 4 * QUEUES, after
    end = wait_caught_up(new, other)
    assert end > end_before
