"""`check`'s findings that need no cluster: the block, secondary checks, write access."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from watchdog.act import GroupRecord, WatchdogState
from watchdog.commands import block_findings, can_fail_over
from watchdog.commands._check import (
    _properties_dir_findings,
    _secondary_check_finding,
    state_dir_finding,
)
from watchdog.config import SecondaryCheck, WatchdogConfig, parse_config
from watchdog.hosts import LocalBackend


def config() -> WatchdogConfig:
    return parse_config(
        {
            "cluster_name": "c",
            "nameservers": ["127.0.0.1:9876"],
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": i,
                    "addr": f"127.0.0.1:1091{i}",
                    "properties": f"/etc/rmq/a{i}.properties",
                    "start": ["start"],
                    "stop": ["stop"],
                }
                for i in (0, 1)
            ],
        }
    )


def test_a_block_in_force_is_a_failing_finding_naming_ack() -> None:
    state = WatchdogState().with_group(
        "broker-a", GroupRecord(blocked_until=1_800_000_000.0, block_reason="failover X succeeded")
    )
    [finding] = block_findings(config(), state, now_wall=1_799_999_000.0)
    assert finding.severity == "error" and finding.blocks_failover
    assert "blocked until 2027-01-15 08:00:00 UTC (failover X succeeded)" in finding.message
    assert "rmq-watchdog ack -c FILE --broker-name broker-a" in finding.message
    assert not can_fail_over([finding])


def test_an_expired_block_or_no_state_says_nothing() -> None:
    state = WatchdogState().with_group("broker-a", GroupRecord(blocked_until=100.0))
    assert block_findings(config(), state, now_wall=200.0) == []
    assert block_findings(config(), None, now_wall=200.0) == []


# --- findings that ask a host (the real local backend) ------------------------------------


def _secondary(command: list[str]) -> SecondaryCheck:
    return SecondaryCheck.model_validate({"name": "dc2", "host": "local", "command": command})


@pytest.mark.parametrize(
    ("command", "severity", "text"),
    [
        (["sh", "-c", 'test "$0" = 127.0.0.1:10911', "{addr}"], "ok", "reaches 127.0.0.1:10911"),
        (["sh", "-c", "echo refused; exit 1"], "warn", "does not reach 127.0.0.1:10911: refused"),
        (["/nonexistent/rmq-watchdog-ping", "{addr}"], "error", "does not run on host local"),
        (["sh", "-c", "exit 2"], "error", "nameservers' 120 s timeout"),
    ],
)
def test_a_secondary_check_is_run_once_against_the_master(
    command: list[str], severity: str, text: str
) -> None:
    finding = asyncio.run(
        _secondary_check_finding(_secondary(command), LocalBackend("local"), "127.0.0.1:10911")
    )
    assert finding.severity == severity and text in finding.message, finding
    assert finding.subject == "secondary check dc2"
    assert not finding.blocks_failover  # detection degrades; a failover can still run


def test_a_properties_directory_the_watchdog_cannot_write_blocks_failover(
    tmp_path: Path,
) -> None:
    broker = config().brokers[0]
    writable = broker.model_copy(update={"properties": str(tmp_path / "a0.properties")})
    [ok] = asyncio.run(_properties_dir_findings(writable, LocalBackend("local")))
    assert ok.severity == "ok" and f"{tmp_path} writable on local" in ok.message
    missing = broker.model_copy(update={"properties": str(tmp_path / "gone" / "a0.properties")})
    [bad] = asyncio.run(_properties_dir_findings(missing, LocalBackend("local")))
    assert bad.severity == "error" and bad.blocks_failover
    assert f"{tmp_path / 'gone'} is not writable on local" in bad.message


def test_a_state_dir_of_another_user_is_a_warning(tmp_path: Path) -> None:
    own = tmp_path.stat().st_uid
    assert state_dir_finding(str(tmp_path), own) is None
    assert state_dir_finding(str(tmp_path / "missing"), own + 1) is None
    finding = state_dir_finding(str(tmp_path), own + 1)
    assert finding is not None and finding.severity == "warn" and not finding.blocks_failover
    assert f"{tmp_path} belongs to " in finding.message and "sudo -u " in finding.message
