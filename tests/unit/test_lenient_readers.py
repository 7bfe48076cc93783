"""The lenient readers of the daemon's files, for a reader beside a running daemon (the drill):
every journal at once, and state.json as far as it can be read; neither ever raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from watchdog.act import GroupRecord, Journal, StateStore, WatchdogState


def write_journal(state_dir: Path, failover_id: str, text: str | bytes) -> None:
    folder = state_dir / "failovers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{failover_id}.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def test_every_journal_in_name_order_but_the_excluded(tmp_path: Path) -> None:
    journal = Journal(tmp_path, clock=lambda: 5.0)
    for fid in ("F2", "F1", "F3"):
        journal.append(fid, "planned", plan={"kind": "promote"})
        journal.append(fid, "finished", outcome="succeeded")
    for lenient in (False, True):
        found = journal.read_all({"F3"}, lenient=lenient)
        assert list(found) == ["F1", "F2"]
        assert found["F1"] == journal.read("F1")
        assert [e["event"] for e in found["F2"]] == ["planned", "finished"]


def test_no_folder_is_no_journal(tmp_path: Path) -> None:
    assert Journal(tmp_path).read_all(lenient=True) == {}
    assert Journal(tmp_path).read_all() == {}


def test_lenient_read_stops_at_the_first_line_that_is_not_an_object(tmp_path: Path) -> None:
    write_journal(tmp_path, "torn", '{"event": "planned"}\n{"event": "step_d')
    write_journal(tmp_path, "list", '{"event": "planned"}\n[1, 2]\n{"event": "finished"}\n')
    write_journal(tmp_path, "blank", '\n{"event": "planned"}\n\n{"event": "finished"}\n')
    write_journal(tmp_path, "bytes", b'{"event": "planned", "detail": "\xff"}\n')
    found = Journal(tmp_path).read_all(lenient=True)
    assert found["torn"] == [{"event": "planned"}]
    assert found["list"] == [{"event": "planned"}]
    assert [e["event"] for e in found["blank"]] == ["planned", "finished"]
    assert found["bytes"] == [{"event": "planned", "detail": "\ufffd"}]


def test_lenient_read_leaves_out_a_journal_it_cannot_read(tmp_path: Path) -> None:
    write_journal(tmp_path, "good", '{"event": "planned"}\n')
    (tmp_path / "failovers" / "folder.jsonl").mkdir()
    assert list(Journal(tmp_path).read_all(lenient=True)) == ["good"]
    with pytest.raises(OSError):
        Journal(tmp_path).read_all()


def test_peek_reads_what_the_daemon_wrote(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = WatchdogState(
        groups={"broker-a": GroupRecord(epoch=3, blocked_until=1e9, block_reason="F1 succeeded")},
        running={"broker-b": "F2"},
    )
    store.save(state)
    assert store.peek() == store.load() == state


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", "null", '"text"'])
def test_peek_of_a_broken_file_is_the_empty_state(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text)
    assert StateStore(tmp_path).peek() == WatchdogState()


def test_peek_of_no_file_is_the_empty_state(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "missing").peek() == WatchdogState()


def test_peek_keeps_the_fields_of_the_right_type(tmp_path: Path) -> None:
    doc = {
        "groups": {
            "broker-a": {
                "blocked_until": 1800000000,  # an int for a float
                "block_reason": 7,
                "rejoin_check_key": "broker-a:0",
                "epoch": True,
                "promotion_offset": 1.5,
                "unknown_field": "x",
            },
            "broker-b": "not a record",
        },
        "running": {"broker-a": "F9"},
    }
    (tmp_path / "state.json").write_text(json.dumps(doc))
    state = StateStore(tmp_path).peek()
    assert state.groups == {
        "broker-a": GroupRecord(blocked_until=1800000000.0, rejoin_check_key="broker-a:0")
    }
    assert isinstance(state.group("broker-a").blocked_until, float)
    assert state.running == {"broker-a": "F9"}
    (tmp_path / "state.json").write_text(json.dumps({"groups": [], "running": ["broker-a"]}))
    assert StateStore(tmp_path).peek() == WatchdogState()
