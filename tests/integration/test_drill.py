"""`rmq-watchdog drill` on real RocketMQ 4.9.7 sandboxes, the drill starting the daemon itself.

Two drills (one to two minutes each on two cores): kill -9 of the async master, where the
daemon promotes the slave and the drill restarts the old master; and a partition of the
watchdog alone from the master, where the right outcome is no failover. The JSON reports are
checked against the cluster afterwards and against the producer's and consumer's own records.
Run with -s to see the measured numbers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from watchdog.daemon import is_lock_held
from watchdog.remoting import RemotingClient, RemotingError, get_broker_config, get_cluster_info

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DRILL_SECONDS = 600  # the whole command, on a loaded two-core machine
TIMEOUT_SECONDS = 120.0  # --timeout


def drill(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "drill", "-c", str(config), "--broker-name", "broker-a",
         *args],
        capture_output=True, text=True, timeout=DRILL_SECONDS, check=False,
        stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip


def records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        if "seq" in doc:
            out.append(doc)
    return out


async def cluster_now(nameservers: list[str], addrs: list[str]) -> tuple[list[Any], list[Any]]:
    """Each nameserver's broker-a table and each broker's live config (None: no answer)."""

    async def table(addr: str) -> Any:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return dict(
                (await get_cluster_info(client, timeout_seconds=3.0)).broker_addrs["broker-a"]
            )
        except RemotingError:
            return None
        finally:
            await client.close()

    async def config(addr: str) -> Any:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            return await get_broker_config(client, timeout_seconds=3.0)
        except RemotingError:
            return None
        finally:
            await client.close()

    tables = [await table(a) for a in nameservers]
    configs = [await config(a) for a in addrs]
    return tables, configs


def test_kill_drill_on_an_async_sandbox(fresh_sandbox: Any) -> None:
    box = fresh_sandbox(replication="async")
    info = box.info()
    config = Path(box.config_path)
    nameservers = [n["addr"] for n in info["nameservers"]]
    addrs = {f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in info["brokers"]}
    state_dir = Path(box.dir) / "watchdog-state"

    # Refused, and nothing touched: no daemon runs; a partition needs the daemon to probe from
    # an address of its own.
    no_daemon = drill(config)
    assert no_daemon.returncode == 2, no_daemon
    assert "no watchdog daemon holds" in no_daemon.stderr
    partition = drill(config, "--fault", "partition", "--start-daemon")
    assert partition.returncode == 2, partition
    assert "needs [probe] source_address" in partition.stderr
    assert not (state_dir / "drills").exists()

    run = drill(config, "--start-daemon", "--fault", "kill", "--json", "--timeout", "120s")
    assert run.returncode == 0, f"drill failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    doc = json.loads(run.stdout)
    seconds = doc["seconds"]
    m = doc["messages"]
    print(f"\n[drill] {json.dumps(seconds)}")
    print(f"[drill] messages {json.dumps({k: v for k, v in m.items() if not k.endswith('_seqs')})}")
    print(f"[drill] old master: {doc['old_master_rejoin']}")

    # The promotion happened: the slave is the new master, by the daemon's journal.
    assert doc["ok"] is True, doc["problems"]
    assert doc["failover"]["outcome"] == "succeeded"
    assert doc["old_master"]["key"] == "broker-a:0"
    assert doc["new_master"] == {"key": "broker-a:1", "addr": addrs["broker-a:1"]}
    events = [e["event"] for e in doc["timeline"]]
    in_order = ["fault", "objectively_down", "failover_planned", "promoted", "first_write"]
    positions = [events.index(name) for name in in_order]
    assert positions == sorted(positions), events
    assert "consumer_caught_up" in events and "group_safe" in events
    # The fault's time is when its command returned, after the process was gone: on a quiet
    # machine the crash rule judges the master down before that (-0.2 s seen), never by much.
    assert -1.0 < seconds["fault_to_odown"] < seconds["fault_to_promoted"]

    # The write outage was measured, within the drill's bound, and no write got through before
    # the new master was registered.
    outage = seconds["write_outage"]
    assert 0 < outage < TIMEOUT_SECONDS
    assert seconds["fault_to_first_write"] >= seconds["fault_to_promoted"]
    assert outage >= seconds["fault_to_first_write"]

    # acked - lost accounting, recomputed from the producer's and consumer's own records.
    run_dir = Path(doc["files"]["dir"])
    sends = records(run_dir / "producer.jsonl")
    deliveries = records(run_dir / "consumer.jsonl")
    acked = {s["seq"] for s in sends if s["ok"]}
    before = {s["seq"] for s in sends if s["ok"] and s["started_at"] < doc["fault_at"]}
    consumed = [d["seq"] for d in deliveries]
    assert m["acked"] == len(acked) and m["acked_before_fault"] == len(before) >= 50
    assert m["acked_after_fault"] == len(acked - before) > 0
    assert m["lost"] == len(before - set(consumed)) == len(m["lost_seqs"])
    assert m["acked_before_fault"] - m["lost"] == len(before & set(consumed))
    assert m["duplicated"] == len({q for q in consumed if consumed.count(q) > 1})
    # Async: a message the old master held alone frees its queue offset, and the first write
    # the new master stores there is skipped by the consumer; nothing else may go undelivered.
    assert m["unconsumed_after_fault"] == m["skipped_reused_offset"] <= m["not_stored"]
    assert doc["failover"]["max_loss_bytes"] >= doc["failover"]["expected_loss_bytes"] >= 0
    # The audit pulled what the cluster stores now: every write the new master acknowledged is
    # still there (fencing the old master took nothing from it).
    assert m["not_stored"] == len(m["not_stored_seqs"])
    assert not set(m["not_stored_seqs"]) & (acked - before)

    # The old master came back as a slave; one master, id 0 on every nameserver; the daemon the
    # drill started is gone.
    rejoin = doc["old_master_rejoin"]
    assert rejoin["safe"] is True and 0 < rejoin["seconds_from_start"] < TIMEOUT_SECONDS
    assert doc["one_master"] == {"key": "broker-a:1", "addr": addrs["broker-a:1"]}
    tables, configs = asyncio.run(
        cluster_now(nameservers, [addrs["broker-a:0"], addrs["broker-a:1"]])
    )
    assert tables == [{0: addrs["broker-a:1"], 1: addrs["broker-a:0"]}] * len(nameservers)
    old, new = configs
    assert old is not None and (old["brokerRole"], old["brokerId"]) == ("SLAVE", "1")
    assert new is not None and (new["brokerRole"], new["brokerId"]) == ("ASYNC_MASTER", "0")
    assert not is_lock_held(state_dir)
    assert json.loads((run_dir / "report.json").read_text()) == doc


def nft_tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout


def test_partition_drill_is_no_failover(fresh_sandbox: Any) -> None:
    box = fresh_sandbox(replication="async")
    config = Path(box.config_path)
    with config.open("a") as fh:
        fh.write('\n[probe]\nsource_address = "127.0.0.2"\n')
    master = box.info()["brokers"][0]["addr"]

    run = drill(config, "--start-daemon", "--fault", "partition", "--json", "--timeout", "20s")
    assert run.returncode == 0, f"drill failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    doc = json.loads(run.stdout)
    print(f"\n[drill partition] {json.dumps(doc['seconds'])} ok={doc['ok']}")
    assert doc["ok"] is True, doc["problems"]

    # The daemon lost sight of the master but did not fail over: clients could still write.
    assert doc["failover"]["id"] is None
    timeline = {e["event"]: e for e in doc["timeline"]}
    assert "subjectively_down" in timeline and "objectively_down" not in timeline
    assert 0 < timeline["subjectively_down"]["t"] < timeline["partition_healed"]["t"]
    assert timeline["partition_healed"]["t"] >= 20.0
    assert doc["seconds"]["write_outage"] < 2.0
    m = doc["messages"]
    assert m["failed"] == 0 and m["lost"] == 0 and m["acked_after_fault"] > 50
    assert doc["one_master"]["key"] == "broker-a:0" and doc["one_master"]["addr"] == master

    # The rule is gone; the master is still the one master.
    assert "rmqwd_drill_" not in nft_tables()
    tables, _ = asyncio.run(cluster_now([n["addr"] for n in box.info()["nameservers"]], []))
    assert all(t is not None and t.get(0) == master for t in tables), tables
