"""The canary's client child: one real message sent through a group and read back, and the parent's
reading of what the child printed."""

# Why pull from the send offset: a fresh consumer group starting from the last offset would skip
# a message that is already there; pulling the queue at the offset the send returned reads
# exactly the message that was sent, however many canaries ran before.
#
# The child prints one JSON result line on stdout, and progress events (send_attempt, sent) as
# JSON lines on stderr, so that a parent that has to kill it still learns how far it got.

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from ..model import AclCredentials, WatchdogError
from ._credentials import credentials_line, sign_client
from ._pull import fetch_queues, pull, start_pull_consumer
from ._spawn import (
    describe_exit,
    last_event,
    line_writer,
    run_child,
    stderr_tail,
)

__all__ = [
    "CANARY_PRODUCER_GROUP",
    "CanaryOutputError",
    "ClientOutcome",
    "canary_child",
    "client_argv",
    "parse_client_output",
    "run_canary_client",
]

CANARY_PRODUCER_GROUP = "RMQ_WATCHDOG_CANARY_PG"
_CONSUMER_GROUP = "RMQ_WATCHDOG_CANARY_CG"
_OUTPUT_CAP_BYTES = 64 * 1024
_SEND_RETRY_PAUSE_SECONDS = 0.2
_PULL_RETRY_PAUSE_SECONDS = 0.1


class CanaryOutputError(WatchdogError, ValueError):
    """The canary client's output is not a result line."""


@dataclass(frozen=True)
class ClientOutcome:
    """What the canary client did: the child's JSON line, or what the parent saw of it."""

    is_ok: bool
    error: str | None = None
    sent_msg_id: str | None = None
    send_offset: int | None = None
    send_status: str | None = None
    send_attempts: int = 0
    is_received: bool = False
    queue_id: int | None = None
    received_broker_name: str | None = None
    send_latency_seconds: float | None = None
    roundtrip_seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.is_ok,
                "sent_msg_id": self.sent_msg_id,
                "send_offset": self.send_offset,
                "send_status": self.send_status,
                "send_attempts": self.send_attempts,
                "received": self.is_received,
                "queue_id": self.queue_id,
                "received_broker_name": self.received_broker_name,
                "send_latency_seconds": self.send_latency_seconds,
                "roundtrip_seconds": self.roundtrip_seconds,
                "error": self.error,
            },
            separators=(",", ":"),
        )


# --------------------------------------------------------------------------- parsing the child


def _field(doc: Mapping[str, Any], name: str, kinds: tuple[type, ...], *, required: bool) -> Any:
    if name not in doc or doc[name] is None:
        if required:
            raise CanaryOutputError(f"result line has no {name!r}")
        return None
    value = doc[name]
    is_bool = isinstance(value, bool)
    if (is_bool and bool not in kinds) or not isinstance(value, kinds):
        raise CanaryOutputError(f"result field {name!r} has the wrong type: {value!r:.60}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CanaryOutputError(f"result field {name!r} is not a finite number: {value!r}")
    return value


def _parse_line(line: str) -> ClientOutcome:
    try:
        doc = json.loads(line)
    except ValueError:
        raise CanaryOutputError(f"not JSON: {line[:80]!r}") from None
    if not isinstance(doc, dict):
        raise CanaryOutputError(f"not a JSON object: {line[:80]!r}")
    number = (int, float)
    latency = _field(doc, "send_latency_seconds", number, required=False)
    roundtrip = _field(doc, "roundtrip_seconds", number, required=False)
    return ClientOutcome(
        is_ok=_field(doc, "ok", (bool,), required=True),
        error=_field(doc, "error", (str,), required=False),
        sent_msg_id=_field(doc, "sent_msg_id", (str,), required=False),
        send_offset=_field(doc, "send_offset", (int,), required=False),
        send_status=_field(doc, "send_status", (str,), required=False),
        send_attempts=_field(doc, "send_attempts", (int,), required=False) or 0,
        is_received=_field(doc, "received", (bool,), required=True),
        queue_id=_field(doc, "queue_id", (int,), required=False),
        received_broker_name=_field(doc, "received_broker_name", (str,), required=False),
        send_latency_seconds=None if latency is None else float(latency),
        roundtrip_seconds=None if roundtrip is None else float(roundtrip),
    )


def parse_client_output(stdout: bytes | str) -> ClientOutcome:
    """The result in the child's stdout: its last non-blank line, a JSON object.

    CanaryOutputError says what is wrong (nothing printed, not JSON, a field missing or of the
    wrong type). An ok result must also say the message was received, with its id and offset.
    """
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise CanaryOutputError("no output")
    outcome = _parse_line(lines[-1])
    if outcome.is_ok and not (
        outcome.is_received and outcome.sent_msg_id and outcome.send_offset is not None
    ):
        raise CanaryOutputError("result says ok without a received message id and offset")
    return outcome


# --------------------------------------------------------------------------- running the child


def client_argv(
    namesrv_addrs: Sequence[str],
    topic: str,
    *,
    timeout_seconds: float,
    expect_broker_name: str | None = None,
    command: Sequence[str] | None = None,
    with_credentials: bool = False,
) -> list[str]:
    """The child's command line: ``command`` (default: this Python, -m watchdog.native canary)
    + args; ``with_credentials``: it reads its ACL account from stdin."""
    argv = list(command) if command else [sys.executable, "-m", "watchdog.native", "canary"]
    argv += [
        "--namesrv", ";".join(namesrv_addrs),
        "--topic", topic,
        "--timeout-seconds", f"{timeout_seconds:.3f}",
        "--json",
    ]  # fmt: skip
    if expect_broker_name:
        argv += ["--expect-broker-name", expect_broker_name]
    if with_credentials:
        argv.append("--credentials-stdin")
    return argv


async def run_canary_client(
    namesrv_addrs: Sequence[str],
    topic: str,
    *,
    timeout_seconds: float,
    expect_broker_name: str | None = None,
    command: Sequence[str] | None = None,
    kill_grace_seconds: float | None = None,
    credentials: AclCredentials | None = None,
) -> ClientOutcome:
    """Run the canary client in a child process and return what it did; never raises for the
    child's behaviour (hang, crash, garbage): those come back as a not-ok outcome.

    The child works until ``timeout_seconds``; the parent kills it ``kill_grace_seconds`` later
    (default: a fifth of the timeout, at most 2 s) and reaps it. With ``credentials`` (the
    brokers' ACL account) the child signs its requests; they reach it on its stdin.
    """
    if timeout_seconds <= 0:
        raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
    grace = min(2.0, timeout_seconds / 5) if kill_grace_seconds is None else kill_grace_seconds
    argv = client_argv(
        namesrv_addrs,
        topic,
        timeout_seconds=timeout_seconds,
        expect_broker_name=expect_broker_name,
        command=command,
        with_credentials=credentials is not None,
    )
    try:
        run = await run_child(
            argv,
            kill_after_seconds=timeout_seconds + grace,
            cap_bytes=_OUTPUT_CAP_BYTES,
            stdin_data=None if credentials is None else credentials_line(credentials),
        )
    except OSError as exc:
        return ClientOutcome(is_ok=False, error=f"cannot start the canary client: {exc}")
    return _outcome(run.code, run.stdout, run.stderr, run.was_killed, timeout_seconds + grace)


def _outcome(
    code: int | None, stdout: bytes, stderr: bytes, was_killed: bool, waited_seconds: float
) -> ClientOutcome:
    try:
        outcome = parse_client_output(stdout)
    except CanaryOutputError as exc:
        problem = str(exc)
    else:
        # A complete result line counts even if the child then hung in shutdown and was killed.
        return outcome
    sent = last_event(stderr, "sent")
    attempt = last_event(stderr, "send_attempt")
    if was_killed:
        error = f"canary client did not finish within {waited_seconds:.1f} s and was killed"
        if sent is None and attempt is not None:
            error += f" while send attempt {attempt.get('attempt')} was in progress"
        elif sent is not None:
            error += " while reading its message back"
    else:
        error = f"canary client gave no usable result ({problem}; {describe_exit(code)})"
    tail = stderr_tail(stderr)
    if tail:
        error += f"; stderr: {tail}"
    if sent is None:
        return ClientOutcome(is_ok=False, error=error)
    msg_id = sent.get("msg_id")
    offset = sent.get("offset")
    latency = sent.get("send_latency_seconds")
    return ClientOutcome(
        is_ok=False,
        error=error,
        sent_msg_id=msg_id if isinstance(msg_id, str) else None,
        send_offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
        send_latency_seconds=float(latency) if isinstance(latency, int | float) else None,
    )


# --------------------------------------------------------------------------- the child


def _round_trip(
    namesrv: str,
    topic: str,
    expect_broker_name: str | None,
    timeout_seconds: float,
    credentials: AclCredentials | None,
) -> ClientOutcome:
    """Send one message with the real client (retrying until the deadline) and pull it back."""
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        from rocketmq.client import Message, Producer
    except Exception as exc:  # ImportError, or OSError when librocketmq.so cannot load
        return ClientOutcome(is_ok=False, error=f"rocketmq client unavailable: {exc}")

    progress = line_writer(sys.stderr)
    token = uuid.uuid4().hex
    producer = Producer(CANARY_PRODUCER_GROUP)
    producer.set_namesrv_addr(namesrv)
    sign_client(producer, credentials)
    producer.start()
    attempts = 0
    last_error = "no attempt made"
    send_result: Any = None
    send_started = time.monotonic()
    while time.monotonic() < deadline:
        attempts += 1
        # A sync send may take up to three times its timeout (the client retries inside), so
        # each attempt gets a third of what is left, between 0.3 s and 3 s.
        remaining_ms = (deadline - time.monotonic()) * 1000
        producer.set_timeout(int(max(300, min(3000, remaining_ms / 3))))
        progress({"event": "send_attempt", "attempt": attempts})
        message = Message(topic)
        message.set_keys(token)
        message.set_body(f"rmq-watchdog canary {token}")
        send_started = time.monotonic()
        try:
            send_result = producer.send_sync(message)
        except Exception as exc:  # the ctypes client raises its own exception types
            last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            # The route may be stale for a moment after a promotion: try again.
            time.sleep(min(_SEND_RETRY_PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))
            continue
        break
    if send_result is None:
        return ClientOutcome(is_ok=False, error=last_error, send_attempts=attempts)
    send_latency = time.monotonic() - send_started
    msg_id = str(send_result.msg_id)
    send_offset = int(send_result.offset)
    send_status = "SEND_OK" if int(send_result.status) == 0 else str(send_result.status.name)
    progress(
        {
            "event": "sent",
            "msg_id": msg_id,
            "offset": send_offset,
            "send_latency_seconds": round(send_latency, 4),
        }
    )
    sent = ClientOutcome(
        is_ok=False,
        sent_msg_id=msg_id,
        send_offset=send_offset,
        send_status=send_status,
        send_attempts=attempts,
        send_latency_seconds=round(send_latency, 4),
    )

    consumer = start_pull_consumer(namesrv, _CONSUMER_GROUP, credentials)
    last_error = "message not found in any queue"
    while time.monotonic() < deadline:
        try:
            queues = fetch_queues(consumer, topic)
        except Exception as exc:
            last_error = f"cannot fetch queues: {type(exc).__name__}: {str(exc).strip()[:300]}"
            time.sleep(_PULL_RETRY_PAUSE_SECONDS)
            continue
        for queue in queues:
            # The message sits at send_offset in the queue it went to; other queues either
            # have nothing there or other messages, which the token tells apart.
            batch = pull(consumer, queue, send_offset)
            if not any(m.keys == token for m in batch.messages):
                continue
            is_expected = expect_broker_name in (None, queue.broker_name)
            return replace(
                sent,
                is_ok=is_expected,
                error=None
                if is_expected
                else f"message landed on {queue.broker_name}, not {expect_broker_name}",
                is_received=True,
                queue_id=queue.queue_id,
                received_broker_name=queue.broker_name,
                roundtrip_seconds=round(time.monotonic() - send_started, 4),
            )
        time.sleep(_PULL_RETRY_PAUSE_SECONDS)
    return replace(sent, error=last_error)


def canary_child(
    namesrv: str,
    topic: str,
    *,
    timeout_seconds: float,
    expect_broker_name: str | None,
    as_json: bool,
    problem: str | None,
    out: IO[str],
    credentials: AclCredentials | None = None,
) -> int:
    """The canary verb: one round trip (or, with ``problem``, none), one result line on ``out``;
    0 if ok else 1."""
    if problem is not None:
        outcome = ClientOutcome(is_ok=False, error=problem)
    else:
        outcome = _round_trip(namesrv, topic, expect_broker_name, timeout_seconds, credentials)
    if as_json:
        out.write(outcome.to_json() + "\n")
    elif outcome.is_ok:
        out.write(
            f"ok: message {outcome.sent_msg_id} sent (queue {outcome.queue_id}, offset "
            f"{outcome.send_offset}) and read back from {outcome.received_broker_name} in "
            f"{outcome.roundtrip_seconds} s\n"
        )
    else:
        out.write(f"failed: {outcome.error}\n")
    return 0 if outcome.is_ok else 1
