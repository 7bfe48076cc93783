"""The watchdog on RocketMQ 5.3.3 brokers in classic master/slave mode (no controller).

A smaller set than on 4.9.7, on one `sandbox up --version 5.3.3` (ASYNC_MASTER broker-a:0,
SLAVE broker-a:1, two nameservers) and one daemon, each phase starting from the cluster the one
before left (a 5.3.3 broker restarted in 9-11 s at load 10 here, a 4.9.7 one in 3.5-4.7 s):
1. `failover --dry-run` with promotion = "inplace": the plug-in is 4.9.x only, so the plan
   takes the restart path and says why;
2. `rmq-watchdog drill --fault partition`: a real producer and consumer on 5.3.3 brokers, the
   watchdog alone cut off from the master, no failover, nothing lost. (A kill drill, on 4.9.7
   too, waits out its 90 s consumer catch-up whenever its consumer read a message only the
   killed master held, which then hides the new master's write at that queue offset: 2 of 4
   kill drills on 5.3.3 here, 80-90 s each, too long for this file's budget.)
3. kill -9 of the master: the slave promoted by restart, one master; the old master started
   again rejoins as a slave, one master;
4. the new master hangs (SIGSTOP): promoted after down_after and the secondary check, the hung
   master fenced (rewritten to SLAVE and killed), one master;
5. a group of one master and no slave (a config listing only the master) loses its master:
   no failover, FAILOVER_BLOCKED.
Run with -s to see the timings.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import (
    REPO,
    Daemon,
    StateDir,
    Topology,
    append_config,
    broker_config,
    cli,
    registrations,
    runtime_info,
    wait_until,
    watchdog_env,
)
from watchdog.remoting import RemotingClient, create_topic
from watchdog.tools.drill import drill_topic

pytestmark = pytest.mark.integration

A0, A1 = "broker-a:0", "broker-a:1"
PHASE_SECONDS = 120  # one failover or one return, with room for a loaded 2-core machine
PARTITION = "10s"


def report(what: str, seconds: float) -> None:
    print(f"[rocketmq5 timing] {what}: {seconds:.1f} s")


def drill(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "drill", "-c", str(config), "--broker-name", "broker-a",
         *args],
        capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
        env=watchdog_env(), cwd=REPO,
    )  # fmt: skip


def create_on(addrs: list[str], topic: str) -> None:
    async def create() -> None:
        for addr in addrs:
            client = RemotingClient(addr, connect_timeout_seconds=1.0)
            try:
                await create_topic(
                    client, topic, read_queue_nums=4, write_queue_nums=4, timeout_seconds=5.0
                )
            finally:
                await client.close()

    asyncio.run(create())


def one_master(top: Topology, key: str, timeout_seconds: float = 60) -> None:
    """`key` is id 0 on every nameserver and the only broker answering as a master."""

    def check() -> bool:
        tables = registrations(top.nameservers).values()
        ids = [(t or {}).get("broker-a", {}).get(0) for t in tables]
        if ids != [top.addrs[key]] * len(top.nameservers):
            return False
        roles = {k: (broker_config(a) or {}).get("brokerRole") for k, a in top.addrs.items()}
        return [k for k, r in roles.items() if r in ("ASYNC_MASTER", "SYNC_MASTER")] == [key]

    wait_until(check, timeout_seconds, f"{key} as the one master")


def wait_slave(top: Topology, key: str, timeout_seconds: float = PHASE_SECONDS) -> None:
    """`key` runs as slave id 1, answers runtime info and is listed by every nameserver."""

    def check() -> bool:
        config = broker_config(top.addrs[key]) or {}
        if (config.get("brokerRole"), config.get("brokerId")) != ("SLAVE", "1"):
            return False
        tables = registrations(top.nameservers).values()
        listed = all(top.addrs[key] in (t or {}).get("broker-a", {}).values() for t in tables)
        return listed and runtime_info(top.addrs[key]) is not None

    wait_until(check, timeout_seconds, f"{key} as a registered slave")


def step_done(top: Topology, failover_id: str, kind: str, broker: str) -> bool:
    return any(
        e.get("event") == "step_done" and e.get("phase", "main") == "main"
        and e.get("kind") == kind and e.get("broker_key") == broker
        for e in top.state_dir.journal(failover_id)
    )  # fmt: skip


def assert_restart_path(plan: dict[str, Any], candidate: str) -> None:
    kinds = [(s["kind"], s["broker_key"]) for s in plan["steps"]]
    assert ("promote_in_place", candidate) not in kinds
    assert ("stop", candidate) in kinds and ("start", candidate) in kinds, kinds
    assert dict(plan["details"])["path"].startswith("restart: "), plan["details"]


def promotion(top: Topology, count: int, old: str, new: str, started_at: float) -> dict[str, Any]:
    """The count-th failover, once finished: succeeded, old -> new by restart; its plan."""
    failover = top.state_dir.wait_finished(PHASE_SECONDS, count=count)
    report(f"{old} down -> failover finished", time.time() - started_at)
    assert top.state_dir.outcome(failover) == "succeeded", top.state_dir.journal(failover)[-3:]
    plan = top.state_dir.plan(failover)
    assert plan["kind"] == "promote", plan
    assert (plan["old_master_key"], plan["new_master_key"]) == (old, new)
    assert_restart_path(plan, new)
    one_master(top, new)
    live = broker_config(top.addrs[new])
    assert live is not None and (live["brokerRole"], live["brokerId"]) == ("ASYNC_MASTER", "0")
    plan["id"] = failover
    return plan


def lone_master_config(top: Topology, master: str, state_dir: Path, path: Path) -> Path:
    """The sandbox's config with only `master` in group broker-a, and its own state dir."""
    head, *blocks = top.config.read_text().split("\n[[brokers]]\n")
    (kept,) = [b for b in blocks if f'addr = "{top.addrs[master]}"' in b]
    head = re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{state_dir}"', head)
    path.write_text(head + "\n[[brokers]]\n" + kept)
    return path


def test_kill_hang_return_drill_and_a_lone_master_on_5_3_3(
    fresh_sandbox: Any, tmp_path: Path
) -> None:
    began = time.monotonic()
    box = fresh_sandbox(version="5.3.3")
    top = Topology.of(box)
    report("sandbox up", time.monotonic() - began)
    configs = [broker_config(a) or {} for a in top.addrs.values()]
    assert {c.get("enableControllerMode") for c in configs} == {"false"}
    # A 5.x slave copies its master's topics once a minute (4.x: every 10 s), and the drill
    # waits until the slave holds its topic: created on both brokers, as `mqadmin updateTopic`
    # on each would, the drill does not wait out that minute.
    create_on([top.addrs[A0], top.addrs[A1]], drill_topic("broker-a"))

    # 1. promotion = "inplace" on 5.3.3: the broker answers PLUGIN_INFO unsupported, so the dry
    # run plans the restart path and names the reason.
    secret = tmp_path / "plugin.secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    inplace = tmp_path / "watchdog-inplace.toml"
    inplace.write_text(
        top.config.read_text()
        + f'\n[failover]\npromotion = "inplace"\nplugin_secret_file = "{secret}"\n'
    )
    dry = cli("failover", "-c", str(inplace), "--broker-name", "broker-a", "--dry-run")
    assert dry.returncode == 0, dry
    assert (
        "promotion: restart: promotion = inplace but broker-a:1 has no plug-in "
        "(it answered REQUEST_CODE_NOT_SUPPORTED)"
    ) in dry.stdout, dry.stdout
    assert "[start] start broker-a:1 as ASYNC_MASTER" in dry.stdout
    assert "promote_in_place" not in dry.stdout
    assert top.state_dir.failover_ids() == []

    # The daemon probes from an address of its own, so the drill can cut it off alone.
    append_config(top.config, '[probe]\nsource_address = "127.0.0.2"')
    daemon = Daemon(top.config, tmp_path / "daemon.log")
    try:
        daemon.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY cycle")

        # 2. The drill: the watchdog cut off from the master under traffic, no failover.
        started = time.monotonic()
        run = drill(top.config, "--fault", "partition", "--json", "--timeout", PARTITION)
        assert run.returncode == 0, f"drill failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
        report("drill --fault partition", time.monotonic() - started)
        doc = json.loads(run.stdout)
        print(f"[rocketmq5 drill] {json.dumps(doc['seconds'])}")
        assert doc["ok"] is True, doc["problems"]
        assert doc["failover"]["id"] is None
        # The daemon lost sight of the master; the secondary check still reached it.
        states = [e for e in daemon.events() if "cycle" in e]
        sdown = [e for e in states if e["state"] == "MASTER_SDOWN"]
        assert sdown and "but secondary check local-secondary reaches it" in sdown[0]["event"]
        assert not [e for e in states if e["state"] == "MASTER_ODOWN"]
        m = doc["messages"]
        assert m["failed"] == 0 and m["lost"] == 0 and m["acked_after_fault"] > 0, m
        assert doc["one_master"] == {"key": A0, "addr": top.addrs[A0]}
        assert top.state_dir.failover_ids() == []

        # 3. kill -9 of the master: the slave promoted by restart; the old master back as slave.
        box.kill(A0, "KILL")
        first = promotion(top, 1, A0, A1, time.time())
        assert "master crashed" in first["reason"], first["reason"]
        started = time.monotonic()
        box.start(A0)
        wait_slave(top, A0)
        report("old master started -> registered slave", time.monotonic() - started)
        one_master(top, A1)
        fences = top.state_dir.failover_ids()[1:]  # none unless its log passed the promotion
        assert all(top.state_dir.plan(f)["kind"] == "fence" for f in fences), fences

        # 4. A hang: lift the block, let the old master catch up, SIGSTOP the master.
        acked = cli("ack", "-c", str(top.config), "--broker-name", "broker-a")
        assert acked.returncode == 0 and "re-enabled" in acked.stdout, acked

        def caught_up() -> bool:
            s, m = runtime_info(top.addrs[A0]), runtime_info(top.addrs[A1])
            return bool(s and m and s["commitLogMaxOffset"] == m["commitLogMaxOffset"])

        wait_until(caught_up, 60, f"{A0} catching up with {A1}")
        count = len(top.state_dir.failover_ids()) + 1
        box.kill(A1, "STOP")
        hung = promotion(top, count, A1, A0, time.time())
        assert "unreachable for" in hung["reason"] and "crashed" not in hung["reason"], hung
        # Fenced: rewritten to SLAVE before it was killed (a stopped JVM dies of SIGKILL too),
        # its .epoch forbids a master start, nothing answers at its address.
        for kind in ("rewrite", "stop", "confirm_fenced"):
            assert step_done(top, hung["id"], kind, A1), kind
        fenced = top.properties[A1].read_text()
        assert "brokerRole=SLAVE" in fenced and "brokerId=1" in fenced
        assert "may_be_master=false" in Path(f"{top.properties[A1]}.epoch").read_text()
        assert broker_config(top.addrs[A1]) is None
    finally:
        assert daemon.stop() == 0

    # 5. One master, no slave: the config lists only broker-a:0 (the hung broker stays dead).
    lone_state = tmp_path / "lone-state"
    lone = lone_master_config(top, A0, lone_state, tmp_path / "watchdog-lone.toml")
    with Daemon(lone, tmp_path / "daemon-lone.log") as d:
        d.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a HEALTHY lone master")
        box.kill(A0, "KILL")
        killed_at = time.time()
        blocked = d.wait_event(
            lambda e: e.get("state") == "FAILOVER_BLOCKED", 30, "FAILOVER_BLOCKED", after=killed_at
        )
        assert blocked["decision"] == "no_action", blocked
        assert "no slave can be promoted: the group has no slave" in blocked["event"], blocked
        d.wait_event(lambda e: e.get("cycle", 0) >= blocked["cycle"] + 2, 30, "two more cycles")
        later = [e for e in d.events() if "cycle" in e and e["cycle"] >= blocked["cycle"]]
        assert {(e["state"], e["decision"]) for e in later} == {("FAILOVER_BLOCKED", "no_action")}
    assert d.returncode == 0
    assert StateDir(lone_state).failover_ids() == []
    report("whole test before sandbox down", time.monotonic() - began)
