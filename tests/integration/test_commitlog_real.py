"""Counting a real RocketMQ 4.9.7 master's commit log past an offset, through a local host."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import runtime_info, send_keyed
from watchdog.act._commitlog import commitlog_dir, read_commitlog_tail
from watchdog.hosts import LocalBackend
from watchdog.model import PropertiesFile

pytestmark = pytest.mark.integration

TOPIC = "WatchdogCommitLogTopic"


def _max_offset(addr: str) -> int:
    info = runtime_info(addr, timeout_seconds=5.0)
    assert info is not None, f"{addr} does not answer"
    return int(info["commitLogMaxOffset"])


def test_messages_written_past_an_offset_are_counted_exactly(fresh_sandbox: Any) -> None:
    sandbox = fresh_sandbox()
    master = next(b for b in sandbox.info()["brokers"] if b["broker_id"] == 0)
    namesrv = ";".join(n["addr"] for n in sandbox.info()["nameservers"])
    properties = PropertiesFile.parse(Path(master["properties"]).read_text())
    directory = commitlog_dir(properties)

    # Something in the log before the offset, so the count has to start in the right place.
    # send_keyed retries a send a fresh librocketmq producer refused with "No route info"
    # (nothing was sent): the first send to a new topic on a fresh sandbox sometimes is.
    warm = send_keyed(namesrv, "WatchdogCommitLogWarmUp", "w", 5)
    assert len(warm["acked"]) == 5, warm
    before = _max_offset(master["addr"])
    n = 37
    outcome = send_keyed(namesrv, TOPIC, "k", n)
    assert len(outcome["acked"]) == n and outcome["failed"] == 0, outcome
    after = _max_offset(master["addr"])
    assert after > before

    host = LocalBackend()
    tail = asyncio.run(read_commitlog_tail(host, directory, before, after))
    assert tail.messages == n, tail.summary()
    assert [(t.topic, t.messages) for t in tail.topics] == [(TOPIC, n)]
    assert tail.message_bytes == after - before
    assert (tail.first_offset, tail.last_end_offset) == (before, after)
    assert tail.straddles is False and tail.crc_mismatches == 0 and tail.is_exact

    # Without an end: the reader finds where the written log stops.
    open_ended = asyncio.run(read_commitlog_tail(host, directory, before, None))
    assert open_ended.messages == n and open_ended.log_end_offset == after
    assert open_ended.is_exact, open_ended.summary()

    # An offset inside the first of them: it straddles, the others are counted.
    inside = asyncio.run(read_commitlog_tail(host, directory, before + 50, after))
    assert inside.messages == n - 1 and inside.straddles is True
    assert inside.straddling_offset == before and inside.is_exact

    # Bounded reading says it is partial, and never counts more than there is.
    capped = asyncio.run(read_commitlog_tail(host, directory, before, None, max_bytes=1000))
    assert capped.partial and 0 < capped.messages < n
