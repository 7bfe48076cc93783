"""The canary against a real 4.9.7 cluster: broker-a master+slave, broker-b master alone.

The tests share one cluster and run in file order: the healthy checks first, then broker-b is
frozen and killed, and last broker-a's slave is promoted the way the watchdog does it (old master
killed, properties rewritten to brokerId=0 / ASYNC_MASTER, restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from watchdog.act import CanaryResult, run_canary
from watchdog.decide import canary_topic
from watchdog.native import run_canary_client, send_probe_messages
from watchdog.remoting import ClientPool, RemoteError, get_broker_runtime_info, get_topic_route

pytestmark = pytest.mark.integration

BASE_PORT = 27500  # this test's block inside the canary's port range 27000-27999
CANARY_TIMEOUT_SECONDS = 20.0
PREFIX = "RMQ_WATCHDOG_CANARY"  # [failover] canary_topic_prefix's default
TOPIC_A, TOPIC_B = canary_topic(PREFIX, "broker-a"), canary_topic(PREFIX, "broker-b")


def sandbox(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


@dataclass(frozen=True)
class Cluster:
    dir: Path
    nameservers: tuple[str, ...]
    addrs: dict[str, str]  # "broker-a:0" -> "127.0.0.1:27511"

    def info(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.dir / "cluster.json").read_text())
        return doc


def _kill_leftovers(directory: Path) -> None:
    """SIGKILL any JVM of this sandbox that `sandbox down` left behind (by pid, ours only)."""
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads((directory / "cluster.json").read_text())
        for proc in [*doc["nameservers"], *doc["brokers"]]:
            pid = proc.get("pid")
            if not pid:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(directory).encode() in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("canary") / "sandbox"
    try:
        sandbox("up", "--dir", str(directory), "--groups", "2", "--base-port", str(BASE_PORT))
        # broker-b runs as a master alone.
        sandbox("stop", "--dir", str(directory), "--broker", "broker-b:1")
        doc = json.loads((directory / "cluster.json").read_text())
        yield Cluster(
            dir=directory,
            nameservers=tuple(n["addr"] for n in doc["nameservers"]),
            addrs={f"{b['broker_name']}:{b['broker_id']}": b["addr"] for b in doc["brokers"]},
        )
    finally:
        sandbox("down", "--dir", str(directory), check=False)
        _kill_leftovers(directory)


def canary(
    cluster: Cluster, key: str, *, timeout_seconds: float = CANARY_TIMEOUT_SECONDS
) -> tuple[CanaryResult, float]:
    broker_name = key.split(":")[0]

    async def run() -> CanaryResult:
        pool = ClientPool()
        try:
            return await run_canary(
                cluster.nameservers,
                cluster.addrs[key],
                broker_name,
                topic=canary_topic(PREFIX, broker_name),
                timeout_seconds=timeout_seconds,
                pool=pool,
            )
        finally:
            await pool.close_all()

    started = time.monotonic()
    result = asyncio.run(run())
    return result, time.monotonic() - started


def commitlog_max_offset(addr: str) -> int:
    async def run() -> int:
        pool = ClientPool()
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    info = await get_broker_runtime_info(pool.get(addr), timeout_seconds=5)
                    break
                except RemoteError:
                    # A 4.9.7 broker answers runtime info with NoSuchElementException (its TPS
                    # sample list is still empty) for a moment after it starts.
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await pool.close_all()
        return int(info["commitLogMaxOffset"])

    return asyncio.run(run())


def routes(cluster: Cluster, topic: str) -> list[Any]:
    async def run() -> list[Any]:
        pool = ClientPool()
        try:
            return [
                await get_topic_route(pool.get(ns), topic, timeout_seconds=5)
                for ns in cluster.nameservers
            ]
        finally:
            await pool.close_all()

    return asyncio.run(run())


def test_canary_on_a_healthy_master_lands_on_its_group_only(cluster: Cluster) -> None:
    a_before = commitlog_max_offset(cluster.addrs["broker-a:0"])
    b_before = commitlog_max_offset(cluster.addrs["broker-b:0"])
    durations = []
    offsets = []
    for _ in range(3):
        result, elapsed = canary(cluster, "broker-a:0")
        assert result.is_ok, result.detail
        assert result.msg_id and result.msg_id in result.detail
        assert f"written to broker-a at {cluster.addrs['broker-a:0']}" in result.detail
        offsets.append(int(result.detail.split("offset ")[1].split(")")[0]))
        durations.append(elapsed)
    # Each run reads back its own message: the queue offsets follow one another.
    assert offsets == [offsets[0], offsets[0] + 1, offsets[0] + 2]
    assert commitlog_max_offset(cluster.addrs["broker-a:0"]) > a_before
    assert commitlog_max_offset(cluster.addrs["broker-b:0"]) == b_before
    for route in routes(cluster, TOPIC_A):
        assert set(route.broker_addrs) == {"broker-a"}
        assert {q.broker_name for q in route.queue_datas} == {"broker-a"}
    print(f"\ncanary durations on a healthy master: {', '.join(f'{d:.2f} s' for d in durations)}")
    assert max(durations) < 5.0


def test_probe_producer_sends_through_the_healthy_cluster(cluster: Cluster) -> None:
    before = commitlog_max_offset(cluster.addrs["broker-a:0"])
    report = asyncio.run(
        send_probe_messages(
            cluster.nameservers,
            TOPIC_A,
            duration_seconds=2.0,
            interval_seconds=0.2,
        )
    )
    assert report.error is None
    assert report.failed_count == 0 and report.ok_count >= 8
    assert report.longest_write_gap_seconds < 1.0
    assert all(s.status == "SEND_OK" and s.msg_id for s in report.sends)
    assert commitlog_max_offset(cluster.addrs["broker-a:0"]) > before


def test_canary_on_a_slave_fails_because_the_slave_refuses_the_topic(cluster: Cluster) -> None:
    result, elapsed = canary(cluster, "broker-a:1")
    assert not result.is_ok
    assert result.detail.startswith(
        f"cannot create canary topic {TOPIC_A} on {cluster.addrs['broker-a:1']}"
    )
    assert "Can't modify topic or subscription group from slave broker" in result.detail
    assert elapsed < 2.0


def test_canary_client_against_a_frozen_broker_is_killed_within_its_timeout(
    cluster: Cluster,
) -> None:
    # Create broker-b's canary topic while it is healthy, then freeze it: the nameservers keep
    # its route (its connections stay open), so the real client tries to send into a hang.
    result, _ = canary(cluster, "broker-b:0")
    assert result.is_ok, result.detail
    sandbox("kill", "--dir", str(cluster.dir), "--broker", "broker-b:0", "--signal", "stop")
    try:
        started = time.monotonic()
        outcome = asyncio.run(
            run_canary_client(
                cluster.nameservers,
                TOPIC_B,
                timeout_seconds=4.0,
                expect_broker_name="broker-b",
            )
        )
        elapsed = time.monotonic() - started
        assert not outcome.is_ok and not outcome.is_received
        assert outcome.sent_msg_id is None
        assert outcome.error
        assert elapsed < 4.0 + 0.8 + 1.0  # its timeout + the kill grace + slack
        print(f"\nfrozen broker: client gave up after {elapsed:.1f} s: {outcome.error}")

        frozen, elapsed = canary(cluster, "broker-b:0", timeout_seconds=5.0)
        assert not frozen.is_ok
        assert frozen.detail == (
            f"cannot create canary topic {TOPIC_B} on "
            f"{cluster.addrs['broker-b:0']}: {cluster.addrs['broker-b:0']}: no reply to request "
            "code 17 within 2s"
        )
        assert elapsed < 5.0
    finally:
        sandbox("kill", "--dir", str(cluster.dir), "--broker", "broker-b:0", "--signal", "cont")


def test_canary_on_a_killed_broker_fails_within_its_timeout(cluster: Cluster) -> None:
    sandbox("kill", "--dir", str(cluster.dir), "--broker", "broker-b:0")
    result, elapsed = canary(cluster, "broker-b:0", timeout_seconds=5.0)
    assert not result.is_ok
    assert result.detail.startswith(
        f"cannot create canary topic {TOPIC_B} on {cluster.addrs['broker-b:0']}"
    )
    assert "connect failed" in result.detail
    assert elapsed < 5.0
    # The nameservers dropped broker-b with its connections: no route is left for its topic.
    with pytest.raises(RemoteError) as info:
        routes(cluster, TOPIC_B)
    assert info.value.code == 17


def test_canary_proves_a_promoted_slave_takes_writes(cluster: Cluster) -> None:
    master, slave = cluster.addrs["broker-a:0"], cluster.addrs["broker-a:1"]
    offset_before = commitlog_max_offset(slave)
    sandbox("kill", "--dir", str(cluster.dir), "--broker", "broker-a:0")
    sandbox("stop", "--dir", str(cluster.dir), "--broker", "broker-a:1")
    properties = cluster.dir / "broker-a-s.properties"
    text = properties.read_text()
    assert "brokerId=1\n" in text and "brokerRole=SLAVE\n" in text
    properties.write_text(
        text.replace("brokerId=1\n", "brokerId=0\n").replace(
            "brokerRole=SLAVE\n", "brokerRole=ASYNC_MASTER\n"
        )
    )
    # No --wait-registered: the canary itself waits until the route shows the new master.
    sandbox("start", "--dir", str(cluster.dir), "--broker", "broker-a:1")
    result, elapsed = canary(cluster, "broker-a:1")
    assert result.is_ok, result.detail
    assert f"written to broker-a at {slave}" in result.detail
    assert commitlog_max_offset(slave) > offset_before
    for route in routes(cluster, TOPIC_A):
        assert dict(route.broker_addrs["broker-a"]) == {0: slave}
    assert master not in result.detail
    print(f"\ncanary on the promoted slave right after its restart: {elapsed:.2f} s")
