"""Planned switchover on real RocketMQ 4.9.7 sandboxes, under a continuous real producer.

A librocketmq producer (bench/switchover.py's child, which builds a new Producer after 3 failed
sends in a row) writes numbered messages to a 4-queue topic throughout; at the end every queue
is read back from offset 0 on the final master, and every message the producer saw acknowledged
must be there: nothing acknowledged is lost, ASYNC_MASTER included. The write pause (the
journal's write stop -> the new master listed as id 0 by every nameserver, polled every 50 ms)
and the producer's own gap are printed (-s), not asserted: speed is bench/switchover.py's.

- ASYNC_MASTER with the broker plug-in, no daemon (the command acts itself, in this process):
  first the refusal (the slave frozen with SIGSTOP right after the master stopped taking writes:
  it cannot catch up within --catch-up-timeout, the master takes writes again, its properties
  file byte for byte as it was), then the switchover in place, the old master replicating from
  the new one afterwards;
- SYNC_MASTER by restart, through a running daemon (the command asks it over its control
  socket): the same checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bench.switchover import (
    Cluster,
    NameserverWatch,
    Producer,
    acked_lost,
    audit,
    journal,
    newest_failover,
    switchover_cli,
    wait_until,
    write_pause,
)
from tests.integration.daemon_harness import Daemon
from watchdog.commands._switchover import run_switchover
from watchdog.config import load_config

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"


def report(what: str, seconds: float | None) -> None:
    print(f"[switchover] {what}: " + ("-" if seconds is None else f"{seconds:.2f} s"))


def finished(cluster: Cluster, failover_id: str) -> dict[str, Any]:
    entries = [e for e in journal(cluster, failover_id) if e.get("event") == "finished"]
    assert entries, journal(cluster, failover_id)[-3:]
    return entries[-1]


def stopped_at(cluster: Cluster, failover_id: str) -> float:
    return next(
        float(e["at"]) for e in journal(cluster, failover_id) if e["event"] == "writes_stopped"
    )


def replicating(cluster: Cluster, slave: str, master: str) -> bool:
    """`slave` runs as a slave and its log end reached the master's (read just before)."""
    roles = cluster.roles()
    target = roles[master][2]
    if roles[slave][0] != "SLAVE" or target is None:
        return False
    return bool(wait_until(lambda: (cluster.roles()[slave][2] or -1) >= target, 30, "replication"))


def check_no_loss(cluster: Cluster, producer: Producer, after: float) -> None:
    """The producer wrote again after `after`, then every message it saw acked is stored."""
    wait_until(lambda: producer.acked_since(after), 60, "an acknowledged send after the switch")
    producer.stop()
    acked = sum(1 for s in producer.sends() if s.is_ok)
    assert acked > 100, "the producer barely wrote: nothing was at stake"
    lost = acked_lost([producer], audit(cluster, [producer.run_id]))
    print(f"[switchover] acknowledged {acked}, lost {len(lost)}")
    assert lost == [], f"{len(lost)} acknowledged messages lost: {lost[:10]}"


def test_async_refused_then_switched_in_place(fresh_sandbox: Any, tmp_path: Path) -> None:
    box = fresh_sandbox(promotion="inplace")
    cluster = Cluster.of(box)
    config = load_config(box.config_path)
    cluster.create_topic()
    producer = Producer.start(cluster, tmp_path, "async", recreate_after=3, name="recreated")
    try:
        wait_until(lambda: producer.acked_since(time.time() - 1), 60, "the producer writing")
        assert cluster.settled() == A0
        master_file = cluster.properties[A0].read_bytes()
        slave_pid = box.pid(A1)
        assert slave_pid is not None
        lines: list[str] = []

        def freeze_after_the_write_stop(line: str) -> None:
            # Called by the executor's events, before the next step starts: the slave is
            # frozen the moment the master refuses writes, so it cannot catch up.
            lines.append(line)
            if line.startswith("  step 2 done"):
                os.kill(slave_pid, signal.SIGSTOP)

        try:
            code = asyncio.run(
                run_switchover(
                    config, "broker-a", to_key=None, dry_run=False, as_json=False,
                    echo=freeze_after_the_write_stop, catch_up_timeout_seconds=2.0,
                    assume_yes=True,
                )
            )  # fmt: skip
        finally:
            os.kill(slave_pid, signal.SIGCONT)
        output = "\n".join(lines)
        assert code == 1, output
        assert "switchover refused in" in output, output
        assert f"{A1}@{cluster.addrs[A1]} did not reach {A0}'s log end within 2 s" in output
        assert f"{A0} takes writes again" in output, output
        refused = newest_failover(cluster)
        assert refused is not None and finished(cluster, refused)["outcome"] == "refused"
        # Nothing half changed: the master takes writes as before, its file is as it was, no
        # anti-flap block.
        role, permission, _ = cluster.roles()[A0]
        assert (role, permission) == ("ASYNC_MASTER", "6")
        assert cluster.properties[A0].read_bytes() == master_file
        assert cluster.master() == A0
        wait_until(lambda: producer.acked_since(time.time() - 1), 60, "writes after the refusal")
        report("refused: writes stopped for", _refused_pause(cluster, refused))

        lines.clear()
        cluster.settled()
        with NameserverWatch(cluster) as watch:
            code = asyncio.run(
                run_switchover(
                    config, "broker-a", to_key=None, dry_run=False, as_json=False,
                    echo=lines.append, assume_yes=True,
                )
            )  # fmt: skip
        output = "\n".join(lines)
        assert code == 0, output
        switched = newest_failover(cluster)
        assert switched is not None
        assert finished(cluster, switched)["detail"].endswith("promoted in place"), output
        stop = stopped_at(cluster, switched)
        registered = watch.since.get(cluster.addrs[A1])
        report("in place: write stop -> new master id 0 everywhere", (registered or stop) - stop)
        report("in place: as the command printed", _printed(output))
        assert cluster.master() == A1
        assert replicating(cluster, A0, A1), cluster.roles()
        report("in place: the producer's write pause", write_pause(producer.sends(), stop))
        check_no_loss(cluster, producer, stop)
    finally:
        producer.stop()


def test_sync_switched_by_restart_through_the_daemon(fresh_sandbox: Any, tmp_path: Path) -> None:
    box = fresh_sandbox(replication="sync")
    cluster = Cluster.of(box)
    cluster.create_topic()
    producer = Producer.start(cluster, tmp_path, "sync", recreate_after=3, name="recreated")
    daemon = Daemon(Path(box.config_path), tmp_path / "daemon.log")
    try:
        # A SYNC_MASTER answers SLAVE_NOT_AVAILABLE until its slave's HA link is up.
        wait_until(lambda: producer.acked_since(time.time() - 1), 90, "the producer writing")
        daemon.wait_event(
            lambda e: e.get("state") == "HEALTHY" and "cycle" in e, 60, "a HEALTHY cycle"
        )
        cluster.settled()
        with NameserverWatch(cluster) as watch:
            done = switchover_cli(Path(box.config_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "a running daemon holds the lock; asking it to run the switchover" in done.stdout
        switched = newest_failover(cluster)
        assert switched is not None
        entries = journal(cluster, switched)
        assert any(
            e["event"] == "step_done" and e["kind"] == "start" and e["broker_key"] == A1
            for e in entries
        ), entries  # promoted by restart
        plan = entries[0]["plan"]
        assert plan["new_role"] == "ASYNC_MASTER" and plan["lowered_from"] == "SYNC_MASTER"
        stop = stopped_at(cluster, switched)
        registered = watch.since.get(cluster.addrs[A1])
        report("restart: write stop -> new master id 0 everywhere", (registered or stop) - stop)
        report("restart: as the command printed", _printed(done.stdout))
        assert cluster.master() == A1
        assert replicating(cluster, A0, A1), cluster.roles()
        # The daemon ran it: its log has the run, and a planned switch blocks nothing.
        daemon.wait_event(
            lambda e: "switchover succeeded: switchover of broker-a" in str(e.get("event")),
            30,
            "the daemon's line for the switchover",
        )
        state = json.loads(cluster.state_dir.joinpath("state.json").read_text())
        assert state["groups"]["broker-a"]["blocked_until"] is None, state
        report("restart: the producer's write pause", write_pause(producer.sends(), stop))
        check_no_loss(cluster, producer, stop)
    finally:
        producer.stop()
        daemon.stop()


def _printed(output: str) -> float | None:
    marker = "write pause: "
    line = next((x for x in output.splitlines() if x.startswith(marker)), None)
    return None if line is None else float(line[len(marker) :].split(" ")[0])


def _refused_pause(cluster: Cluster, failover_id: str) -> float:
    """From the write stop to the end of restore_writes (the journal's line)."""
    entries = journal(cluster, failover_id)
    back = next(
        e for e in entries if e.get("event") == "step_done" and e["kind"] == "restore_writes"
    )
    return float(back["at"]) - stopped_at(cluster, failover_id)

