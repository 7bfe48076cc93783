"""librocketmq's pull consumer over ctypes: a topic's queues, one batch of a queue, every queue."""

# The `rocketmq` wheel has no Python API for pulling (its PullConsumer only starts and stops), so
# this calls librocketmq's C functions itself. Only ever inside a child process (see _spawn.py):
# the canary's round trip, the drill's audit, the tests' and benchmarks' client children.

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..model import AclCredentials
from ._credentials import sign_client

__all__ = [
    "PullBatch",
    "PullResult",
    "Queue",
    "StoredMessage",
    "fetch_queues",
    "pull",
    "pull_every_queue",
    "start_pull_consumer",
]

_BATCH = 32
_RETRY_SECONDS = 0.5
_BROKER_TIMEOUT_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class StoredMessage:
    queue_id: int
    queue_offset: int
    keys: str
    body: bytes


@dataclass(frozen=True)
class PullResult:
    messages: tuple[StoredMessage, ...]
    queues: int
    is_complete: bool  # every queue read to its end before the deadline


@dataclass(frozen=True)
class Queue:
    """One message queue of a topic, as the nameservers route it."""

    broker_name: str
    queue_id: int
    native: Any = field(repr=False, compare=False)  # a copy of the client's _CMessageQueue


@dataclass(frozen=True)
class PullBatch:
    status: str  # FOUND, NO_NEW_MSG, NO_MATCHED_MSG, OFFSET_ILLEGAL or BROKER_TIMEOUT
    messages: tuple[StoredMessage, ...]  # with FOUND only
    next_offset: int


def start_pull_consumer(
    namesrv: str, group: str, credentials: AclCredentials | None = None
) -> Any:
    """A started PullConsumer of ``group``; ``namesrv`` is 'host:port;host:port'; with
    ``credentials`` it signs its requests (ACL 1.0)."""
    from rocketmq.client import PullConsumer

    consumer = PullConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    sign_client(consumer, credentials)
    consumer.start()
    return consumer


def fetch_queues(consumer: Any, topic: str) -> tuple[Queue, ...]:
    """The queues of ``topic`` as the nameservers route it; raises what the client raises (no
    route yet, no nameserver)."""
    import ctypes

    from rocketmq.exceptions import ffi_check
    from rocketmq.ffi import _CMessageQueue, dll

    queues = ctypes.POINTER(_CMessageQueue)()
    count = ctypes.c_int()
    ffi_check(dll.FetchSubscriptionMessageQueues(
        consumer._handle, topic.encode(), ctypes.pointer(queues), ctypes.pointer(count),
    ))  # fmt: skip
    try:
        return tuple(
            Queue(
                queues[i].brokerName.decode("utf-8", "replace"),
                int(queues[i].queueId),
                _CMessageQueue.from_buffer_copy(queues[i]),
            )
            for i in range(int(count.value))
        )
    finally:
        dll.ReleaseSubscriptionMessageQueue(queues)


def pull(consumer: Any, queue: Queue, offset: int, max_messages: int = _BATCH) -> PullBatch:
    """Up to ``max_messages`` messages of ``queue`` from ``offset`` on."""
    import ctypes

    from rocketmq.client import RecvMessage
    from rocketmq.ffi import _CPullStatus, dll

    pulled = dll.Pull(consumer._handle, ctypes.pointer(queue.native), b"*", offset, max_messages)
    try:
        code = int(pulled.pullStatus)
        try:
            status = _CPullStatus(code).name
        except ValueError:
            status = f"status {code}"
        messages: list[StoredMessage] = []
        if code == _CPullStatus.FOUND:
            for j in range(int(pulled.size)):
                msg = RecvMessage(pulled.msgFoundList[j])
                messages.append(
                    StoredMessage(
                        queue.queue_id,
                        int(msg.queue_offset),
                        (msg.keys or b"").decode("utf-8", "replace"),
                        bytes(msg.body or b""),
                    )
                )
        return PullBatch(status, tuple(messages), int(pulled.nextBeginOffset))
    finally:
        dll.ReleasePullResult(pulled)


def pull_every_queue(namesrv: str, topic: str, group: str, timeout_seconds: float) -> PullResult:
    """Every message in every queue of `topic` (as the nameservers route it), oldest first.

    Raises when the topic's queues cannot be fetched before the deadline; a deadline reached
    while reading returns what was read, with `is_complete` false.
    """
    deadline = time.monotonic() + timeout_seconds
    consumer = start_pull_consumer(namesrv, group)
    try:
        while True:
            try:
                queues = fetch_queues(consumer, topic)
                break
            except Exception:  # the ctypes client raises its own exception types
                if time.monotonic() > deadline:
                    raise
                time.sleep(_RETRY_SECONDS)
        found: list[StoredMessage] = []
        is_complete = True
        for queue in queues:
            offset = 0
            while True:
                if time.monotonic() > deadline:
                    is_complete = False
                    break
                batch = pull(consumer, queue, offset)
                found += batch.messages
                if batch.status == "NO_NEW_MSG":
                    break
                if batch.status == "BROKER_TIMEOUT":
                    time.sleep(_BROKER_TIMEOUT_PAUSE_SECONDS)
                    continue
                # OFFSET_ILLEGAL / NO_MATCHED_MSG that lead nowhere: this queue is done.
                if batch.next_offset <= offset and batch.status != "FOUND":
                    break
                offset = batch.next_offset
        return PullResult(tuple(found), len(queues), is_complete)
    finally:
        consumer.shutdown()
