"""`status`, `history` and the leader's name with [etcd], on values: the etcd part of the report
and its table, journals read from state records, merged with local ones. Against a real etcd:
tests/integration/test_sandbox_etcd.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from watchdog.act import Journal
from watchdog.commands._status import EtcdRead, etcd_view, group_history, leader_hint
from watchdog.config import WatchdogConfig, parse_config
from watchdog.coord import GroupRead, GroupView, InstanceView, LeaderRecord
from watchdog.observe import history_from_records, merge_history, read_history, render_status

NOW = 1_800_000_000.0
MASTER = "127.0.0.1:10911"


def config(tmp_path: Path, etcd: bool = True) -> WatchdogConfig:
    data: dict[str, Any] = {
        "cluster_name": "c",
        "instance_name": "wd-2",
        "nameservers": ["127.0.0.1:9876"],
        "state_dir": str(tmp_path / "state"),
        "brokers": [
            {"broker_name": "broker-a", "broker_id": 0, "addr": MASTER, "properties": "/a",
             "start": ["true"], "stop": ["true"]},
            {"broker_name": "broker-a", "broker_id": 1, "addr": "127.0.0.1:10921",
             "properties": "/b", "start": ["true"], "stop": ["true"]},
        ],
    }  # fmt: skip
    if etcd:
        data["etcd"] = {"endpoints": ["127.0.0.1:2379", "127.0.0.1:2380"], "lease_ttl": "3s"}
    return parse_config(data)


def group_read(leader: str | None = "wd-1") -> GroupRead:
    def instance(name: str, view: GroupView, age: float) -> InstanceView:
        return InstanceView(name, NOW - 100, NOW - age, {"broker-a": view})

    return GroupRead(
        prefix="/rmq-watchdog/c",
        leader=None if leader is None else LeaderRecord(leader, NOW - 100, NOW - 42.0),
        instances=(
            instance("wd-1", GroupView(MASTER, down=False, alive=True, reason="ok"), 0.4),
            instance("wd-2", GroupView(MASTER, down=True, alive=False, reason="9 s"), 1.5),
            instance("wd-3", GroupView(None, down=False, alive=False), 0.0),
        ),
        unreadable=(),
        state={},
        revision=7,
    )


def report(watchdog: dict[str, Any]) -> dict[str, Any]:
    return {
        "cluster_name": "c",
        "probe_duration_ms": 3.0,
        "nameservers": [{"addr": "127.0.0.1:9876", "up": True, "latency_ms": 1.0, "error": None}],
        "brokers": [],
        "problems": [],
        "watchdog": watchdog,
    }


def test_the_etcd_part_names_the_leader_and_each_instance_view(tmp_path: Path) -> None:
    view = etcd_view(config(tmp_path), EtcdRead(group=group_read()), NOW)
    assert view is not None
    assert view["reachable"] and view["error"] is None
    assert view["leader"] == {"instance": "wd-1", "since": NOW - 42.0, "for_seconds": 42.0}
    assert [(i["name"], i["is_leader"], i["is_this"]) for i in view["instances"]] == [
        ("wd-1", True, False), ("wd-2", False, True), ("wd-3", False, False)
    ]  # fmt: skip
    assert view["instances"][1]["published_age_seconds"] == 1.5
    assert view["instances"][1]["groups"]["broker-a"]["view"] == "down"
    assert view["instances"][2]["groups"]["broker-a"]["view"] == "undecided"
    json.dumps(view)  # status --json prints it

    text = render_status(report({"daemon": None, "control_socket": "/s", "groups": {},
                                 "etcd": view}))  # fmt: skip
    lines = text.splitlines()
    assert "etcd 127.0.0.1:2379,127.0.0.1:2380: leader wd-1 for 42.0 s" in lines
    [header] = [line for line in lines if "INSTANCE" in line]
    assert header.split() == ["INSTANCE", "PUBLISHED", "broker-a"]
    row = {line.split()[0]: line for line in lines if line.startswith("  wd-")}
    assert (
        "(leader)" in row["wd-1"]
        and "400 ms ago" in row["wd-1"]
        and f"alive {MASTER}" in row["wd-1"]
    )
    assert (
        "(this)" in row["wd-2"] and "1.5 s ago" in row["wd-2"] and f"down {MASTER}" in row["wd-2"]
    )
    assert " now " in row["wd-3"] and "undecided -" in row["wd-3"]
    assert "publishes nothing" not in text


def test_etcd_unreachable_is_one_line_and_the_rest_of_status_stays(tmp_path: Path) -> None:
    read = EtcdRead(error="txn: no answer within 0.6 s (127.0.0.1:2379: UNAVAILABLE)")
    view = etcd_view(config(tmp_path), read, NOW)
    assert view is not None and not view["reachable"] and view["instances"] == []
    text = render_status(report({"daemon": None, "control_socket": "/s", "groups": {},
                                 "etcd": view}))  # fmt: skip
    etcd_lines = [line for line in text.splitlines() if "etcd" in line]
    assert etcd_lines == [
        "etcd 127.0.0.1:2379,127.0.0.1:2380: cannot be reached (txn: no answer within 0.6 s "
        "(127.0.0.1:2379: UNAVAILABLE)); no instance acts while it cannot (the failsafe), the "
        "probe above is this host's own"
    ]
    assert "NAMESERVER" in text


def test_nobody_leading_and_this_instance_silent_are_said(tmp_path: Path) -> None:
    read = group_read(leader=None)
    silent = GroupRead(read.prefix, None, read.instances[:1], (), {}, 1)
    view = etcd_view(config(tmp_path), EtcdRead(group=silent), NOW)
    text = render_status(report({"daemon": None, "control_socket": "/s", "groups": {},
                                 "etcd": view}))  # fmt: skip
    assert "nobody leads (no instance acts until one takes the leader key)" in text
    assert "this instance (wd-2) publishes nothing" in text


def test_without_etcd_status_has_no_etcd_part(tmp_path: Path) -> None:
    assert etcd_view(config(tmp_path, etcd=False), EtcdRead(), NOW) is None
    text = render_status(report({"daemon": None, "control_socket": "/s", "groups": {}}))
    assert "etcd" not in text and "INSTANCE" not in text


def _journal(directory: Path, failover_id: str, *, finished: bool, clock: float) -> bytes:
    journal = Journal(directory, clock=lambda: clock)
    plan = {"kind": "promote", "broker_name": "broker-a", "steps": [{}, {}]}
    journal.append(failover_id, "planned", plan=plan)
    journal.append(failover_id, "step_done", index=0, phase="main")
    if finished:
        journal.append(failover_id, "step_done", index=1, phase="main")
        journal.append(failover_id, "finished", outcome="succeeded", duration_seconds=2.0)
    return journal.path(failover_id).read_bytes()


def test_journals_among_state_records_are_found_by_their_content(tmp_path: Path) -> None:
    done = _journal(tmp_path / "a", "broker-a-1", finished=True, clock=NOW)
    records = {
        "failovers/broker-a-1.jsonl": done,
        "state.json": json.dumps({"groups": {}, "running": {}}).encode(),
        "epoch/broker-a": b"3",
        "journal/other": b"\xff not json",
        # the same journal as one JSON array, under a key without its id: one row, by its id
        "copy": json.dumps([json.loads(line) for line in done.splitlines()]).encode(),
    }
    rows = history_from_records(records)
    assert [(r.failover_id, r.outcome, r.steps_done) for r in rows] == [
        ("broker-a-1", "succeeded", 2)
    ]
    assert history_from_records(records, "broker-b") == []


def test_etcd_journals_merge_with_the_local_ones_the_further_row_wins(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    # This instance led once: its own file of broker-a-1 has the finish etcd's copy lacks.
    _journal(Path(cfg.state_dir), "broker-a-1", finished=True, clock=NOW - 60)
    committed = {
        "failovers/broker-a-1": _journal(tmp_path / "e", "broker-a-1", finished=False,
                                         clock=NOW - 60),
        "failovers/broker-a-2": _journal(tmp_path / "e", "broker-a-2", finished=False,
                                         clock=NOW),
    }  # fmt: skip
    rows = group_history(cfg, EtcdRead(group=group_read(), state=committed))
    assert [(r.failover_id, r.outcome) for r in rows] == [
        ("broker-a-1", "succeeded"),
        ("broker-a-2", "running"),
    ]
    assert group_history(cfg, EtcdRead(error="down")) == read_history(cfg.state_dir)
    local = read_history(cfg.state_dir)
    assert merge_history(local, []) == local


def test_the_leader_is_named_for_a_refused_command() -> None:
    assert leader_hint(EtcdRead(), "wd-2") is None  # no [etcd]
    assert leader_hint(EtcdRead(group=group_read()), "wd-2") == (
        "the leader is instance wd-1 (etcd /rmq-watchdog/c/leader)"
    )
    assert "names no leader now" in str(leader_hint(EtcdRead(group=group_read(None)), "wd-2"))
    assert "cannot be reached" in str(leader_hint(EtcdRead(error="timeout"), "wd-2"))
    assert "this instance (wd-1)" in str(leader_hint(EtcdRead(group=group_read()), "wd-1"))


def running_journal(directory: Path, failover_id: str) -> bytes:
    """A real promotion plan (test_plan's), planned, its first two steps done."""
    from tests.unit.test_plan import FILES, plan_of, promote
    from tests.unit.test_plan import config as plan_config
    from watchdog.decide import plan_promotion

    plan = plan_of(plan_promotion(promote(), plan_config(), FILES, current_epoch=3))
    journal = Journal(directory, clock=lambda: NOW)
    journal.append(failover_id, "planned", plan=plan.to_json())
    for index in (0, 1):
        journal.append(failover_id, "step_done", index=index, phase="main")
    return journal.path(failover_id).read_bytes()


def test_a_follower_shows_the_leaders_records_from_etcd(tmp_path: Path) -> None:
    import asyncio

    from watchdog.act import GroupRecord, WatchdogState
    from watchdog.commands._status import watchdog_view

    cfg = config(tmp_path)  # wd-2; wd-1 leads
    state = WatchdogState().with_group("broker-a", GroupRecord(epoch=4, master_key="broker-a:1"))
    state = state.with_running("broker-a", "broker-a-2")
    records = {
        "state.json": json.dumps(state.to_json()).encode(),
        "failovers/broker-a-2.jsonl": running_journal(tmp_path / "e", "broker-a-2"),
        "failovers/../../escape.jsonl": b"{}",  # not a journal name: never a file
    }  # fmt: skip
    read = EtcdRead(group=group_read(), state=records)
    view = asyncio.run(watchdog_view(cfg, NOW, read))
    assert view["state_source"] == "etcd"
    group = view["groups"]["broker-a"]
    assert group["epoch"] == 4 and group["master"] == "broker-a:1"
    assert group["failover"]["id"] == "broker-a-2" and group["failover"]["step"] == 3
    assert not (tmp_path / "escape.jsonl").exists()
    text = render_status(report(view))
    assert "the records below are the leader's, as it committed them to etcd" in text
    # The leader itself, or etcd without a state file: the instance's own state dir.
    own = asyncio.run(watchdog_view(cfg, NOW, EtcdRead(group=group_read("wd-2"), state=records)))
    assert own["state_source"] == "local" and own["groups"]["broker-a"]["epoch"] == 0
