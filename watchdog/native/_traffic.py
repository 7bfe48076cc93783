"""Client traffic children: the drill's producer, consumer and audit, the tests' probe producer,
and the parsers of the lines they print."""

# Each child prints one JSON line per send or delivery on stdout and flushes it, so the parent
# keeps every finished record even when it has to kill the child. The drill's children run until
# SIGTERM (the audit until it has read every queue); the probe producer for its duration.

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ..remoting import check_topic_name, parse_addr
from ._canary import CANARY_PRODUCER_GROUP
from ._pull import pull_every_queue
from ._spawn import (
    SigtermFlag,
    describe_exit,
    int_field,
    json_object,
    line_writer,
    number_field,
    run_child,
    stderr_tail,
)

__all__ = [
    "DRILL_CONSUMER_GROUP",
    "DRILL_PRODUCER_GROUP",
    "DRILL_SEND_INTERVAL_SECONDS",
    "ProbeReport",
    "ProbeSend",
    "ReceiveRecord",
    "SendRecord",
    "audit_child",
    "consume_child",
    "message_body",
    "parse_body",
    "parse_probe_output",
    "parse_receive_line",
    "parse_send_line",
    "probe_child",
    "produce_child",
    "send_probe_messages",
]

DRILL_PRODUCER_GROUP = "RMQ_WATCHDOG_DRILL_PG"
# One consumer group for every drill: it resumes at its committed offsets, so it never starts
# past the first message of a new run (a new group could start at the queue's end).
DRILL_CONSUMER_GROUP = "RMQ_WATCHDOG_DRILL_CG"
DRILL_SEND_INTERVAL_SECONDS = 0.1
_DRILL_SEND_TIMEOUT_MS = 1500
_BODY_PREFIX = "rmq-watchdog drill"
_PROBE_OUTPUT_CAP_BYTES = 8 * 1024 * 1024


# --------------------------------------------------------------------------- the drill's lines


@dataclass(frozen=True)
class SendRecord:
    """One send of the drill producer (wall-clock times)."""

    seq: int
    started_at: float
    ended_at: float
    is_ok: bool
    error: str | None = None
    msg_id: str | None = None


@dataclass(frozen=True)
class ReceiveRecord:
    """One delivery to the drill consumer (or one message the audit found stored)."""

    seq: int
    at: float
    msg_id: str = ""
    queue_id: int = -1
    queue_offset: int = -1


def message_body(run_id: str, seq: int) -> str:
    return f"{_BODY_PREFIX} {run_id} {seq}"


def parse_body(body: bytes | str) -> tuple[str, int] | None:
    """(run id, sequence number) of a drill message body; None for anything else."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    parts = text.split(" ")
    if len(parts) != 4 or " ".join(parts[:2]) != _BODY_PREFIX or not parts[3].isdigit():
        return None
    return parts[2], int(parts[3])


def parse_send_line(line: bytes | str) -> SendRecord | None:
    """One producer line, or None when it is not a send record."""
    doc = json_object(line)
    if doc is None:
        return None
    seq, started, ended, ok = (
        int_field(doc, "seq"),
        number_field(doc, "started_at"),
        number_field(doc, "ended_at"),
        doc.get("ok"),
    )
    if seq is None or started is None or ended is None or not isinstance(ok, bool):
        return None
    error, msg_id = doc.get("error"), doc.get("msg_id")
    return SendRecord(
        seq,
        started,
        ended,
        ok,
        error if isinstance(error, str) else None,
        msg_id if isinstance(msg_id, str) else None,
    )


def parse_receive_line(line: bytes | str) -> ReceiveRecord | None:
    """One consumer (or audit) line, or None when it is not a delivery record."""
    doc = json_object(line)
    if doc is None:
        return None
    seq, at = int_field(doc, "seq"), number_field(doc, "at")
    if seq is None or at is None:
        return None
    msg_id = doc.get("msg_id")
    queue_id, queue_offset = int_field(doc, "queue_id"), int_field(doc, "queue_offset")
    return ReceiveRecord(
        seq,
        at,
        msg_id if isinstance(msg_id, str) else "",
        -1 if queue_id is None else queue_id,
        -1 if queue_offset is None else queue_offset,
    )


# --------------------------------------------------------------------------- the drill's children


def produce_child(
    namesrv: str, topic: str, run_id: str, interval_seconds: float, out: IO[str]
) -> int:
    """Send one numbered message per interval until SIGTERM; one line per send."""
    from rocketmq.client import Message, Producer

    stop = SigtermFlag()
    emit = line_writer(out)
    producer = Producer(DRILL_PRODUCER_GROUP, timeout=_DRILL_SEND_TIMEOUT_MS)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    began = time.monotonic()
    seq = 0
    while not stop.is_set:
        seq += 1
        message = Message(topic)
        message.set_keys(f"{run_id}-{seq}")
        message.set_body(message_body(run_id, seq))
        started = time.time()
        try:
            result = producer.send_sync(message)
        except Exception as exc:  # the ctypes client raises its own exception types
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": False,
                  "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"})  # fmt: skip
        else:
            # Any send status means the broker stored it (SEND_OK or a replication warning).
            emit({"seq": seq, "started_at": started, "ended_at": time.time(), "ok": True,
                  "msg_id": str(result.msg_id), "status": int(result.status)})  # fmt: skip
        pause = seq * interval_seconds - (time.monotonic() - began)
        if pause > 0:
            time.sleep(pause)
    return 0


def consume_child(namesrv: str, topic: str, run_id: str, group: str, out: IO[str]) -> int:
    """Push-consume ``topic`` until SIGTERM; one line per delivery of this run's messages."""
    from rocketmq.client import PushConsumer

    stop = SigtermFlag()
    emit = line_writer(out)

    def on_message(msg: Any) -> None:
        parsed = parse_body(msg.body)
        if parsed is None or parsed[0] != run_id:
            return  # an earlier run's message
        emit({"seq": parsed[1], "at": time.time(), "msg_id": str(msg.id),
              "queue_id": int(msg.queue_id), "queue_offset": int(msg.queue_offset),
              "reconsume_times": int(msg.reconsume_times)})  # fmt: skip

    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    consumer.set_thread_count(1)
    consumer.subscribe(topic, on_message)
    consumer.start()
    while not stop.is_set:
        time.sleep(0.1)
    consumer.shutdown()  # commits the consumed offsets, so the next drill resumes after them
    return 0


def audit_child(namesrv: str, topic: str, run_id: str, timeout_seconds: float, out: IO[str]) -> int:
    """Pull every queue of the topic from its first offset: what the cluster still stores."""
    emit = line_writer(out)
    result = pull_every_queue(
        namesrv, topic, f"RMQ_WATCHDOG_DRILL_AUDIT_{os.getpid()}", timeout_seconds
    )
    for found in result.messages:
        parsed = parse_body(found.body)
        if parsed is not None and parsed[0] == run_id:
            emit({"seq": parsed[1], "at": time.time(), "queue_id": found.queue_id,
                  "queue_offset": found.queue_offset})  # fmt: skip
    if not result.is_complete:
        return 1  # out of time: no audit_done line
    emit({"audit_done": True, "queues": result.queues})
    return 0


# --------------------------------------------------------------------------- the probe producer


@dataclass(frozen=True)
class ProbeSend:
    """One send of the probe producer."""

    at_seconds: float  # when the send started, from the start of the probe
    is_ok: bool  # the broker acknowledged it (any send status: the message is stored)
    latency_seconds: float
    error: str | None = None
    msg_id: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class ProbeReport:
    """What a real producer saw while sending for a while, e.g. across a failover drill."""

    sends: tuple[ProbeSend, ...]
    duration_seconds: float
    error: str | None = None  # a problem of the producer itself (not starting, crash, killed)

    @property
    def ok_count(self) -> int:
        return sum(1 for s in self.sends if s.is_ok)

    @property
    def failed_count(self) -> int:
        return sum(1 for s in self.sends if not s.is_ok)

    @property
    def first_error(self) -> str | None:
        return next((s.error for s in self.sends if not s.is_ok), None)

    @property
    def longest_write_gap_seconds(self) -> float:
        """The longest time without an acknowledged write: from the start to the first ack,
        between two acks, or from the last ack to the end."""
        acks = [s.at_seconds + s.latency_seconds for s in self.sends if s.is_ok]
        marks = [0.0, *acks, max(self.duration_seconds, acks[-1] if acks else 0.0)]
        return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def _probe_send(doc: Mapping[str, Any]) -> ProbeSend | None:
    at, latency = number_field(doc, "at_seconds"), number_field(doc, "latency_seconds")
    ok = doc.get("ok")
    if not isinstance(ok, bool) or at is None or latency is None:
        return None
    text = {k: doc.get(k) if isinstance(doc.get(k), str) else None for k in ("error", "msg_id")}
    status = doc.get("status")
    return ProbeSend(
        at_seconds=at,
        is_ok=ok,
        latency_seconds=latency,
        error=text["error"],
        msg_id=text["msg_id"],
        status=status if isinstance(status, str) else None,
    )


def parse_probe_output(stdout: bytes | str) -> tuple[tuple[ProbeSend, ...], str | None]:
    """The probe child's lines: its sends, and its fatal error or the first garbage line."""
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    sends: list[ProbeSend] = []
    problem: str | None = None
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        doc = json_object(raw)
        if doc is not None and isinstance(doc.get("fatal"), str):
            problem = doc["fatal"]
            continue
        send = _probe_send(doc) if doc is not None else None
        if send is None:
            problem = problem or f"unreadable probe line: {raw[:80]!r}"
            continue
        sends.append(send)
    return tuple(sends), problem


async def send_probe_messages(
    namesrv_addrs: Sequence[str],
    topic: str,
    *,
    duration_seconds: float,
    interval_seconds: float = 0.2,
    command: Sequence[str] | None = None,
    kill_grace_seconds: float = 8.0,
) -> ProbeReport:
    """Send a message every ``interval_seconds`` for ``duration_seconds`` with the real client
    (in a child, like the canary) and report every send; never raises for the child's behaviour.

    A send that is still in progress at the end may take a few seconds (the client retries
    inside); the child is killed ``kill_grace_seconds`` after the duration.
    """
    if not namesrv_addrs:
        raise ValueError("send_probe_messages needs at least one nameserver address")
    for addr in namesrv_addrs:
        parse_addr(addr)
    check_topic_name(topic)
    timings = (("duration_seconds", duration_seconds), ("interval_seconds", interval_seconds))
    for name, value in timings:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number, got {value}")
    argv = list(command) if command else [sys.executable, "-m", "watchdog.native", "probe"]
    argv += [
        "--namesrv", ";".join(namesrv_addrs),
        "--topic", topic,
        "--probe-duration-seconds", f"{duration_seconds:.3f}",
        "--probe-interval-seconds", f"{interval_seconds:.3f}",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        run = await run_child(
            argv,
            kill_after_seconds=duration_seconds + kill_grace_seconds,
            cap_bytes=_PROBE_OUTPUT_CAP_BYTES,
        )
    except OSError as exc:
        elapsed = time.monotonic() - started
        return ProbeReport((), elapsed, error=f"cannot start the canary client: {exc}")
    elapsed = time.monotonic() - started
    sends, problem = parse_probe_output(run.stdout)
    error = problem
    if run.was_killed:
        waited = duration_seconds + kill_grace_seconds
        error = f"probe producer did not finish within {waited:.1f} s and was killed"
    elif run.code != 0:
        error = problem or f"probe producer failed ({describe_exit(run.code)})"
        tail = stderr_tail(run.stderr)
        if tail:
            error += f"; stderr: {tail}"
    return ProbeReport(sends=sends, duration_seconds=elapsed, error=error)


def probe_child(
    namesrv: str, topic: str, duration_seconds: float, interval_seconds: float, out: IO[str]
) -> int:
    """The probe verb: one message per interval until the duration is over; one line per send."""
    started = time.monotonic()
    emit = line_writer(out)
    try:
        from rocketmq.client import Message, Producer
    except Exception as exc:  # ImportError, or OSError when librocketmq.so cannot load
        emit({"fatal": f"rocketmq client unavailable: {exc}"})
        return 1
    # A short send timeout: the probe is there to see when writes fail, not to wait them out.
    producer = Producer(CANARY_PRODUCER_GROUP, timeout=1500)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    number = 0
    while (now := time.monotonic()) - started < duration_seconds:
        number += 1
        message = Message(topic)
        message.set_keys(f"probe-{number}")
        message.set_body(f"rmq-watchdog probe {number}")
        at = now - started
        try:
            result = producer.send_sync(message)
        except Exception as exc:  # the ctypes client raises its own exception types
            error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            latency = time.monotonic() - now
            emit({"at_seconds": round(at, 4), "ok": False, "latency_seconds": round(latency, 4),
                  "error": error})  # fmt: skip
        else:
            latency = time.monotonic() - now
            status = "SEND_OK" if int(result.status) == 0 else str(result.status.name)
            emit({"at_seconds": round(at, 4), "ok": True, "latency_seconds": round(latency, 4),
                  "msg_id": str(result.msg_id), "offset": int(result.offset),
                  "status": status})  # fmt: skip
        pause = number * interval_seconds - (time.monotonic() - started)
        if pause > 0:
            time.sleep(min(pause, max(0.0, duration_seconds - (time.monotonic() - started))))
    return 0
