"""The fault drill without a cluster: the sandbox rule, child lines, and the report's numbers
computed from hand-built sends, deliveries, journals and daemon logs."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.config import WatchdogConfig, parse_config
from watchdog.daemon import is_lock_held
from watchdog.native import message_body, parse_body, parse_receive_line, parse_send_line
from watchdog.tools.drill import (
    DrillObservations,
    DrillOptions,
    DrillRefused,
    GroupJudgement,
    ReceiveRecord,
    SendRecord,
    TimelineEvent,
    account_messages,
    build_report,
    consumer_caught_up_at,
    daemon_log_events,
    drill_topic,
    fault_argv,
    journal_events,
    judge_group,
    match_sandbox,
    partition_ruleset,
    promotion_of,
    ready_master,
    render_report,
    run_drill,
    sandbox_command,
    write_outage,
)

PY = "/venv/bin/python"
NS = ("127.0.0.1:30000", "127.0.0.1:30001")
A0, A1 = "127.0.0.1:30011", "127.0.0.1:30021"
T0 = 1_800_000_000.0  # the fault


def sandbox_argv(verb: str, directory: str, key: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [
        *(prefix or (PY, "-m", "watchdog")),
        "sandbox",
        verb,
        "--dir",
        directory,
        "--broker",
        key,
    ]


def broker(broker_id: int, addr: str, directory: str, **changes: Any) -> dict[str, Any]:
    key = f"broker-a:{broker_id}"
    return {
        "broker_name": "broker-a",
        "broker_id": broker_id,
        "addr": addr,
        "properties": f"{directory}/broker-a-{broker_id}.properties",
        "host": "local",
        "start": sandbox_argv("start", directory, key),
        "stop": sandbox_argv("stop", directory, key),
        **changes,
    }


def make_config(
    directory: str = "/sb", *, brokers: list[dict[str, Any]] | None = None, **top: Any
) -> WatchdogConfig:
    data: dict[str, Any] = {
        "cluster_name": "C",
        "nameservers": list(NS),
        "state_dir": f"{directory}/watchdog-state",
        "brokers": brokers
        if brokers is not None
        else [broker(0, A0, directory), broker(1, A1, directory)],
        **top,
    }
    return parse_config(data)


def cluster_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "nameservers": [{"addr": a, "pid": 1} for a in NS],
        "brokers": [
            {"broker_name": "broker-a", "broker_id": 0, "addr": A0},
            {"broker_name": "broker-a", "broker_id": 1, "addr": A1},
        ],
    }
    doc.update(changes)
    return doc


def reader(doc: Mapping[str, Any] | None, expect: str = "/sb/cluster.json") -> Any:
    def read(path: Path) -> Mapping[str, Any] | None:
        assert str(path) == expect
        return doc

    return read


# --------------------------------------------------------------------------- the sandbox rule


def test_sandbox_command_forms() -> None:
    parsed = sandbox_command(sandbox_argv("start", "/sb", "broker-a:0"))
    assert parsed is not None
    assert (parsed.prefix, parsed.verb, parsed.directory, parsed.key) == (
        (PY, "-m", "watchdog"),
        "start",
        "/sb",
        "broker-a:0",
    )
    script = sandbox_command(sandbox_argv("stop", "/sb", "b:1", ("/usr/bin/rmq-watchdog",)))
    assert script is not None and script.verb == "stop" and script.key == "b:1"
    assert sandbox_command(["systemctl", "start", "rocketmq-broker"]) is None
    assert (
        sandbox_command([PY, "-m", "other", "sandbox", "start", "--dir", "/sb", "--broker", "k"])
        is None
    )
    assert (
        sandbox_command(
            [PY, "-m", "watchdog", "sandbox", "start", "--dir", "/sb", "--nameserver", "0"]
        )
        is None
    )
    assert (
        sandbox_command(["sh", "-c", "x", "sandbox", "start", "--dir", "/sb", "--broker", "k"])
        is None
    )


def test_a_sandbox_config_is_recognised() -> None:
    match = match_sandbox(make_config(), reader(cluster_doc()))
    assert match.is_sandbox and match.directory == Path("/sb")


@pytest.mark.parametrize(
    ("config", "doc", "why"),
    [
        (make_config(), None, "/sb/cluster.json does not exist"),
        (make_config(), cluster_doc(brokers=[]), "does not list broker-a:0 at 127.0.0.1:30011"),
        (
            make_config(),
            cluster_doc(nameservers=[{"addr": NS[0]}]),
            "does not list nameserver 127.0.0.1:30001",
        ),
        (make_config(), {"brokers": "x"}, "is not a sandbox's cluster.json"),
        (
            make_config(brokers=[broker(0, A0, "/sb"), broker(1, A1, "/other")]),
            cluster_doc(),
            "2 sandbox folders",
        ),
        (
            make_config(
                brokers=[broker(0, A0, "/sb"), broker(1, A1, "/sb", start=["/bin/start-broker"])]
            ),
            cluster_doc(),
            "broker-a:1's start command is not",
        ),
        (
            make_config(
                brokers=[
                    broker(0, A0, "/sb", start=sandbox_argv("start", "/sb", "broker-a:1")),
                    broker(1, A1, "/sb"),
                ]
            ),
            cluster_doc(),
            "broker-a:0's start command is not",
        ),
        (
            make_config(brokers=[broker(0, A0, "/sb", stop=["kill", "1"]), broker(1, A1, "/sb")]),
            cluster_doc(),
            "broker-a:0's stop command is not `sandbox stop`",
        ),
        (
            make_config(
                brokers=[broker(0, A0, "/sb", host="far"), broker(1, A1, "/sb")],
                hosts={
                    "local": {"kind": "local"},
                    "far": {"kind": "ssh", "address": "h", "user": "u"},
                },
            ),
            cluster_doc(),
            "runs on host 'far', not on the local host",
        ),
    ],
)
def test_what_is_not_a_sandbox(
    config: WatchdogConfig, doc: Mapping[str, Any] | None, why: str
) -> None:
    match = match_sandbox(config, lambda _p: doc)
    assert not match.is_sandbox
    assert why in match.reason


def test_fault_argv_signals_a_sandbox_broker_only() -> None:
    config = make_config()
    master = config.brokers[0]
    assert fault_argv(config, master, "KILL") == [
        PY, "-m", "watchdog", "sandbox", "kill", "--dir", "/sb", "--broker", "broker-a:0",
        "--signal", "KILL",
    ]  # fmt: skip
    other = make_config(
        brokers=[broker(0, A0, "/sb", start=["systemctl", "start", "rmq"]), broker(1, A1, "/sb")]
    )
    refused = fault_argv(other, other.brokers[0], "KILL")
    assert isinstance(refused, str)
    assert "only kill or stop sandbox brokers" in refused and "graceful stop" in refused


def test_drill_topic_is_a_valid_name() -> None:
    assert drill_topic("broker-a") == "RMQ_WATCHDOG_DRILL_broker-a"
    assert drill_topic("b.a") == "RMQ_WATCHDOG_DRILL_b_a"


# --------------------------------------------------------------------------- child lines


@given(st.text(alphabet="abcdef0123456789-T", min_size=1, max_size=30), st.integers(0, 10**9))
def test_body_round_trip(run_id: str, seq: int) -> None:
    assert parse_body(message_body(run_id, seq)) == (run_id, seq)
    assert parse_body(message_body(run_id, seq).encode()) == (run_id, seq)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "rmq-watchdog drill r",
        "rmq-watchdog drill r x",
        "hello r 1 2",
        b"\xff\xfe",
        "rmq-watchdog probe r 1",
    ],
)
def test_other_bodies_are_not_drill_messages(body: str | bytes) -> None:
    assert parse_body(body) is None


def test_send_and_receive_lines() -> None:
    ok = parse_send_line('{"seq": 3, "started_at": 1.5, "ended_at": 2, "ok": true, "msg_id": "M"}')
    assert ok == SendRecord(3, 1.5, 2.0, True, None, "M")
    failed = parse_send_line(
        b'{"seq": 4, "started_at": 1, "ended_at": 2, "ok": false, "error": "E"}'
    )
    assert failed == SendRecord(4, 1.0, 2.0, False, "E", None)
    got = parse_receive_line(
        '{"seq": 3, "at": 9.5, "msg_id": "M", "queue_id": 2, "queue_offset": 7}'
    )
    assert got == ReceiveRecord(3, 9.5, "M", 2, 7)
    assert parse_receive_line('{"seq": 3, "at": 9}') == ReceiveRecord(3, 9.0)
    for garbage in [
        "",
        "not json",
        "[1]",
        '{"seq": "3", "started_at": 1, "ended_at": 2, "ok": true}',
        '{"seq": 3, "started_at": NaN, "ended_at": 2, "ok": true}',
        '{"seq": true, "started_at": 1, "ended_at": 2, "ok": true}',
        '{"seq": 3, "started_at": 1, "ended_at": 2, "ok": 1}',
    ]:
        assert parse_send_line(garbage) is None
    assert parse_receive_line('{"audit_done": true}') is None
    assert parse_receive_line('{"seq": 1, "at": "now"}') is None


# --------------------------------------------------------------------------- numbers


def traffic(
    *, outage_from: float, outage_to: float, end: float, step: float = 0.1, latency: float = 0.01
) -> list[SendRecord]:
    """A send every `step` from T0-10 s to T0+end; those begun in [outage_from, outage_to)
    (seconds from the fault) fail after 1 s."""
    sends = []
    t, seq = -10.0, 0
    while t < end:
        seq += 1
        failing = outage_from <= t < outage_to
        took = 1.0 if failing else latency
        sends.append(SendRecord(seq, T0 + t, T0 + t + took, not failing, "E" if failing else None))
        t = round(t + (max(step, took) if failing else step), 6)  # no float drift around 0
    return sends


def test_write_outage_spans_the_two_acks_around_the_fault() -> None:
    sends = traffic(outage_from=0.0, outage_to=20.0, end=30.0)
    outage, first, failed = write_outage(sends, T0)
    assert first is not None and outage is not None
    assert first.started_at >= T0 + 20.0 and first.is_ok
    last_before = max(s.ended_at for s in sends if s.is_ok and s.ended_at < T0)
    assert outage == pytest.approx(first.ended_at - last_before)
    assert 20.0 < outage < 20.3
    assert failed == sum(1 for s in sends if not s.is_ok)


def test_a_send_begun_before_the_fault_is_not_the_first_write() -> None:
    # Begun 50 ms before the fault, acknowledged 5 s after it (the broker was still draining):
    # the first write after the fault is the next send begun after it.
    sends = [
        SendRecord(1, T0 - 1.0, T0 - 0.99, True),
        SendRecord(2, T0 - 0.05, T0 + 5.0, True),
        SendRecord(3, T0 + 5.0, T0 + 6.0, False, "E"),
        SendRecord(4, T0 + 8.0, T0 + 8.5, True),
    ]
    outage, first, failed = write_outage(sends, T0)
    assert first is not None and first.seq == 4
    assert outage == pytest.approx(3.5)
    assert failed == 1


def test_no_write_after_the_fault() -> None:
    sends = traffic(outage_from=0.0, outage_to=99.0, end=30.0)
    outage, first, failed = write_outage(sends, T0)
    assert (outage, first) == (None, None)
    assert failed == sum(1 for s in sends if not s.is_ok) > 0


def test_message_accounting() -> None:
    sends = [
        SendRecord(1, T0 - 3, T0 - 2.9, True),
        SendRecord(2, T0 - 2, T0 - 1.9, True),  # never delivered: lost
        SendRecord(3, T0 - 1, T0 - 0.9, True),  # delivered twice
        SendRecord(4, T0 + 1, T0 + 2, False, "timeout"),  # stored anyway, delivered
        SendRecord(5, T0 + 3, T0 + 4, False, "timeout"),
        SendRecord(6, T0 + 30, T0 + 30.1, True),
        SendRecord(7, T0 + 31, T0 + 31.1, True),  # never delivered, after the fault
    ]
    receives = [
        ReceiveRecord(1, T0 - 2.8),
        ReceiveRecord(3, T0 - 0.8),
        ReceiveRecord(3, T0 + 40),
        ReceiveRecord(4, T0 + 35),
        ReceiveRecord(6, T0 + 36),
    ]
    m = account_messages(sends, receives, T0, stored={1, 3, 4, 6, 7})
    assert (m.sent, m.acked, m.failed) == (7, 5, 2)
    assert (m.acked_before_fault, m.acked_after_fault) == (3, 2)
    assert (m.consumed, m.deliveries) == (4, 5)
    assert (m.lost, m.lost_seqs) == (1, (2,))
    assert (m.duplicated, m.duplicated_seqs) == (1, (3,))
    assert (m.unconsumed_after_fault, m.unconsumed_after_fault_seqs) == (1, (7,))
    assert m.consumed_unacked == 1
    assert (m.not_stored, m.not_stored_seqs) == (1, (2,))
    # Every acknowledged message is delivered, lost, or late.
    delivered_acked = m.consumed - m.consumed_unacked
    assert m.acked == delivered_acked + m.lost + m.unconsumed_after_fault
    assert account_messages(sends, receives, T0).not_stored is None


def test_a_write_at_a_reused_queue_offset_is_skipped_not_undelivered() -> None:
    """Async loss: message 2 (queue 1, offset 7) was consumed from the old master and never
    replicated; the new master stores message 3 at queue 1, offset 7 and the consumer, resuming
    at offset 8, never reads it. Message 4 lands past the old position and is delivered."""
    sends = [
        SendRecord(1, T0 - 2, T0 - 1.9, True),
        SendRecord(2, T0 - 1, T0 - 0.9, True),
        SendRecord(3, T0 + 20, T0 + 20.1, True),
        SendRecord(4, T0 + 21, T0 + 21.1, True),
        SendRecord(5, T0 + 22, T0 + 22.1, True),  # queue 2: not delivered, not skipped
    ]
    receives = [
        ReceiveRecord(1, T0 - 1.8, queue_id=1, queue_offset=6),
        ReceiveRecord(2, T0 - 0.8, queue_id=1, queue_offset=7),
        ReceiveRecord(4, T0 + 25, queue_id=1, queue_offset=8),
    ]
    stored_at = {1: (1, 6), 3: (1, 7), 4: (1, 8), 5: (2, 0)}
    m = account_messages(sends, receives, T0, stored=set(stored_at), stored_at=stored_at)
    assert (m.not_stored, m.not_stored_seqs) == (1, (2,))
    assert (m.unconsumed_after_fault, m.unconsumed_after_fault_seqs) == (2, (3, 5))
    assert (m.skipped, m.skipped_seqs) == (1, (3,))
    # Without the audit's positions nothing counts as skipped.
    assert account_messages(sends, receives, T0, stored=set(stored_at)).skipped == 0
    # Caught up: message 3 never will be, message 4 (the next write) stands in for it.
    assert consumer_caught_up_at(sends, receives, sends[2], T0, m.skipped_seqs) == T0 + 25
    assert consumer_caught_up_at(sends, receives, sends[2], T0) is None


def test_consumer_caught_up() -> None:
    sends = [
        SendRecord(1, T0 - 2, T0 - 1.9, True),
        SendRecord(2, T0 - 1, T0 - 0.9, True),  # lost: does not hold the consumer back
        SendRecord(3, T0 + 20, T0 + 20.1, True),
        SendRecord(4, T0 + 21, T0 + 21.1, True),
    ]
    receives = [ReceiveRecord(1, T0 + 25), ReceiveRecord(4, T0 + 26), ReceiveRecord(3, T0 + 27)]
    first = sends[2]
    assert consumer_caught_up_at(sends, receives, first, T0) == T0 + 27
    assert consumer_caught_up_at(sends, receives[:2], first, T0) is None
    assert consumer_caught_up_at(sends, receives, None, T0) is None


# --------------------------------------------------------------------------- journals and logs


def iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def promotion_journal(
    fid: str = "F1", outcome: str = "succeeded", kind: str = "promote"
) -> list[dict[str, Any]]:
    plan = {
        "kind": kind,
        "broker_name": "broker-a",
        "reason": "promoting broker-a id=1 because master unreachable for 4.0 s",
        "old_master_key": "broker-a:0",
        "new_master_key": "broker-a:1",
        "new_master_addr": A1,
        "expected_loss_bytes": 120,
    }

    def step(
        at: float, index: int, kind: str, key: str, event: str = "step_done"
    ) -> dict[str, Any]:
        return {"at": T0 + at, "failover_id": fid, "event": event, "index": index, "phase": "main",
                "kind": kind, "broker_key": key, "detail": f"{kind} ok"}  # fmt: skip

    return [
        {"at": T0 + 4.0, "failover_id": fid, "event": "planned", "plan": plan},
        {"at": T0 + 4.01, "failover_id": fid, "event": "step_started", "index": 0},
        step(5.0, 0, "stop", "broker-a:0"),
        step(5.1, 1, "rewrite", "broker-a:0"),
        step(12.0, 2, "stop", "broker-a:1"),
        step(12.1, 3, "rewrite", "broker-a:1"),
        step(20.0, 4, "start", "broker-a:1"),
        step(20.2, 5, "wait_master", "broker-a:1"),
        step(23.0, 6, "canary", "broker-a:1"),
        step(23.3, 7, "record_epoch", "broker-a:1"),
        {
            "at": T0 + 23.4,
            "failover_id": fid,
            "event": "finished",
            "outcome": outcome,
            "detail": "done",
            "duration_seconds": 19.4,
        },  # fmt: skip
    ]


def test_journal_events_name_every_step_and_the_promotion() -> None:
    events = journal_events("F1", promotion_journal())
    names = [e.event for e in events]
    assert names[0] == "failover_planned" and "unreachable for 4.0 s" in events[0].detail
    assert names.count("failover_step_done") == 8
    promoted = [e for e in events if e.event == "promoted"]
    assert len(promoted) == 1 and promoted[0].at == T0 + 20.2
    assert names[-1] == "failover_finished" and events[-1].detail.startswith("succeeded")
    assert "step 6 wait_master broker-a:1 done" in events[6].detail
    fence = journal_events("F2", promotion_journal("F2", kind="fence"))
    assert fence[0].event == "fence_planned" and not any(e.event == "promoted" for e in fence)
    # A torn or foreign entry is skipped, not fatal.
    assert journal_events("F3", [{"event": "planned"}, {"at": "x"}, {}]) == []


def test_promotion_of_picks_the_groups_first_promotion() -> None:
    other = promotion_journal("F0")
    other[0] = {**other[0], "plan": {**other[0]["plan"], "broker_name": "broker-b"}}
    later = promotion_journal("F9")
    later[0] = {**later[0], "at": T0 + 100}
    journals = {
        "F0": other,
        "F9": later,
        "F1": promotion_journal(),
        "F2": promotion_journal("F2", kind="fence"),
    }
    assert promotion_of(journals, "broker-a") == "F1"
    assert promotion_of({"F0": other}, "broker-a") is None
    assert promotion_of({"X": []}, "broker-a") is None


def test_daemon_log_events_are_the_first_sdown_and_odown_after_the_fault() -> None:
    log = [
        {
            "broker_name": "broker-a",
            "state": "MASTER_ODOWN",
            "timestamp": iso(T0 - 50),
            "event": "old",
        },
        {"broker_name": "broker-a", "state": "HEALTHY", "timestamp": iso(T0 + 1), "event": "h"},
        {
            "broker_name": "broker-b",
            "state": "MASTER_ODOWN",
            "timestamp": iso(T0 + 2),
            "event": "b",
        },
        {
            "broker_name": "broker-a",
            "state": "MASTER_SDOWN",
            "timestamp": iso(T0 + 3),
            "event": "s",
        },
        {
            "broker_name": "broker-a",
            "state": "MASTER_ODOWN",
            "timestamp": iso(T0 + 4),
            "event": "o",
        },
        {
            "broker_name": "broker-a",
            "state": "MASTER_ODOWN",
            "timestamp": iso(T0 + 5),
            "event": "o2",
        },
        {"broker_name": "broker-a", "state": "MASTER_ODOWN", "timestamp": "garbage"},
    ]
    events = daemon_log_events(log, "broker-a", T0)
    assert [(e.event, e.detail) for e in events] == [
        ("subjectively_down", "s"),
        ("objectively_down", "o"),
    ]
    assert events[1].at == pytest.approx(T0 + 4)


# --------------------------------------------------------------------------- judging the group


def live(role: str, broker_id: str) -> dict[str, str]:
    return {"brokerRole": role, "brokerId": broker_id}


def judge(
    lives: Mapping[str, Mapping[str, str] | None],
    tables: Mapping[str, Mapping[int, str] | None] | None = None,
    *,
    running: bool = False,
    pending: bool = False,
) -> GroupJudgement:
    group = make_config().group("broker-a")
    if tables is None:
        tables = {NS[0]: {0: A1, 1: A0}, NS[1]: {0: A1, 1: A0}}
    return judge_group(
        group, lives, tables, "broker-a:0", is_failover_running=running, is_rejoin_pending=pending
    )


def test_judge_group() -> None:
    good = {"broker-a:0": live("SLAVE", "1"), "broker-a:1": live("ASYNC_MASTER", "0")}
    verdict = judge(good)
    assert verdict.is_safe, verdict.detail
    assert (verdict.master_key, verdict.master_addr, verdict.old_master_id) == (
        "broker-a:1",
        A1,
        "1",
    )
    assert "only master and id 0 on 2/2 nameservers" in verdict.detail
    # One nameserver down still counts as safe; its absence is in the detail.
    assert "on 1/2" in judge(good, {NS[0]: {0: A1, 1: A0}, NS[1]: None}).detail

    two = judge({"broker-a:0": live("ASYNC_MASTER", "0"), "broker-a:1": live("ASYNC_MASTER", "0")})
    assert not two.is_safe and "2 brokers answer as master" in two.detail
    stale = judge(good, {NS[0]: {0: A1}, NS[1]: {0: A0}})
    assert not stale.is_safe and f"{NS[1]} lists {A0} id 0" in stale.detail
    assert "does not answer" in judge({**good, "broker-a:0": None}).detail
    assert "no nameserver answers" in judge(good, {NS[0]: None, NS[1]: None}).detail
    assert "still running" in judge(good, running=True).detail
    assert "has not judged broker-a:0's rejoin" in judge(good, pending=True).detail
    odd = judge({**good, "broker-a:0": live("SLAVE", "0")})
    assert not odd.is_safe and "answers as SLAVE id 0" in odd.detail
    assert "0 brokers answer as master" in judge({"broker-a:0": None, "broker-a:1": None}).detail


def test_ready_master() -> None:
    config = make_config()
    lives = {"broker-a:0": live("ASYNC_MASTER", "0"), "broker-a:1": live("SLAVE", "1")}
    tables: dict[str, Mapping[int, str] | None] = {NS[0]: {0: A0, 1: A1}, NS[1]: {0: A0, 1: A1}}
    found = ready_master(config, "broker-a", tables, lives)
    assert not isinstance(found, str) and found.key == "broker-a:0"
    assert "no nameserver answers" in str(ready_master(config, "broker-a", {NS[0]: None}, lives))
    split = {NS[0]: {0: A0, 1: A1}, NS[1]: {0: A1}}
    assert "do not agree" in str(ready_master(config, "broker-a", split, lives))
    foreign = {NS[0]: {0: "127.0.0.1:1", 1: A1}}
    assert "not a broker in the config" in str(ready_master(config, "broker-a", foreign, lives))
    no_slave = {**lives, "broker-a:1": None}
    assert "nothing to promote" in str(ready_master(config, "broker-a", tables, no_slave))
    hung = {**lives, "broker-a:0": None}
    assert "does not answer as a master" in str(ready_master(config, "broker-a", tables, hung))


# --------------------------------------------------------------------------- the report


def observations(**changes: Any) -> DrillObservations:
    sends = traffic(outage_from=0.0, outage_to=50.0, end=70.0)
    first = next(s for s in sends if s.is_ok and s.started_at >= T0)
    receives = [ReceiveRecord(s.seq, s.ended_at + 0.05) for s in sends if s.is_ok and s.seq != 5]
    receives = [*receives, ReceiveRecord(first.seq, first.ended_at + 9.0)]  # one duplicate
    base: dict[str, Any] = {
        "run_id": "R",
        "broker_name": "broker-a",
        "fault": "kill",
        "fault_at": T0,
        "old_master_key": "broker-a:0",
        "old_master_addr": A0,
        "sends": tuple(sends),
        "receives": tuple(receives),
        "journals": {"F1": promotion_journal()},
        "daemon_log": [
            {
                "broker_name": "broker-a",
                "state": "MASTER_ODOWN",
                "timestamp": iso(T0 + 3.9),
                "event": "o",
            }
        ],
        "drill_events": (),
        "stored_seqs": frozenset(s.seq for s in sends if s.is_ok and s.seq != 5),
        "judgement": GroupJudgement(True, "safe", "broker-a:1", A1, "SLAVE", "1"),
        "old_master_started_at": T0 + 30,
        "old_master_safe_at": T0 + 42,
    }
    base.update(changes)
    return DrillObservations(**base)


def test_a_loss_the_plan_did_not_allow_is_a_problem() -> None:
    """Message 5 is gone: fine when the plan reported a possible loss, not when it said none."""
    allowed = build_report(observations())
    assert allowed.is_ok and allowed.messages.not_stored == 1
    assert (allowed.expected_loss_bytes, allowed.max_loss_bytes) == (120, 120)

    def with_plan(**loss: int) -> list[dict[str, Any]]:
        journal = promotion_journal()
        journal[0] = {**journal[0], "plan": {**journal[0]["plan"], **loss}}
        return journal

    bounded = build_report(observations(journals={"F1": with_plan(max_loss_bytes=900)}))
    assert bounded.is_ok and bounded.max_loss_bytes == 900
    promised = build_report(
        observations(journals={"F1": with_plan(expected_loss_bytes=0, max_loss_bytes=0)})
    )
    assert promised.problems == (
        "1 acknowledged messages are no longer stored, although the promotion plan expected "
        "no loss",
    )
    assert "a loss of at most 0 bytes" in render_report(promised)


def test_report_of_a_good_drill() -> None:
    report = build_report(observations())
    assert report.is_ok, report.problems
    assert report.failover_id == "F1" and report.failover_outcome == "succeeded"
    assert report.odown_after_seconds == pytest.approx(3.9, abs=1e-3)
    assert report.promoted_after_seconds == pytest.approx(20.2)
    assert report.failover_finished_after_seconds == pytest.approx(23.4)
    assert report.write_outage_seconds is not None and 50.0 < report.write_outage_seconds < 50.3
    assert (
        report.first_write_after_seconds is not None
        and 50.0 < report.first_write_after_seconds < 50.2
    )
    assert report.consumer_caught_up_after_seconds == pytest.approx(
        report.first_write_after_seconds + 0.05
    )
    m = report.messages
    assert (m.lost, m.lost_seqs, m.duplicated, m.not_stored) == (1, (5,), 1, 1)
    assert report.old_master_safe and report.old_master_safe_after_seconds == pytest.approx(12.0)
    assert (report.master_key, report.new_master_key, report.expected_loss_bytes) == (
        "broker-a:1",
        "broker-a:1",
        120,
    )
    times = [e.at for e in report.timeline]
    assert times == sorted(times)
    order = [
        e.event
        for e in report.timeline
        if e.event
        in ("objectively_down", "failover_planned", "promoted", "first_write", "consumer_caught_up")
    ]
    assert order == [
        "objectively_down",
        "failover_planned",
        "promoted",
        "first_write",
        "consumer_caught_up",
    ]

    doc = json.loads(json.dumps(report.to_json()))
    assert doc["ok"] is True and doc["seconds"]["fault_to_promoted"] == pytest.approx(20.2)
    assert doc["messages"]["lost_seqs"] == [5]
    assert doc["timeline"][0]["t"] == pytest.approx(report.timeline[0].at - T0, abs=1e-3)
    text = render_report(report)
    assert (
        "drill passed" in text and "kill -9 of broker-a's master broker-a:0@127.0.0.1:30011" in text
    )
    assert "1 lost, 1 duplicated" in text and "lost: 5" in text
    assert "came back safely 12.0 s after its start" in text


def test_without_a_daemon_log_the_plan_dates_objectively_down() -> None:
    report = build_report(observations(daemon_log=[]))
    assert report.is_ok, report.problems
    assert report.odown_after_seconds == pytest.approx(4.0)
    [odown] = [e for e in report.timeline if e.event == "objectively_down"]
    assert odown.source == "journal" and "unreachable for 4.0 s" in odown.detail


def test_a_crash_seen_before_the_fault_command_returned_stays_in_order() -> None:
    """The daemon judged the master down while the kill command was still waiting for the
    process to go (CI: ODOWN 0.17 s before the command returned): its line is kept, between the
    fault and the plan, and the plan-dated fallback goes before the plan it ties with."""
    fault = TimelineEvent(T0 - 0.5, "drill", "fault", "kill (command returned after 0.50 s)")
    early = [{"broker_name": "broker-a", "state": "MASTER_ODOWN", "timestamp": iso(T0 - 0.2)}]

    def order(report: Any) -> list[str]:
        wanted = ("fault", "objectively_down", "failover_planned", "promoted")
        return [e.event for e in report.timeline if e.event in wanted]

    seen = build_report(observations(daemon_log=early, drill_events=(fault,)))
    assert order(seen) == ["fault", "objectively_down", "failover_planned", "promoted"]
    assert seen.odown_after_seconds == pytest.approx(-0.2, abs=1e-3)
    [odown] = [e for e in seen.timeline if e.event == "objectively_down"]
    assert odown.source == "daemon"
    # Before the command began it is an old judgement, not this fault's.
    stale = [{"broker_name": "broker-a", "state": "MASTER_ODOWN", "timestamp": iso(T0 - 0.7)}]
    dated = build_report(observations(daemon_log=stale, drill_events=(fault,)))
    assert order(dated) == ["fault", "objectively_down", "failover_planned", "promoted"]
    [odown] = [e for e in dated.timeline if e.event == "objectively_down"]
    assert odown.source == "journal"


def test_report_problems() -> None:
    none = build_report(observations(journals={}, daemon_log=[]))
    assert not none.is_ok
    assert "the daemon started no promotion of the group" in none.problems
    assert none.odown_after_seconds is None and none.promoted_after_seconds is None

    rolled = build_report(observations(journals={"F1": promotion_journal(outcome="rolled_back")}))
    assert any(p.startswith("failover F1 rolled_back") for p in rolled.problems)

    unfinished = build_report(observations(journals={"F1": promotion_journal()[:-1]}))
    assert "failover F1 did not finish" in unfinished.problems

    unsafe = build_report(
        observations(judgement=GroupJudgement(False, "2 brokers answer as master"))
    )
    assert not unsafe.old_master_safe and unsafe.master_key is None
    assert any("2 brokers answer as master" in p for p in unsafe.problems)
    assert "did NOT come back safely" in render_report(unsafe) and "drill FAILED" in render_report(
        unsafe
    )

    never = build_report(observations(judgement=None, old_master_started_at=None))
    assert "the old master was not started again" in never.problems

    failing = traffic(outage_from=0.0, outage_to=999.0, end=70.0)
    silent = build_report(observations(sends=tuple(failing)))
    assert "the producer saw no successful write after the fault" in silent.problems
    assert silent.write_outage_seconds is None

    late = build_report(observations(receives=()))
    assert any("never received message" in p for p in late.problems)
    assert any("acknowledged after the fault were never delivered" in p for p in late.problems)


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Path:
    doc = cluster_doc()
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    return tmp_path


def refusal(config: WatchdogConfig, **options: Any) -> str:
    opts = DrillOptions(broker_name=options.pop("broker_name", "broker-a"), **options)
    with pytest.raises(DrillRefused) as info:
        asyncio.run(
            run_drill(
                "c.toml",
                config,
                opts,
                as_json=False,
                echo=lambda _l: None,
                progress=lambda _l: None,
            )
        )
    return str(info.value)


@pytest.fixture
def held_lock(sandbox_dir: Path) -> Iterator[Path]:
    """<state_dir>/lock held by this process, as a daemon would hold it."""
    state = sandbox_dir / "watchdog-state"
    state.mkdir()
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield state / "lock"
    finally:
        os.close(fd)


def test_is_lock_held(sandbox_dir: Path) -> None:
    state = sandbox_dir / "watchdog-state"
    assert not is_lock_held(state)  # no lock file at all
    state.mkdir()
    (state / "lock").touch()
    assert not is_lock_held(state)
    fd = os.open(state / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert is_lock_held(state)
    finally:
        os.close(fd)
    assert not is_lock_held(state)


def test_refusals_before_anything_runs(sandbox_dir: Path, held_lock: Path) -> None:
    d = str(sandbox_dir)
    config = make_config(d)
    assert "needs [probe] source_address" in refusal(config, fault="partition")
    assert "--fault must be one of" in refusal(config, fault="flood")
    assert "unknown broker group 'broker-z'" in refusal(config, broker_name="broker-z")
    assert "--messages must be at least 1" in refusal(config, messages=0)
    assert "--timeout must be positive" in refusal(config, timeout_seconds=0.0)
    assert "a daemon already runs; drop --start-daemon" in refusal(config, start_daemon=True)

    (sandbox_dir / "cluster.json").unlink()
    not_sandbox = refusal(config)
    assert "is not a sandbox" in not_sandbox and "cluster.json does not exist" in not_sandbox
    assert "pass --yes" in not_sandbox
    (sandbox_dir / "cluster.json").write_text(json.dumps(cluster_doc()))

    dry = make_config(d, dry_run=True)
    assert "dry_run = true" in refusal(dry)
    off = make_config(d, groups={"broker-a": {"auto_failover": False}})
    assert "automatic failover is off for broker-a" in refusal(off)

    state = sandbox_dir / "watchdog-state" / "state.json"
    record = {"blocked_until": time.time() + 600, "block_reason": "failover F1 succeeded"}
    state.write_text(json.dumps({"groups": {"broker-a": record}}))
    blocked = refusal(config)
    assert "blocked until" in blocked and "failover F1 succeeded" in blocked
    assert "rmq-watchdog ack -c FILE --broker-name broker-a" in blocked
    state.write_text("{not json")  # a broken state file does not block the preflight
    assert "drop --start-daemon" in refusal(config, start_daemon=True)


def test_no_daemon_is_refused(sandbox_dir: Path) -> None:
    config = make_config(str(sandbox_dir))
    message = refusal(config)
    assert "no watchdog daemon holds" in message and "--start-daemon" in message


def test_a_non_sandbox_drill_is_refused_without_yes(sandbox_dir: Path) -> None:
    d = str(sandbox_dir)
    config = make_config(
        d, brokers=[broker(0, A0, d, start=["systemctl", "start", "rmq"]), broker(1, A1, d)]
    )
    assert "pass --yes" in refusal(config)
    # With --yes the next check speaks: no daemon.
    assert "no watchdog daemon holds" in refusal(config, is_confirmed=True)


def test_partition_refusals(
    sandbox_dir: Path, held_lock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = str(sandbox_dir)

    def probe(address: str) -> dict[str, str]:
        return {"source_address": address}

    assert "other than 127.0.0.1" in refusal(
        make_config(d, probe=probe("127.0.0.1")), fault="partition"
    )
    assert "must be a loopback address" in refusal(
        make_config(d, probe=probe("10.1.2.3")), fault="partition"
    )
    assert "must be a loopback address" in refusal(
        make_config(d, probe=probe("nonsense")), fault="partition"
    )
    far = make_config(
        d, probe=probe("127.0.0.2"), brokers=[broker(0, "10.0.0.5:10911", d), broker(1, A1, d)]
    )
    assert "works on 127.0.0.1 only; broker-a:0 is at 10.0.0.5:10911" in refusal(
        far, fault="partition"
    )
    good = make_config(d, probe=probe("127.0.0.2"))
    # Past the partition checks, the next refusal speaks (a daemon already holds the lock).
    assert "drop --start-daemon" in refusal(good, fault="partition", start_daemon=True)
    monkeypatch.setattr("watchdog.tools.drill._rules.shutil.which", lambda _name: None)
    assert "needs nftables" in refusal(good, fault="partition")


def test_partition_ruleset() -> None:
    text = partition_ruleset("rmqwd_drill_R1", "127.0.0.2", [30011, 30009, 30011])
    assert text.startswith("table inet rmqwd_drill_R1 {")
    assert "type filter hook output priority 0; policy accept;" in text
    assert "ip saddr 127.0.0.2 ip daddr 127.0.0.1 tcp dport { 30009, 30011 } drop" in text
    for table, source, ports in [
        ("bad-name", "127.0.0.2", [1]),
        ("t; flush ruleset", "127.0.0.2", [1]),
        ("t", "10.0.0.1", [1]),
        ("t", "127.0.0.2", []),
        ("t", "127.0.0.2", [70000]),
    ]:
        with pytest.raises(ValueError):
            partition_ruleset(table, source, ports)


def test_judge_group_with_the_old_master_kept() -> None:
    group = make_config().group("broker-a")
    tables = {NS[0]: {0: A0, 1: A1}, NS[1]: {0: A0, 1: A1}}
    kept = {"broker-a:0": live("ASYNC_MASTER", "0"), "broker-a:1": live("SLAVE", "1")}

    def verdict(
        lives: Mapping[str, Mapping[str, str] | None], running: bool = False
    ) -> GroupJudgement:
        return judge_group(
            group, lives, tables, "broker-a:0", is_failover_running=running,
            is_rejoin_pending=False, is_old_master_kept=True,
        )  # fmt: skip

    assert verdict(kept).is_safe and "still the only master" in verdict(kept).detail
    assert "still running" in verdict(kept, running=True).detail
    swapped = {"broker-a:0": live("SLAVE", "1"), "broker-a:1": live("ASYNC_MASTER", "0")}
    moved = judge_group(
        group, swapped, {NS[0]: {0: A1}}, "broker-a:0", is_failover_running=False,
        is_rejoin_pending=False, is_old_master_kept=True,
    )  # fmt: skip
    assert not moved.is_safe and "broker-a:1 replaced broker-a:0 as master" in moved.detail


def test_partition_report() -> None:
    steady = traffic(outage_from=99.0, outage_to=99.0, end=30.0)  # writes never stopped
    receives = tuple(ReceiveRecord(s.seq, s.ended_at + 0.05) for s in steady)
    kept = GroupJudgement(True, "still the only master", "broker-a:0", A0, "ASYNC_MASTER", "0")
    good = build_report(
        observations(
            fault="partition", journals={}, sends=tuple(steady), receives=receives,
            stored_seqs=None, judgement=kept, old_master_started_at=None, old_master_safe_at=None,
        )
    )  # fmt: skip
    assert good.is_ok, good.problems
    assert good.write_outage_seconds is not None and good.write_outage_seconds < 0.2
    assert good.failover_id is None and good.master_key == "broker-a:0"
    assert "stayed the master" in render_report(good)
    assert "\nno failover\n" in render_report(good)
    assert "a partition from the watchdog" in render_report(good)

    failed_over = build_report(observations(fault="partition"))
    assert not failed_over.is_ok
    assert any("failed over (F1, succeeded) although clients" in p for p in failed_over.problems)


def test_the_report_names_the_block_a_failover_left() -> None:
    report = build_report(observations(blocked_until=1_800_000_000.0, block_reason="failover X"))
    assert report.to_json()["blocked_until"] == 1_800_000_000.0
    text = render_report(report)
    assert (
        "automatic failovers of broker-a are now blocked until 2027-01-15 08:00:00 UTC "
        "(failover X)" in text
    )
    assert "rmq-watchdog ack -c FILE --broker-name broker-a" in text
    assert "blocked until" not in render_report(build_report(observations()))
