"""Failover on a real RocketMQ 4.9.7 sandbox: kill -9 the master, the daemon promotes the slave.

Each test starts its own sandbox (`fresh_sandbox`) and combines several checks, so the whole file
stays within a few minutes on two cores. Times (kill -> promoted, kill -> first write) are
printed; run with -s to see them.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    Daemon,
    Topology,
    append_config,
    broker_config,
    cli,
    consumed_keys,
    consumer_offset,
    file_hashes,
    pull_all,
    registrations,
    running_daemon,
    runtime_info,
    send_keyed,
    start_consumer,
    stop_consumer,
    wait_until,
    write_until_ok,
    writer_result,
)

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
FAILOVER_SECONDS = 150  # kill -> finished, with room for a slow 2-core machine


def report(what: str, seconds: float) -> None:
    print(f"[failover timing] {what}: {seconds:.1f} s")


def group_states(daemon: Daemon, after: float) -> list[str]:
    from tests.integration.daemon_harness import _event_time

    return [
        str(e["state"])
        for e in daemon.events()
        if e.get("broker_name") == "broker-a" and "cycle" in e and _event_time(e) >= after
    ]


def wait_healthy(daemon: Daemon, after: float = 0.0) -> None:
    daemon.wait_event(
        lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "a HEALTHY cycle", after=after
    )


def wait_slave(top: Topology, key: str, timeout_seconds: float = 90) -> dict[str, str]:
    """Once `key` runs as a slave, answers runtime info (what the watchdog's probe counts as an
    answer) and every nameserver lists it under a non-zero id."""

    def is_slave() -> dict[str, str] | None:
        config = broker_config(top.addrs[key])
        if config is None or config.get("brokerRole") != "SLAVE":
            return None
        # A 4.9.7 broker answers runtime info with NoSuchElementException for a moment after it
        # starts (its TPS sample list is still empty); a failover probing it then refuses it.
        if runtime_info(top.addrs[key]) is None:
            return None
        tables = registrations(top.nameservers).values()
        listed = all(
            t is not None and top.addrs[key] in (t.get("broker-a") or {}).values() for t in tables
        )
        return config if listed else None

    return wait_until(is_slave, timeout_seconds, f"{key} running as a slave")


def one_master_everywhere(top: Topology, addr: str, timeout_seconds: float = 60) -> None:
    """Every nameserver lists exactly `addr` as broker-a id 0."""

    def check() -> bool:
        tables = registrations(top.nameservers)
        return all(t is not None and t.get("broker-a", {}).get(0) == addr for t in tables.values())

    wait_until(check, timeout_seconds, f"{addr} as the one id 0 on every nameserver")


def caught_up(top: Topology, slave: str, master: str) -> bool:
    s, m = runtime_info(top.addrs[slave]), runtime_info(top.addrs[master])
    return bool(s and m and s["commitLogMaxOffset"] == m["commitLogMaxOffset"])


# --------------------------------------------------------------------------- 1 + 6


def test_sync_failover_then_anti_flap(fresh_sandbox: Any, tmp_path: Path) -> None:
    """kill -9 the SYNC_MASTER: promoted, writable, nothing acked lost; the old master returns as
    a slave; a second kill is blocked (also across a daemon restart) until `ack`; --force
    bypasses the block."""
    box = fresh_sandbox(replication="sync")
    top = Topology.of(box)
    append_config(top.config, '[failover]\nrecovery_block = "1h"\ncanary_timeout = "30s"')
    states = top.state_dir
    topic = "FailoverSyncTopic"
    # A SYNC_MASTER refuses sends (SLAVE_NOT_AVAILABLE) until its slave's HA link is up.
    ready = writer_result(write_until_ok(top.namesrv, topic, 60), 90)
    assert ready["first_ok_at"] is not None, ready
    before = send_keyed(top.namesrv, topic, "before", 200)
    assert before["failed"] == 0, before
    assert caught_up(top, A1, A0)

    daemon = Daemon(top.config, tmp_path / "daemon-1.log")
    try:
        wait_healthy(daemon)
        box.kill(A0, "KILL")
        killed_at = time.time()
        writer = write_until_ok(top.namesrv, topic, FAILOVER_SECONDS)
        first = states.wait_finished(FAILOVER_SECONDS)
        assert states.outcome(first) == "succeeded", states.journal(first)[-3:]
        promoted = states.step_event(first, "wait_master")
        assert promoted is not None
        report(
            "sync: kill -> promoted (every nameserver lists it as id 0)", promoted["at"] - killed_at
        )
        write = writer_result(writer, FAILOVER_SECONDS)
        assert write["first_ok_at"] is not None, write
        report("sync: kill -> first successful write", write["first_ok_at"] - killed_at)

        # The former slave is the master everywhere; with no slave left it runs ASYNC_MASTER
        # (a SYNC_MASTER alone answers every send SLAVE_NOT_AVAILABLE), and the plan says so.
        plan = states.plan(first)
        assert plan["new_master_key"] == A1 and plan["new_role"] == "ASYNC_MASTER"
        assert any(k == "role" and "SYNC_MASTER -> ASYNC_MASTER" in v for k, v in plan["details"])
        live = broker_config(top.addrs[A1])
        assert live is not None
        assert (live["brokerId"], live["brokerRole"]) == ("0", "ASYNC_MASTER")
        one_master_everywhere(top, top.addrs[A1], 10)
        after = send_keyed(top.namesrv, topic, "after", 20)
        assert after["failed"] == 0, after
        keys = set(pull_all(top.namesrv, topic))
        missing = set(before["acked"]) - keys
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        assert set(after["acked"]) <= keys

        group = states.group("broker-a")
        assert group["epoch"] == 1 and group["master_key"] == A1
        assert group["last_outcome"] == "succeeded"
        assert (group["lowered_from"], group["lowered_by"]) == ("SYNC_MASTER", first)
        assert group["blocked_until"] > time.time() + 3000
        assert states.state()["running"] == {}
        epoch_a1 = Path(f"{top.properties[A1]}.epoch").read_text()
        assert f"master_addr={top.addrs[A1]}" in epoch_a1 and "may_be_master=true" in epoch_a1
        assert "may_be_master=false" in Path(f"{top.properties[A0]}.epoch").read_text()
        fenced = top.properties[A0].read_text()
        assert "brokerRole=SLAVE" in fenced and "brokerId=1" in fenced

        # The old master started again comes back as a slave; one id 0 everywhere.
        box.start(A0)
        config = wait_slave(top, A0)
        assert config["brokerId"] == "1"
        one_master_everywhere(top, top.addrs[A1])
    finally:
        assert daemon.stop() == 0

    # Anti-flap, across a daemon restart: the block is in state.json. The new master dies too
    # (while the restarted daemon watches it, so it knows how much data is at stake): the daemon
    # only reports FAILOVER_BLOCKED.
    daemon = Daemon(top.config, tmp_path / "daemon-2.log")
    try:
        # Not HEALTHY: the group runs ASYNC_MASTER since the failover lowered it.
        daemon.wait_event(
            lambda e: (
                e.get("state") == "DEGRADED"
                and "SYNC_MASTER lowered to ASYNC_MASTER since failover" in e.get("event", "")
            ),
            60,
            "a cycle saying the role was lowered",
        )
        box.kill(A1, "KILL")
        second_kill = time.time()
        daemon.wait_event(
            lambda e: e.get("state") == "FAILOVER_BLOCKED" and "blocked for" in e["event"],
            30,
            "FAILOVER_BLOCKED",
            after=second_kill,
        )
        time.sleep(3)
        assert "MASTER_ODOWN" not in group_states(daemon, second_kill)
        assert states.failover_ids() == [first]
        # Through the running daemon, a plain manual failover is refused too.
        refused = cli("failover", "-c", str(top.config), "--broker-name", "broker-a")
        assert refused.returncode == 1 and "blocked" in refused.stdout, refused
        assert states.failover_ids() == [first]

        acked = cli("ack", "-c", str(top.config), "--broker-name", "broker-a")
        assert acked.returncode == 0 and "re-enabled" in acked.stdout, acked
        acked_at = time.time()
        second = states.wait_finished(FAILOVER_SECONDS, count=2)
        assert states.outcome(second) == "succeeded"
        report("after ack: ack -> failover finished", time.time() - acked_at)
        assert states.plan(second)["new_master_key"] == A0
        one_master_everywhere(top, top.addrs[A0])

        # Blocked again; --force goes through the daemon's control socket and bypasses it.
        assert states.group("broker-a")["blocked_until"] > time.time() + 3000
        box.start(A1)
        wait_slave(top, A1, 120)  # fenced first if its log reached past the promotion point
        wait_until(lambda: caught_up(top, A1, A0), 60, f"{A1} catching up with {A0}")
        forced = cli(
            "failover", "-c", str(top.config), "--broker-name", "broker-a", "--force", "--yes"
        )
        assert forced.returncode == 0, forced
        assert "failover succeeded" in forced.stdout, forced.stdout
        ids = states.failover_ids()
        assert states.plan(ids[-1])["new_master_key"] == A1
        one_master_everywhere(top, top.addrs[A1])
    finally:
        assert daemon.stop() == 0


# --------------------------------------------------------------------------- 2


def test_async_loss_is_at_most_the_planned_loss(fresh_sandbox: Any, tmp_path: Path) -> None:
    """The slave is down while the master takes writes, then the master is killed: the plan's
    expected loss covers what the old master acknowledged and the new one lacks; the deposed
    master, whose log reaches past the promotion point, is fenced onto a fresh store."""
    box = fresh_sandbox()
    top = Topology.of(box)
    append_config(top.config, '[failover]\nrecovery_block = "1h"\ncanary_timeout = "30s"')
    states = top.state_dir
    topic = "FailoverAsyncTopic"
    replicated = send_keyed(top.namesrv, topic, "replicated", 100)
    assert replicated["failed"] == 0, replicated
    wait_until(lambda: caught_up(top, A1, A0), 30, "the slave catching up")
    with running_daemon(top.config, tmp_path / "daemon.log") as daemon:
        wait_healthy(daemon)
        slave = runtime_info(top.addrs[A1])
        assert slave is not None
        slave_end = int(slave["commitLogMaxOffset"])
        box.stop(A1)
        alone = send_keyed(top.namesrv, topic, "alone", 100)
        assert alone["failed"] == 0, alone
        master = runtime_info(top.addrs[A0])
        assert master is not None
        master_end = int(master["commitLogMaxOffset"])
        assert master_end > slave_end
        # Two cycles, so the daemon has seen the master's last offset before it dies.
        daemon.wait_event(lambda e: "cycle" in e, 15, "a cycle", after=time.time() + 2.5)
        box.kill(A0, "KILL")
        killed_at = time.time()
        box.start(A1)
        first = states.wait_finished(FAILOVER_SECONDS)
        assert states.outcome(first) == "succeeded", states.journal(first)[-3:]
        promoted = states.step_event(first, "wait_master")
        assert promoted is not None
        report(
            "async: kill -> promoted (slave restarted after the kill)", promoted["at"] - killed_at
        )

        plan = states.plan(first)
        expected = plan["expected_loss_bytes"]
        noted = [e for e in states.journal(first) if e["event"] == "promotion_offset"]
        promotion_offset = int(noted[0]["offset"])
        actual = master_end - promotion_offset
        print(f"[failover loss] expected {expected} bytes, actual {actual} bytes")
        assert 0 < actual <= expected <= plan["max_loss_bytes"]
        assert promotion_offset == slave_end
        keys = set(pull_all(top.namesrv, topic))
        assert set(replicated["acked"]) <= keys
        lost = set(alone["acked"]) - keys
        print(
            f"[failover loss] {len(lost)} of {len(alone['acked'])} messages sent while the "
            "slave was down are not on the new master"
        )
        assert lost

        # The deposed master comes back with a longer log: fenced, store moved aside, slave.
        box.start(A0)
        second = states.wait_finished(FAILOVER_SECONDS, count=2)
        fence = states.plan(second)
        assert fence["kind"] == "fence" and fence["old_master_key"] == A0, fence
        assert states.outcome(second) == "succeeded", states.journal(second)[-3:]
        assert "move_store_aside" in [s["kind"] for s in fence["steps"]]
        aside = list((top.dir / "store").glob("broker-a-0.rmq-watchdog-aside-*"))
        assert len(aside) == 1, aside
        wait_slave(top, A0)
        one_master_everywhere(top, top.addrs[A1])
        wait_until(lambda: caught_up(top, A0, A1), 60, "the fenced old master resyncing")


# --------------------------------------------------------------------------- 3 + 4


def far_config(top: Topology, tmp_path: Path, port: int) -> Path:
    """The sandbox config with broker-a:1 on an SSH host whose port has nothing listening."""
    head, *blocks = top.config.read_text().split("[[brokers]]")
    blocks = [
        b.replace('host = "local"', 'host = "far"') if "broker_id = 1\n" in b else b for b in blocks
    ]
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = tmp_path / "far.toml"
    path.write_text(
        "[[brokers]]".join([head, *blocks])
        + f'\n[hosts.far]\nkind = "ssh"\naddress = "127.0.0.1"\nport = {port}\nuser = "root"\n'
        f'known_hosts = "{known}"\nconnect_timeout = "2s"\n'
    )
    return path


def unused_port() -> int:
    """A port in this test file's range (28000-28999) that nothing listens on."""
    import socket

    for port in range(28900, 29000):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError("no unused port in 28900-28999")


def test_bad_inputs_change_nothing_and_dry_run_equals_executed_plan(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    box = fresh_sandbox()
    top = Topology.of(box)
    append_config(top.config, '[failover]\nstep_timeout = "60s"\ncanary_timeout = "30s"')
    states = top.state_dir
    config = str(top.config)

    def snapshot() -> tuple[dict[str, str], dict[str, int | None], dict[str, str | None]]:
        roles = {}
        for key in (A0, A1):
            live = broker_config(top.addrs[key])
            roles[key] = None if live is None else live["brokerRole"]
        return file_hashes(top.all_properties()), {k: box.pid(k) for k in (A0, A1)}, roles

    healthy = snapshot()
    assert healthy[2] == {A0: "ASYNC_MASTER", A1: "SLAVE"}

    # Unknown broker name: exit 2, one line naming it.
    unknown = cli("failover", "-c", config, "--broker-name", "broker-zz", "--force")
    assert unknown.returncode == 2, unknown
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and "broker-zz" in lines[0] and "broker-a" in lines[0], lines

    # Unreachable host: the candidate's properties cannot be read; the error names the host.
    far = far_config(top, tmp_path, unused_port())
    unreachable = cli("failover", "-c", str(far), "--broker-name", "broker-a", "--force", "--yes")
    assert unreachable.returncode == 1, unreachable
    assert unreachable.stdout.strip().splitlines() == [unreachable.stdout.strip().splitlines()[0]]
    assert "refused" in unreachable.stdout and "on far" in unreachable.stdout, unreachable

    # Unwritable properties (root ignores modes; the file is made immutable): refused before
    # the first step, so the live master is never stopped.
    subprocess.run(["chattr", "+i", str(top.properties[A1])], check=True)
    try:
        unwritable = cli("failover", "-c", config, "--broker-name", "broker-a", "--force", "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(top.properties[A1])], check=True)
    assert unwritable.returncode == 1, unwritable
    assert "refused before any step" in unwritable.stdout, unwritable.stdout
    assert str(top.properties[A1]) in unwritable.stdout
    assert "Operation not permitted" in unwritable.stdout
    assert states.failover_ids() == []
    assert snapshot() == healthy

    # No promotable slave: refused, nothing changed.
    box.kill(A1, "KILL")
    no_slave = cli("failover", "-c", config, "--broker-name", "broker-a", "--force", "--yes")
    assert no_slave.returncode == 1, no_slave
    assert "no slave of broker-a can be promoted" in no_slave.stdout
    assert "broker-a:1 not answering" in no_slave.stdout
    hashes, pids, _ = snapshot()
    assert hashes == healthy[0] and pids[A0] == healthy[1][A0]
    box.start(A1)
    wait_slave(top, A1)
    assert states.failover_ids() == []

    # --force on a live master without a terminal to ask on and without --yes: refused.
    unconfirmed = cli("failover", "-c", config, "--broker-name", "broker-a", "--force")
    assert unconfirmed.returncode == 1, unconfirmed
    assert "Confirm with --yes" in unconfirmed.stdout and "(caught up)" in unconfirmed.stdout
    assert states.failover_ids() == []

    # Dry run on the healthy cluster: the plan and diffs, nothing changed.
    before = snapshot()
    originals = {p: p.read_text() for p in top.all_properties()}
    dry = cli(
        "failover", "-c", config, "--broker-name", "broker-a", "--force", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] is True and doc["group_state"] == "HEALTHY"
    assert snapshot() == before
    assert states.failover_ids() == []

    # The same failover for real (no daemon: it takes the lock and acts itself).
    started = time.monotonic()
    forced = cli("failover", "-c", config, "--broker-name", "broker-a", "--force", "--yes")
    assert forced.returncode == 0, forced
    report("forced failover of a live master (no daemon)", time.monotonic() - started)
    [executed_id] = states.failover_ids()
    executed = states.plan(executed_id)
    planned = doc["plan"]
    assert executed["steps"] == planned["steps"]
    assert executed["rollback"] == planned["rollback"]
    same = ("kind", "epoch", "old_master_key", "new_master_key", "new_role", "candidate_offset")
    assert {k: executed[k] for k in same} == {k: planned[k] for k in same}
    # The files changed exactly as the dry run's diffs said.
    from watchdog.model import unified_diff

    now = [
        unified_diff(originals[p], p.read_text(), f"local:{p}")
        for p in top.all_properties()
        if p.read_text() != originals[p]
    ]
    assert sorted(now) == sorted(doc["diffs"])
    one_master_everywhere(top, top.addrs[A1])
    # The live old master was stopped, then rejoined as a slave of the new one.
    rejoined = wait_slave(top, A0)
    assert rejoined["brokerId"] == "1"


# --------------------------------------------------------------------------- 5


def test_promotion_not_registered_rolls_back(fresh_sandbox: Any, tmp_path: Path) -> None:
    """No nameserver up: ODOWN from the daemon's own probe plus the local secondary check; the
    promoted slave cannot register anywhere, so after promote_timeout it is rolled back."""
    box = fresh_sandbox()
    top = Topology.of(box)
    append_config(top.config, '[failover]\npromote_timeout = "10s"\nrecovery_block = "1h"')
    states = top.state_dir
    originals = {key: top.properties[key].read_bytes() for key in (A0, A1)}
    with running_daemon(top.config, tmp_path / "daemon.log") as daemon:
        wait_healthy(daemon)
        for ns in top.nameservers:
            box.kill_nameserver(ns, "KILL")
        box.kill(A0, "KILL")
        killed_at = time.time()
        decided = daemon.wait_event(
            lambda e: e.get("decision") == "promote", 60, "a promote decision", after=killed_at
        )
        assert "2 of 2 vantage points" in decided["event"], decided["event"]
        failover = states.wait_finished(FAILOVER_SECONDS)
        report("rollback: kill -> rolled back", time.time() - killed_at)
        assert states.outcome(failover) == "rolled_back", states.journal(failover)[-3:]
        failed = states.step_event(failover, "wait_master", "step_failed")
        assert failed is not None and "not registered as master within 10 s" in failed["detail"]
        daemon.wait_event(
            lambda e: str(e.get("event", "")).startswith("failover rolled_back"),
            10,
            "the rolled_back report",
        )
        # Both files byte for byte as before; the candidate runs again as the slave it was.
        assert {k: top.properties[k].read_bytes() for k in (A0, A1)} == originals
        live = wait_until(lambda: broker_config(top.addrs[A1]), 30, f"{A1} answering")
        assert (live["brokerId"], live["brokerRole"]) == ("1", "SLAVE")
        group = states.group("broker-a")
        assert group["last_outcome"] == "rolled_back" and group["epoch"] == 0
        assert states.state()["running"] == {}


# --------------------------------------------------------------------------- 9


def test_consumer_offsets_survive_promotion_and_the_old_masters_return(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    """A real consumer group: offsets committed to the slave while the master is down are the
    new master's after promotion, and the returning old master does not bring its stale ones
    back: a restarted consumer of the group gets only new messages."""
    box = fresh_sandbox()
    top = Topology.of(box)
    # The operator promotes (through the daemon) once the consumer has worked on the slave. A
    # graceful stop of the candidate: a kill (the default) loses the offsets committed to it in
    # its last few seconds (bench/results/candidate_stop.md), which is what this test commits.
    append_config(
        top.config,
        '[failover]\nauto_failover = false\ncanary_timeout = "30s"\ncandidate_stop = "graceful"',
    )
    states = top.state_dir
    topic, group = "OffsetTopic", "FailoverTestCG"

    def offsets(key: str) -> dict[int, int | None]:
        return {q: consumer_offset(top.addrs[key], group, topic, q) for q in range(8)}

    def total(table: dict[int, int | None]) -> int:
        return sum(v or 0 for v in table.values())

    first = send_keyed(top.namesrv, topic, "first", 100)
    assert first["failed"] == 0, first
    out1 = tmp_path / "consumer-1.keys"
    consumer = start_consumer(top.namesrv, topic, group, out1)
    try:
        wait_until(
            lambda: set(first["acked"]) <= set(consumed_keys(out1)), 90, "consumer 1 reading"
        )
    finally:
        stop_consumer(consumer)  # commits its offsets to the master
    # The final commit is a oneway request per queue: give the master a moment to apply it.
    committed = wait_until(
        lambda: (lambda t: t if total(t) == 100 else None)(offsets(A0)),
        15,
        "consumer 1's offsets reaching the master",
    )
    assert total(committed) == 100, committed
    # The slave copies the master's consumer offsets every 10 s.
    wait_until(lambda: offsets(A1) == committed, 40, "the slave copying the offsets")
    second = send_keyed(top.namesrv, topic, "second", 100)
    assert second["failed"] == 0, second
    wait_until(lambda: caught_up(top, A1, A0), 30, "the slave catching up")

    with running_daemon(top.config, tmp_path / "daemon.log") as daemon:
        wait_healthy(daemon)
        box.kill(A0, "KILL")
        out2 = tmp_path / "consumer-2.keys"
        consumer = start_consumer(top.namesrv, topic, group, out2)
        try:
            wait_until(
                lambda: set(second["acked"]) <= set(consumed_keys(out2)),
                90,
                "consumer 2 reading from the slave",
            )
        finally:
            stop_consumer(consumer)  # commits to the only broker left: the slave

        # The commit is a oneway request: give the slave a moment to apply it.
        def all_committed() -> dict[int, int | None] | None:
            table = offsets(A1)
            return table if total(table) == 200 else None

        on_slave = wait_until(
            all_committed, 15, "offsets committed while the master was down reaching the slave"
        )
        daemon.wait_event(
            lambda e: (
                e.get("state") == "FAILOVER_BLOCKED"
                and "automatic failover off" in e.get("event", "")
            ),
            30,
            "ODOWN with automatic failover off",
        )
        promoted = cli("failover", "-c", str(top.config), "--broker-name", "broker-a")
        assert promoted.returncode == 0, promoted
        assert "automatic failovers of broker-a are blocked until" in promoted.stdout, promoted
        [failover] = states.failover_ids()
        assert states.outcome(failover) == "succeeded"
        assert offsets(A1) == on_slave

        box.start(A0)
        wait_slave(top, A0)
        # Longer than the slave's 10 s offset sync: a stale copy would have flowed by now.
        time.sleep(12)
        assert offsets(A1) == on_slave
        wait_until(lambda: offsets(A0) == on_slave, 30, "the old master following the offsets")
        assert len(states.failover_ids()) == 1  # it rejoined cleanly, nothing to fence

        out3 = tmp_path / "consumer-3.keys"
        consumer = start_consumer(top.namesrv, topic, group, out3)
        try:
            third = send_keyed(top.namesrv, topic, "third", 20)
            assert third["failed"] == 0, third
            wait_until(
                lambda: set(third["acked"]) <= set(consumed_keys(out3)), 90, "consumer 3 reading"
            )
            time.sleep(2)
        finally:
            stop_consumer(consumer)
    seen2, seen3 = consumed_keys(out2), consumed_keys(out3)
    again2 = set(seen2) & set(first["acked"])
    again3 = set(seen3) & (set(first["acked"]) | set(second["acked"]))
    print(
        f"[failover offsets] consumer 2 re-read {len(again2)} of the first 100, consumer 3 "
        f"re-read {len(again3)} of the 200 before; consumer 3 read {len(seen3)} messages"
    )
    assert not again2 and not again3
    assert sorted(seen3) == sorted(third["acked"])


# --------------------------------------------------------------------------- old master back early


def test_an_old_master_back_mid_failover_keeps_its_store(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    """The old master is started again while its failover is still running. It comes back
    as a slave (the fence rewrote it) and replicates the new master's log, the canary's
    messages included; it is judged by the log end it came back with, not by what it copied
    since, so nothing is fenced and its store is not moved aside."""
    box = fresh_sandbox()
    top = Topology.of(box)
    states = top.state_dir
    sent = send_keyed(top.namesrv, "MidFailoverTopic", "before", 50)
    assert sent["failed"] == 0, sent
    wait_until(lambda: caught_up(top, A1, A0), 30, "the slave catching up")
    master_config = broker_config(top.addrs[A0])
    assert master_config is not None
    store = Path(master_config["storePathRootDir"])

    with running_daemon(top.config, tmp_path / "daemon.log") as daemon:
        wait_healthy(daemon)
        box.kill(A0, "KILL")
        failover = wait_until(
            lambda: next(iter(states.failover_ids()), None), 60, "a failover to start"
        )
        wait_until(
            lambda: states.step_event(failover, "confirm_fenced"), 90, "the fence gate passing"
        )
        box.start(A0)
        deadline = time.monotonic() + 90
        while runtime_info(top.addrs[A0]) is None:
            assert time.monotonic() < deadline, "the old master never answered again"
            time.sleep(0.2)
        assert states.outcome(failover) is None, "the failover ended before the old master was back"
        assert states.wait_finished(FAILOVER_SECONDS) == failover
        assert states.outcome(failover) == "succeeded"

        wait_slave(top, A0)
        wait_until(lambda: caught_up(top, A0, A1), 60, "the old master replicating the new one")
        time.sleep(3)  # a few more cycles in which a wrong judgement would fence it
        fenced = [e for e in daemon.events() if "fencing broker-a:0" in str(e.get("event", ""))]
        assert not fenced, fenced
    assert states.failover_ids() == [failover]  # no fence after it
    assert states.step_event(failover, "move_store_aside") is None
    assert not [p for p in store.parent.iterdir() if p.name.startswith(store.name + ".")]
    assert set(sent["acked"]) <= set(pull_all(top.namesrv, "MidFailoverTopic"))
