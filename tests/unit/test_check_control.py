"""check's control path on the local host backend: the properties and each failover command."""

from __future__ import annotations

import asyncio
from pathlib import Path

from watchdog.commands._check import _check_control_path
from watchdog.config import BrokerConfig
from watchdog.hosts._local import LocalBackend

HOST = LocalBackend("box-1")


def _broker(tmp_path: Path, *, kill: tuple[str, ...]) -> BrokerConfig:
    properties = tmp_path / "broker-a-s.properties"
    properties.write_text("brokerName=broker-a\nbrokerId=1\nbrokerRole=SLAVE\n")
    return BrokerConfig(
        broker_name="broker-a",
        broker_id=1,
        addr="127.0.0.1:10921",
        properties=str(properties),
        start=("true",),
        stop=("true",),
        kill=kill,
    )


def test_a_present_kill_command_is_named_with_start_and_stop(tmp_path: Path) -> None:
    path = asyncio.run(_check_control_path(_broker(tmp_path, kill=("true", "-9")), HOST))
    assert path.is_ok
    assert [f.message for f in path.findings if f.id == "control.commands"] == [
        "start/stop/kill commands present on box-1"
    ]


def test_a_missing_kill_command_blocks_the_failover(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-kill")
    path = asyncio.run(_check_control_path(_broker(tmp_path, kill=(missing,)), HOST))
    assert not path.is_ok
    blocking = [f for f in path.findings if f.id == "control.command-missing"]
    assert [f.message for f in blocking] == [f"kill command {missing!r} not found on box-1"]
    assert all(f.blocks_failover for f in blocking)


def test_without_a_kill_command_only_start_and_stop_are_looked_for(tmp_path: Path) -> None:
    path = asyncio.run(_check_control_path(_broker(tmp_path, kill=()), HOST))
    assert path.is_ok
    assert [f.message for f in path.findings if f.id == "control.commands"] == [
        "start/stop commands present on box-1"
    ]
