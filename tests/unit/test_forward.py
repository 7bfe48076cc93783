"""Where an operator's request goes with [etcd] (`commands/_forward.route`) and how the answers
print (`show_answers`), on values; the relay itself runs against a real etcd in
tests/integration/test_coord_etcd.py and test_sandbox_etcd.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_status_etcd import config, group_read
from watchdog.commands import _status
from watchdog.commands._forward import Route, route, show_answers
from watchdog.commands._status import EtcdRead
from watchdog.daemon import DaemonLock


def routed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: EtcdRead, **kw: Any) -> Route:
    async def read_etcd(*args: Any, **kwargs: Any) -> EtcdRead:
        return read

    monkeypatch.setattr(_status, "read_etcd", read_etcd)
    return asyncio.run(route(config(tmp_path, **kw)))


def test_without_etcd_the_local_daemon_or_the_lock_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert routed(tmp_path, monkeypatch, EtcdRead(error="never asked"), etcd=False) == Route()


def test_another_leader_is_asked_through_etcd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert routed(tmp_path, monkeypatch, EtcdRead(group=group_read("wd-1"))) == Route("wd-1")


def test_nobody_leading_or_etcd_unreachable_is_one_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = routed(tmp_path, monkeypatch, EtcdRead(group=group_read(None)))
    assert nobody.leader is None and nobody.refusal is not None
    assert nobody.refusal.startswith("with [etcd] only the leader acts; etcd names no leader")
    cut = routed(tmp_path, monkeypatch, EtcdRead(error="get: no answer within 1 s"))
    assert cut.refusal is not None and "etcd cannot be reached" in cut.refusal
    assert "no answer within 1 s" in cut.refusal


def test_this_instance_leading_goes_to_its_daemon_which_must_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = EtcdRead(group=group_read("wd-2"))  # the config's instance_name
    stale = routed(tmp_path, monkeypatch, me)
    assert stale.leader is None and stale.refusal is not None
    assert "etcd names this instance (wd-2) the leader, but no daemon runs here" in stale.refusal
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    lock = DaemonLock(str(state_dir))
    lock.acquire()  # what a running daemon holds
    try:
        assert routed(tmp_path, monkeypatch, me) == Route()
    finally:
        lock.release()


async def _replay(messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for message in messages:
        yield message


def shown(messages: list[dict[str, Any]], *, as_json: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = asyncio.run(
        show_answers(_replay(messages), as_json, lines.append, noun="failover", who="wd-1")
    )
    return code, lines


def test_answers_print_a_line_each_and_the_result_decides_the_exit_code() -> None:
    taken = {"event": "taken", "leader": "wd-1", "term": 42}
    accepted = {"event": "accepted", "failover_id": "f-1", "plan": {"reason": "master died"}}
    step = {
        "event": "step_done",
        "record": {"index": 0, "status": "done", "detail": "rewrote"},
        "step": {"purpose": "fence broker-a:0"},
    }
    result = {"event": "result", "outcome": "succeeded", "detail": "promoted"}
    assert shown([taken, accepted, step, result]) == (
        0,
        [
            "wd-1 took the request",
            "failover f-1 accepted: master died",
            "  step 1 done: fence broker-a:0 — rewrote",
            "failover succeeded: promoted",
        ],
    )
    assert shown([taken, {**result, "outcome": "rolled_back"}])[0] == 1
    assert shown([taken, {"error": "the master answers"}]) == (
        1,
        ["wd-1 took the request", "refused by wd-1: the master answers"],
    )
    assert shown([taken, {"ok": True, "message": "re-enabled"}]) == (
        0,
        ["wd-1 took the request", "re-enabled"],
    )
    code, lines = shown([taken, {"error": "no"}], as_json=True)
    assert code == 1 and lines == [
        '{"event": "taken", "leader": "wd-1", "term": 42}',
        '{"error": "no"}',
    ]
    assert shown([]) == (1, [])  # no answer at all is no success
