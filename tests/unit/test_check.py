"""`check`'s findings that need no cluster: the anti-flap block and the fence paths."""

from __future__ import annotations

from watchdog.act import GroupRecord, WatchdogState
from watchdog.commands import block_findings, can_fail_over
from watchdog.config import WatchdogConfig, parse_config


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
