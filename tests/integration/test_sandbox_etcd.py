"""`sandbox up --etcd` for real: a RocketMQ sandbox with a 3-member etcd, three instance
configs; `status` and `history` reading the group from that etcd; `down` stopping it all.

One sandbox for the module (its last test takes it down). The instances here are coordinators
(watchdog/coord) run by the test against the sandbox's etcd, as a daemon runs one per instance:
what `status` and `history` read is what they published and committed there.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import sandbox_cli, stop_sandbox
from watchdog.act import GroupRecord, Journal, WatchdogState
from watchdog.config import WatchdogConfig, load_config
from watchdog.coord import Coordinator, GroupView, read_group_of
from watchdog.tools.daemon_child import DaemonChild
from watchdog.tools.sandbox import Sandbox
from watchdog.tools.sandbox._procs import proc_stat

pytestmark = pytest.mark.integration

CONFIGS = ("watchdog.toml", "watchdog-2.toml", "watchdog-3.toml")


@pytest.fixture(scope="module")
def etcd_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("sandbox-etcd")
    result = sandbox_cli("up", "--dir", str(directory), "--tls", "disabled", "--etcd")
    if result.returncode != 0:
        stop_sandbox(directory)
        pytest.fail(f"sandbox up --etcd failed (exit {result.returncode}):\n{result.stderr}")
    try:
        yield Sandbox(directory)
    finally:
        stop_sandbox(directory)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "watchdog", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


async def acli(*args: str) -> tuple[int, str, str]:
    """`cli` from inside an event loop whose coordinators must go on renewing their leases."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watchdog", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def proc_state(pid: int) -> str | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[0]


def configs(box: Sandbox) -> list[WatchdogConfig]:
    return [load_config(box.dir / name) for name in CONFIGS]


def master_addr(box: Sandbox) -> str:
    addr: str = next(b["addr"] for b in box.info()["brokers"] if b["broker_id"] == 0)
    return addr


def test_up_etcd_starts_etcd_and_writes_one_config_per_instance(etcd_box: Sandbox) -> None:
    info = etcd_box.info()
    etcd = info["etcd"]
    assert [m["name"] for m in etcd["members"]] == ["m1", "m2", "m3"]
    assert [i["name"] for i in etcd["instances"]] == ["wd-1", "wd-2", "wd-3"]
    members = etcd_box.etcd_members()
    assert all(m.is_running() for m in members)
    assert all(Path(m.data_dir).is_relative_to(etcd_box.dir) for m in members)
    rows = [r for r in etcd_box.status() if r.kind == "etcd"]
    assert [(r.key, r.state) for r in rows] == [(f"etcd-m{i}", "alive") for i in (1, 2, 3)]

    # The three configs load, as the daemon and `check` load them.
    check_argv = [sys.executable, "-m", "watchdog", "check", "--config-only", "-c"]
    checks = [
        subprocess.Popen(
            [*check_argv, str(etcd_box.dir / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for name in CONFIGS
    ]
    for check in checks:
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0 and "a valid configuration" in out, err
    loaded = configs(etcd_box)
    assert [c.instance_name for c in loaded] == ["wd-1", "wd-2", "wd-3"]
    assert len({c.state_dir for c in loaded}) == len({c.metrics.listen for c in loaded}) == 3
    assert all(c.etcd is not None and list(c.etcd.endpoints) == etcd["endpoints"] for c in loaded)

    # etcd answers each instance: all reach it, exactly one leads.
    async def one_round() -> list[Any]:
        coords = [Coordinator.from_config(c) for c in loaded]
        for c in coords:
            await c.start()
        try:
            return [await c.cycle({}) for c in coords]
        finally:
            for c in coords:
                await c.close()

    views = asyncio.run(one_round())
    assert all(v.is_reachable for v in views), [v.reason for v in views]
    assert [v.is_leader for v in views] == [True, False, False], [v.reason for v in views]


def _journal(tmp: Path, failover_id: str, *, finished: bool) -> bytes:
    """A failover journal as the executor writes it (act.Journal): plan first, then steps."""
    journal = Journal(tmp)
    plan = {
        "kind": "promote",
        "broker_name": "broker-a",
        "old_master_key": "broker-a:0",
        "new_master_key": "broker-a:1",
        "steps": [{"purpose": "fence"}, {"purpose": "promote"}],
    }
    journal.append(failover_id, "planned", plan=plan)
    journal.append(failover_id, "step_done", index=0, phase="main")
    if finished:
        journal.append(failover_id, "step_done", index=1, phase="main")
        journal.append(failover_id, "finished", outcome="succeeded", duration_seconds=2.5)
    return journal.path(failover_id).read_bytes()


def test_status_and_history_read_the_group_from_etcd(etcd_box: Sandbox, tmp_path: Path) -> None:
    wd1, wd2, wd3 = configs(etcd_box)
    master = master_addr(etcd_box)
    # wd-3's own files: a failover of its own (the state dir is the instance's, not shared).
    _journal(Path(wd3.state_dir), "broker-a-20260101T000000Z", finished=False)
    committed = _journal(tmp_path / "leader", "broker-a-20270101T000000Z", finished=True)

    async def scenario() -> tuple[dict[str, Any], str, list[dict[str, Any]], str]:
        coords = [Coordinator.from_config(c) for c in (wd1, wd3)]
        for c in coords:
            await c.start()
        stop = asyncio.Event()

        async def cycling(c: Coordinator, view: GroupView) -> None:
            while not stop.is_set():
                await c.cycle({"broker-a": view})
                await asyncio.sleep(0.5)

        alive = GroupView(master, down=False, alive=True, reason="own probe answered")
        down = GroupView(master, down=True, alive=False, reason="no answer for 9 s")
        await coords[0].cycle({"broker-a": alive})  # wd-1 first: it takes the lead
        tasks = [
            asyncio.create_task(cycling(coords[0], alive)),
            asyncio.create_task(cycling(coords[1], down)),
        ]
        try:
            await asyncio.sleep(1.0)
            assert coords[0].is_leader
            # What the leader's daemon commits before each step: its journal and state file.
            state = WatchdogState().with_group(
                "broker-a", GroupRecord(epoch=7, master_key="broker-a:1", master_addr=master)
            )
            await coords[0].fenced_write(
                {
                    "failovers/broker-a-20270101T000000Z.jsonl": committed,
                    "state.json": json.dumps(state.to_json()).encode(),
                }
            )
            code, out, err = await acli("status", "-c", str(etcd_box.dir / CONFIGS[1]), "--json")
            assert code == 0, err
            _, table, err = await acli("status", "-c", str(etcd_box.dir / CONFIGS[0]))
            code, hist, err = await acli("history", "-c", str(etcd_box.dir / CONFIGS[2]), "--json")
            assert code == 0, err
            _, hist_table, _ = await acli("history", "-c", str(etcd_box.dir / CONFIGS[1]))
            return json.loads(out), table, json.loads(hist), hist_table
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for c in coords:
                await c.close()

    report, table, rows, hist_table = asyncio.run(scenario())
    etcd = report["watchdog"]["etcd"]
    assert etcd["reachable"] and etcd["error"] is None
    assert etcd["this_instance"] == "wd-2" and etcd["leader"]["instance"] == "wd-1"
    by_name = {i["name"]: i for i in etcd["instances"]}
    assert set(by_name) == {"wd-1", "wd-3"}  # wd-2 (this one) runs no daemon here
    assert by_name["wd-1"]["is_leader"] and not by_name["wd-3"]["is_leader"]
    assert 0 <= by_name["wd-3"]["published_age_seconds"] < 30
    assert by_name["wd-1"]["groups"]["broker-a"] == {
        "master": master, "view": "alive", "reason": "own probe answered",
        "at": by_name["wd-1"]["groups"]["broker-a"]["at"],
    }  # fmt: skip
    assert by_name["wd-3"]["groups"]["broker-a"]["view"] == "down"
    # The probe is still there, and the leader's committed failover is the group's last one.
    assert {b["addr"] for b in report["brokers"]} >= {master}
    last = report["watchdog"]["groups"]["broker-a"]["last_failover"]
    assert last["id"] == "broker-a-20270101T000000Z" and last["outcome"] == "succeeded"
    # wd-2 does not lead: the group's records are the leader's, from etcd, not its own (none).
    assert report["watchdog"]["state_source"] == "etcd"
    assert report["watchdog"]["groups"]["broker-a"]["epoch"] == 7

    lines = table.splitlines()
    assert "epoch 0, master on record -" in table  # wd-1 leads: its own (empty) state dir
    assert "the records below are the leader's" not in table
    assert any(line.startswith("etcd ") and "leader wd-1" in line for line in lines), table
    assert any("wd-1 (leader, this)" in line and f"alive {master}" in line for line in lines)
    assert any(line.strip().startswith("wd-3 ") and f"down {master}" in line for line in lines)

    # wd-3 lists the leader's failover (from etcd) and its own (from its state dir).
    assert [(r["failover_id"], r["outcome"]) for r in rows] == [
        ("broker-a-20260101T000000Z", "running"),
        ("broker-a-20270101T000000Z", "succeeded"),
    ]
    # wd-2 has no journal of its own: the leader's is still listed.
    assert "broker-a-20270101T000000Z" in hist_table and "succeeded" in hist_table


def wait_group(config: WatchdogConfig, done: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        group = asyncio.run(read_group_of(config))
        if done(group):
            return
        assert time.monotonic() < deadline, f"{what}: {group}"
        time.sleep(0.2)


def namesrv_masters(box: Sandbox) -> set[str | None]:
    """broker-a's id 0 address as each of the sandbox's nameservers lists it."""
    from watchdog.remoting import ClientPool, get_cluster_info

    async def ask() -> set[str | None]:
        pool = ClientPool(connect_timeout_seconds=1.0)
        try:
            infos = [
                await get_cluster_info(pool.get(n["addr"]), timeout_seconds=3.0)
                for n in box.info()["nameservers"]
            ]
        finally:
            await pool.close_all()
        return {info.broker_addrs.get("broker-a", {}).get(0) for info in infos}

    return asyncio.run(ask())


def test_failover_switchover_and_ack_away_from_the_leader_go_to_it_through_etcd(
    etcd_box: Sandbox, tmp_path: Path
) -> None:
    wd1, wd2, wd3 = configs(etcd_box)
    paths = [str(etcd_box.dir / name) for name in CONFIGS]
    old, new = (
        next(b["addr"] for b in etcd_box.info()["brokers"] if b["broker_id"] == i) for i in (0, 1)
    )
    with DaemonChild(paths[0], tmp_path / "wd-1.log"):
        wait_group(wd1, lambda g: g.leader_name == "wd-1", "wd-1 leads")
        with DaemonChild(paths[1], tmp_path / "wd-2.log"):
            wait_group(wd2, lambda g: "wd-2" in {v.name for v in g.instances}, "wd-2 publishes")
            # On wd-2's host the daemon follows: the CLI asks wd-1 through etcd.
            ack = cli("ack", "-c", paths[1], "--broker-name", "broker-a")
            assert ack.stdout.splitlines() == [
                "wd-1 leads; asking it through etcd to run the ack",
                "wd-1 took the request",
                "automatic failover of broker-a re-enabled",
            ], ack.stdout
            failover = cli(
                "failover", "-c", paths[1], "--broker-name", "broker-a", "--json", check=False
            )
            assert failover.returncode == 1, failover.stdout
            lines = [json.loads(line) for line in failover.stdout.splitlines()]
            assert lines[0]["event"] == "taken" and lines[0]["leader"] == "wd-1", lines
            # wd-1 refuses as it would on its own host: the master answers.
            assert len(lines) == 2 and "error" in lines[1], lines
        # wd-3's host runs no daemon: the switchover asked there is wd-1's to run.
        switch = cli(
            "switchover", "-c", paths[2], "--broker-name", "broker-a", "--yes", "--json",
            check=False,
        )  # fmt: skip
        assert switch.returncode == 0, (switch.stdout, switch.stderr)
        lines = [json.loads(line) for line in switch.stdout.splitlines()]
        assert lines[0]["event"] == "taken" and lines[0]["leader"] == "wd-1", lines
        accepted = next(m for m in lines if m.get("event") == "accepted")
        assert lines[-1]["event"] == "result" and lines[-1]["outcome"] == "succeeded", lines
        assert namesrv_masters(etcd_box) == {new} and new != old
    log = (tmp_path / "wd-1.log").read_text()
    assert "request from wd-2" in log and "request from wd-3" in log
    # wd-1 journaled it in its own state dir and in etcd; wd-3's state dir holds no run.
    assert (Path(wd1.state_dir) / "failovers" / f"{accepted['failover_id']}.jsonl").exists()
    assert not (Path(wd3.state_dir) / "failovers" / f"{accepted['failover_id']}.jsonl").exists()
    assert not (Path(wd3.state_dir) / "state.json").exists()
    # With no daemon left, nobody leads within lease_ttl: a request is refused, naming why.
    wait_group(wd3, lambda g: g.leader_name is None, "nobody leads")
    alone = cli("ack", "-c", paths[2], "--broker-name", "broker-a", check=False)
    assert alone.returncode == 1 and "etcd names no leader now" in alone.stdout, alone.stdout


def test_down_stops_etcd_too_and_status_then_says_etcd_cannot_be_reached(
    etcd_box: Sandbox,
) -> None:
    members = etcd_box.etcd_members()
    pids = [m.pid for m in members]
    assert all(pids)
    result = sandbox_cli("down", "--dir", str(etcd_box.dir))
    assert result.returncode == 0, result.stderr
    assert "etcd-m1, etcd-m2, etcd-m3" in result.stdout
    assert not any(m.is_running() for m in members)
    # Gone, or a zombie that nobody reaps (its parent, `sandbox up`, exited long ago).
    assert all(proc_state(pid) in (None, "Z", "X") for pid in pids if pid is not None)
    assert all(r.state == "stopped" for r in etcd_box.status())

    done = cli("status", "-c", str(etcd_box.dir / CONFIGS[1]), check=False)
    assert done.returncode == 1  # nothing answers: the probe's problems
    unreachable = [line for line in done.stdout.splitlines() if "cannot be reached" in line]
    assert len(unreachable) == 1 and unreachable[0].startswith("etcd 127.0.0.1:"), done.stdout
    assert "NAMESERVER" in done.stdout and "DOWN" in done.stdout  # the probe is still shown
