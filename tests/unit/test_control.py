"""The control socket's wire format: the bytes a CLI and a daemon of another version exchange."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from watchdog.act import GroupRecord, StateStore, StepRecord, WatchdogState
from watchdog.config import WatchdogConfig, parse_config
from watchdog.daemon import (
    FailoverRequest,
    Send,
    acknowledge,
    control_socket_path,
    event_message,
    start_control_server,
    wire_json,
)


def make_config(tmp_path: Path) -> WatchdogConfig:
    return parse_config(
        {
            "cluster_name": "XdclassCluster",
            "nameservers": ["127.0.0.1:9876"],
            "state_dir": str(tmp_path),
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": 0,
                    "addr": "127.0.0.1:10911",
                    "properties": "/p0",
                    "start": ["true"],
                    "stop": ["true"],
                }
            ],
        }
    )


# --- what a client sends ------------------------------------------------------------------


def test_a_failover_request_is_the_line_every_version_sends() -> None:
    request = FailoverRequest("broker-a", "broker-a:1", force=True)
    assert wire_json(request.to_json()) == (
        '{"op": "failover", "broker_name": "broker-a", "to_key": "broker-a:1", '
        '"force": true, "fenced_by_operator": false}'
    )


@pytest.mark.parametrize(
    ("request_json", "expected"),
    [
        pytest.param(
            {"op": "failover", "broker_name": "broker-a", "to_key": None, "force": False,
             "fenced_by_operator": True},
            FailoverRequest("broker-a", fenced_by_operator=True),
            id="as this CLI sends it",
        ),
        pytest.param(
            {"op": "failover", "broker_name": "broker-a", "to_key": "broker-a:1", "force": True},
            FailoverRequest("broker-a", "broker-a:1", force=True),
            id="a CLI that knows no --fenced-by-operator",
        ),
        pytest.param({"op": "failover"}, FailoverRequest(""), id="nothing but the op"),
        pytest.param(
            {"op": "failover", "broker_name": 7, "force": 1},
            FailoverRequest("7", force=True),
            id="odd types",
        ),
    ],
)  # fmt: skip
def test_a_failover_request_as_the_daemon_reads_it(
    request_json: dict[str, Any], expected: FailoverRequest
) -> None:
    assert FailoverRequest.from_json(request_json) == expected


# --- what the daemon answers --------------------------------------------------------------


@dataclass(frozen=True)
class WithJson:
    def to_json(self) -> dict[str, Any]:
        return {"as": "its own JSON"}


RECORD = StepRecord(0, "main", "stop", "broker-a:0", "done", "stopped", 1.5)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"failover_id": "fo-1", "plan": WithJson()},
            {"event": "e", "failover_id": "fo-1", "plan": {"as": "its own JSON"}},
            id="to_json wins",
        ),
        pytest.param(
            {"record": RECORD},
            {"event": "e", "record": {"index": 0, "phase": "main", "kind": "stop",
                                      "broker_key": "broker-a:0", "status": "done",
                                      "detail": "stopped", "duration_seconds": 1.5}},
            id="a dataclass by its fields",
        ),
        pytest.param(
            {"done_steps": [0, 1], "reason": None},
            {"event": "e", "done_steps": [0, 1], "reason": None},
            id="plain values as they are",
        ),
    ],
)  # fmt: skip
def test_event_message(fields: Mapping[str, Any], expected: dict[str, Any]) -> None:
    assert event_message("e", fields) == expected


def test_ack_lifts_the_block_and_nothing_else(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = StateStore(tmp_path)
    record = GroupRecord(epoch=3, blocked_until=4e9, block_reason="failed over", master_key="k")
    store.save(WatchdogState().with_group("broker-a", record))
    assert acknowledge(config, store, "broker-zz") == {"error": "unknown broker group 'broker-zz'"}
    assert store.load().group("broker-a") == record
    assert acknowledge(config, store, "broker-a") == {
        "ok": True,
        "message": "automatic failover of broker-a re-enabled",
    }
    assert store.load().group("broker-a") == GroupRecord(epoch=3, master_key="k")


# --- one request, one connection ----------------------------------------------------------


def exchange(tmp_path: Path, line: bytes) -> tuple[bytes, list[FailoverRequest], list[str]]:
    """Send `line` to a server with scripted handlers; what came back and what they got."""
    failovers: list[FailoverRequest] = []
    acks: list[str] = []

    async def failover(request: FailoverRequest, send: Send) -> None:
        failovers.append(request)
        send({"event": "accepted", "failover_id": "fo-1"})
        send({"event": "result", "outcome": "succeeded", "detail": "done"})

    def ack(broker_name: str) -> Mapping[str, Any]:
        acks.append(broker_name)
        return {"ok": True, "message": f"automatic failover of {broker_name} re-enabled"}

    def status() -> Mapping[str, Any]:
        return {"ok": True, "pid": 7, "cycle": 3, "groups": {"broker-a": {"state": "HEALTHY"}}}

    async def go() -> bytes:
        path = control_socket_path(make_config(tmp_path))
        server = await start_control_server(path, failover, ack, status)
        try:
            assert path.stat().st_mode & 0o777 == 0o600
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(line)
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            server.close()

    return asyncio.run(go()), failovers, acks


def test_status_is_answered_on_one_line(tmp_path: Path) -> None:
    answer, failovers, acks = exchange(tmp_path, b'{"op": "status"}\n')
    assert answer == (
        b'{"ok": true, "pid": 7, "cycle": 3, "groups": {"broker-a": {"state": "HEALTHY"}}}\n'
    )
    assert (failovers, acks) == ([], [])


def test_an_ack_is_answered_on_one_line(tmp_path: Path) -> None:
    answer, failovers, acks = exchange(tmp_path, b'{"op": "ack", "broker_name": "broker-a"}\n')
    assert answer == b'{"ok": true, "message": "automatic failover of broker-a re-enabled"}\n'
    assert (failovers, acks) == ([], ["broker-a"])


def test_a_failover_is_answered_line_by_line(tmp_path: Path) -> None:
    request = FailoverRequest("broker-a", force=True)
    answer, failovers, acks = exchange(tmp_path, (wire_json(request.to_json()) + "\n").encode())
    assert answer == (
        b'{"event": "accepted", "failover_id": "fo-1"}\n'
        b'{"event": "result", "outcome": "succeeded", "detail": "done"}\n'
    )
    assert (failovers, acks) == ([request], [])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b'{"op": "reboot"}\n', b'{"error": "unknown op \'reboot\'"}\n', id="op"),
        pytest.param(b"", b'{"error": "unknown op None"}\n', id="closed before a line"),
        pytest.param(
            b"\n",
            b'{"error": "bad request: Expecting value: line 2 column 1 (char 1)"}\n',
            id="an empty line",
        ),
        pytest.param(
            b"ack\n",
            b'{"error": "bad request: Expecting value: line 1 column 1 (char 0)"}\n',
            id="not JSON",
        ),
    ],
)
def test_a_bad_request_gets_an_error(tmp_path: Path, line: bytes, expected: bytes) -> None:
    answer, failovers, acks = exchange(tmp_path, line)
    assert answer == expected
    assert (failovers, acks) == ([], [])
