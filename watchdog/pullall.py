"""Read back every message a topic stores, with the real client, from each queue's first offset."""

# librocketmq is C++ behind ctypes: call this only inside a child process the caller can kill
# (the drill's audit, the tests' and benchmarks' client children), never in the daemon.

from __future__ import annotations

import time
from dataclasses import dataclass

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


def pull_every_queue(namesrv: str, topic: str, group: str, timeout_seconds: float) -> PullResult:
    """Every message in every queue of `topic` (as the nameservers route it), oldest first.

    Raises when the topic's queues cannot be fetched before the deadline; a deadline reached
    while reading returns what was read, with `is_complete` false.
    """
    import ctypes

    from rocketmq.client import PullConsumer, RecvMessage
    from rocketmq.exceptions import ffi_check
    from rocketmq.ffi import _CMessageQueue, _CPullStatus, dll

    deadline = time.monotonic() + timeout_seconds
    consumer = PullConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    consumer.start()
    queues = ctypes.POINTER(_CMessageQueue)()
    count = ctypes.c_int()
    try:
        while True:
            try:
                ffi_check(dll.FetchSubscriptionMessageQueues(
                    consumer._handle, topic.encode(), ctypes.pointer(queues),
                    ctypes.pointer(count),
                ))  # fmt: skip
                break
            except Exception:  # the ctypes client raises its own exception types
                if time.monotonic() > deadline:
                    raise
                time.sleep(_RETRY_SECONDS)
        found: list[StoredMessage] = []
        is_complete = True
        try:
            for i in range(int(count.value)):
                queue = queues[i]
                offset = 0
                while True:
                    if time.monotonic() > deadline:
                        is_complete = False
                        break
                    pulled = dll.Pull(consumer._handle, ctypes.pointer(queue), b"*", offset, _BATCH)
                    try:
                        status = pulled.pullStatus
                        if status == _CPullStatus.FOUND:
                            for j in range(int(pulled.size)):
                                msg = RecvMessage(pulled.msgFoundList[j])
                                found.append(
                                    StoredMessage(
                                        int(queue.queueId),
                                        int(msg.queue_offset),
                                        (msg.keys or b"").decode("utf-8", "replace"),
                                        bytes(msg.body or b""),
                                    )
                                )
                        if status == _CPullStatus.NO_NEW_MSG:
                            break
                        if status == _CPullStatus.BROKER_TIMEOUT:
                            time.sleep(_BROKER_TIMEOUT_PAUSE_SECONDS)
                            continue
                        next_offset = int(pulled.nextBeginOffset)
                        # OFFSET_ILLEGAL / NO_MATCHED_MSG that lead nowhere: this queue is done.
                        if next_offset <= offset and status != _CPullStatus.FOUND:
                            break
                        offset = next_offset
                    finally:
                        dll.ReleasePullResult(pulled)
        finally:
            dll.ReleaseSubscriptionMessageQueue(queues)
        return PullResult(tuple(found), int(count.value), is_complete)
    finally:
        consumer.shutdown()
