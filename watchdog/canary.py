"""The failover canary: a real RocketMQ client writes through one broker group and reads it back."""

# Why a subprocess: the client is librocketmq (C++ through ctypes). A hung or crashing native
# call must never hang or kill the daemon, so the client runs in `python -m watchdog.canary`,
# which prints one JSON line, and the parent kills it when its time is up.
#
# Why a topic of its own: with several broker groups a plain send may land on any of them. The
# canary topic is created on the one broker under test (UPDATE_AND_CREATE_TOPIC); the broker then
# re-registers at once, so the route points at that group only. The parent waits until every
# answering nameserver shows that route before the client starts, and afterwards checks, over
# its own remoting connection, that the broker's queue really grew past the send offset.
#
# Why pull from the send offset: a fresh consumer group starting from the last offset would skip
# a message that is already there; pulling the queue at the offset the send returned reads
# exactly the message that was sent, however many canaries ran before.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol

from .model import WatchdogError
from .remoting import (
    RemoteError,
    RemotingError,
    Requester,
    ResponseCode,
    TopicRoute,
    check_topic_name,
    create_topic,
    get_max_offset,
    get_topic_route,
    parse_addr,
)

__all__ = [
    "CANARY_TOPIC_PREFIX",
    "CanaryOutputError",
    "CanaryResult",
    "ClientOutcome",
    "ClientSource",
    "ProbeReport",
    "ProbeSend",
    "canary_topic",
    "client_argv",
    "main",
    "parse_client_output",
    "parse_probe_output",
    "run_canary",
    "run_canary_client",
    "send_probe_messages",
]

CANARY_TOPIC_PREFIX = "RMQ_WATCHDOG_CANARY_"
PRODUCER_GROUP = "RMQ_WATCHDOG_CANARY_PG"
CONSUMER_GROUP = "RMQ_WATCHDOG_CANARY_CG"

# Output read from the child is capped: a runaway child must not fill the daemon's memory.
_OUTPUT_CAP_BYTES = 64 * 1024
_PROBE_OUTPUT_CAP_BYTES = 8 * 1024 * 1024
_REQUEST_TIMEOUT_SECONDS = 2.0
_ROUTE_POLL_SECONDS = 0.1
_SEND_RETRY_PAUSE_SECONDS = 0.2
_PULL_RETRY_PAUSE_SECONDS = 0.1


class ClientSource(Protocol):
    """Where run_canary gets its remoting clients (a ClientPool)."""

    def get(self, addr: str) -> Requester: ...


class CanaryOutputError(WatchdogError, ValueError):
    """The canary client's output is not a result line."""


def canary_topic(broker_name: str) -> str:
    """The canary topic of one broker group, e.g. RMQ_WATCHDOG_CANARY_broker-a."""
    return check_topic_name(CANARY_TOPIC_PREFIX + broker_name)


# --------------------------------------------------------------------------- values


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


@dataclass(frozen=True)
class CanaryResult:
    """The verdict on one broker: did a real client's message go through it and come back?"""

    is_ok: bool
    detail: str  # one sentence, for logs and the failover report
    broker_name: str
    broker_addr: str
    topic: str
    msg_id: str | None = None
    send_latency_seconds: float | None = None
    roundtrip_seconds: float | None = None
    duration_seconds: float = 0.0  # topic creation + route wait + client, as the caller waited


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


def _last_event(stderr: bytes, name: str) -> Mapping[str, Any] | None:
    """The child's last progress event ``name`` (a JSON line on stderr), if it got that far."""
    for raw in reversed(stderr.decode("utf-8", "replace").splitlines()):
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            doc = json.loads(raw)
            if isinstance(doc, dict) and doc.get("event") == name:
                return doc
    return None


def _stderr_tail(stderr: bytes, limit: int = 200) -> str:
    lines = [
        line
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and '"event"' not in line
    ]
    tail = " | ".join(lines[-3:])
    return tail if len(tail) <= limit else "..." + tail[-limit:]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


# --------------------------------------------------------------------------- running the child


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()  # reap it: nothing else on this machine will


def client_argv(
    namesrv_addrs: Sequence[str],
    topic: str,
    *,
    timeout_seconds: float,
    expect_broker_name: str | None = None,
    command: Sequence[str] | None = None,
) -> list[str]:
    """The child's command line: ``command`` (default: this Python, -m watchdog.canary) + args."""
    argv = list(command) if command else [sys.executable, "-m", "watchdog.canary"]
    argv += [
        "--namesrv", ";".join(namesrv_addrs),
        "--topic", topic,
        "--timeout-seconds", f"{timeout_seconds:.3f}",
        "--json",
    ]  # fmt: skip
    if expect_broker_name:
        argv += ["--expect-broker-name", expect_broker_name]
    return argv


async def run_canary_client(
    namesrv_addrs: Sequence[str],
    topic: str,
    *,
    timeout_seconds: float,
    expect_broker_name: str | None = None,
    command: Sequence[str] | None = None,
    kill_grace_seconds: float | None = None,
) -> ClientOutcome:
    """Run the canary client in a child process and return what it did; never raises for the
    child's behaviour (hang, crash, garbage): those come back as a not-ok outcome.

    The child works until ``timeout_seconds``; the parent kills it ``kill_grace_seconds`` later
    (default: a fifth of the timeout, at most 2 s) and reaps it.
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
    )
    run = await _run_child(argv, timeout_seconds + grace, _OUTPUT_CAP_BYTES)
    if isinstance(run, str):
        return ClientOutcome(is_ok=False, error=run)
    return _outcome(run.code, run.stdout, run.stderr, run.was_killed, timeout_seconds + grace)


@dataclass(frozen=True)
class _ChildRun:
    code: int | None
    stdout: bytes
    stderr: bytes
    was_killed: bool


async def _run_child(argv: Sequence[str], kill_after_seconds: float, cap: int) -> _ChildRun | str:
    """Run ``argv``, kill it after ``kill_after_seconds``, reap it; a string says it never ran."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"cannot start the canary client: {exc}"
    was_killed = False
    readers = asyncio.gather(_read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap))
    try:
        try:
            await asyncio.wait_for(proc.wait(), kill_after_seconds)
        except TimeoutError:
            was_killed = True
            await _kill(proc)
        stdout, stderr = await readers
    finally:
        await _kill(proc)  # also when the caller is cancelled
        if not readers.done():
            readers.cancel()
    return _ChildRun(proc.returncode, stdout, stderr, was_killed)


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
    sent = _last_event(stderr, "sent")
    attempt = _last_event(stderr, "send_attempt")
    if was_killed:
        error = f"canary client did not finish within {waited_seconds:.1f} s and was killed"
        if sent is None and attempt is not None:
            error += f" while send attempt {attempt.get('attempt')} was in progress"
        elif sent is not None:
            error += " while reading its message back"
    else:
        error = f"canary client gave no usable result ({problem}; {_describe_exit(code)})"
    tail = _stderr_tail(stderr)
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


# --------------------------------------------------------------------------- the whole canary


def _route_problem(route: TopicRoute, broker_name: str, broker_addr: str) -> str | None:
    """Why ``route`` does not (yet) send writes to broker_name at broker_addr; None if it does."""
    addrs = route.broker_addrs.get(broker_name)
    if not addrs:
        shown = ", ".join(sorted(route.broker_addrs)) or "no broker"
        return f"it lists {shown}"
    if addrs.get(0) != broker_addr:
        master = addrs.get(0)
        return f"its master (id 0) is {master}" if master else "it has no master (id 0)"
    queues = [q for q in route.queue_datas if q.broker_name == broker_name]
    if not queues:
        return "it has no queues on it"
    if not any(q.is_writable and q.write_queue_nums > 0 for q in queues):
        return "its queues there are not writable"
    return None


async def _route_round(
    pool: ClientSource,
    namesrv_addrs: Sequence[str],
    topic: str,
    broker_name: str,
    broker_addr: str,
    timeout_seconds: float,
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """One query of every nameserver: (problems of those that answered, errors of those that
    did not, addresses that show the route right)."""

    async def one(addr: str) -> tuple[str, str | None, str | None]:
        try:
            route = await get_topic_route(pool.get(addr), topic, timeout_seconds=timeout_seconds)
        except RemoteError as exc:
            if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                return addr, "it has no route for the topic yet", None
            return addr, None, str(exc)
        except RemotingError as exc:
            return addr, None, str(exc)
        return addr, _route_problem(route, broker_name, broker_addr), None

    problems: dict[str, str] = {}
    silent: dict[str, str] = {}
    good: list[str] = []
    for addr, problem, error in await asyncio.gather(*(one(a) for a in namesrv_addrs)):
        if error is not None:
            silent[addr] = error
        elif problem is not None:
            problems[addr] = problem
        else:
            good.append(addr)
    return problems, silent, good


async def _wait_for_route(
    pool: ClientSource,
    namesrv_addrs: Sequence[str],
    topic: str,
    broker_name: str,
    broker_addr: str,
    deadline: float,
    clock: Callable[[], float],
    budget_seconds: float,
) -> str | None:
    """Wait until every answering nameserver routes ``topic`` to broker_name at broker_addr;
    None when it does, else the sentence saying which nameserver never did."""
    while True:
        remaining = deadline - clock()
        problems, silent, good = await _route_round(
            pool,
            namesrv_addrs,
            topic,
            broker_name,
            broker_addr,
            max(0.05, min(_REQUEST_TIMEOUT_SECONDS, remaining)),
        )
        if good and not problems:
            return None
        if clock() + _ROUTE_POLL_SECONDS >= deadline:
            break
        await asyncio.sleep(_ROUTE_POLL_SECONDS)
    if problems:
        parts = [f"{addr} ({why})" for addr, why in sorted(problems.items())]
        return (
            f"route of {topic} never showed {broker_name} at {broker_addr} as master on "
            f"{', '.join(parts)} within {budget_seconds:g} s"
        )
    parts = [f"{addr}: {err}" for addr, err in sorted(silent.items())]
    return (
        f"no nameserver answered a route query for {topic} within {budget_seconds:g} s "
        f"({'; '.join(parts)})"
    )


async def run_canary(
    namesrv_addrs: Sequence[str],
    broker_addr: str,
    broker_name: str,
    *,
    topic: str,
    timeout_seconds: float,
    pool: ClientSource,
    client_command: Sequence[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CanaryResult:
    """Prove that broker ``broker_name`` at ``broker_addr`` takes a real client's write and
    serves it back, within ``timeout_seconds`` in all.

    1. create ``topic`` on broker_addr only (idempotent; a slave refuses);
    2. wait until every answering nameserver routes the topic to broker_name with broker_addr as
       its master (id 0);
    3. run the client child: send (retried until its timeout), then pull from the send offset
       until the message is back;
    4. check over remoting that broker_addr's queue grew past the send offset.

    Bad arguments raise ValueError; every cluster or client failure is a not-ok result whose
    detail says which step failed.
    """
    if not namesrv_addrs:
        raise ValueError("run_canary needs at least one nameserver address")
    for addr in (*namesrv_addrs, broker_addr):
        parse_addr(addr)
    check_topic_name(topic)
    if not broker_name:
        raise ValueError("broker_name is empty")
    if not timeout_seconds > 0 or not math.isfinite(timeout_seconds):
        raise ValueError(f"timeout_seconds must be a positive number, got {timeout_seconds}")

    started = clock()
    deadline = started + timeout_seconds

    def result(is_ok: bool, detail: str, outcome: ClientOutcome | None = None) -> CanaryResult:
        return CanaryResult(
            is_ok=is_ok,
            detail=detail,
            broker_name=broker_name,
            broker_addr=broker_addr,
            topic=topic,
            msg_id=outcome.sent_msg_id if outcome else None,
            send_latency_seconds=outcome.send_latency_seconds if outcome else None,
            roundtrip_seconds=outcome.roundtrip_seconds if outcome else None,
            duration_seconds=clock() - started,
        )

    broker = pool.get(broker_addr)
    try:
        await create_topic(
            broker,
            topic,
            timeout_seconds=min(_REQUEST_TIMEOUT_SECONDS, timeout_seconds),
        )
    except RemotingError as exc:
        return result(False, f"cannot create canary topic {topic} on {broker_addr}: {exc}")

    problem = await _wait_for_route(
        pool, namesrv_addrs, topic, broker_name, broker_addr, deadline, clock, timeout_seconds
    )
    if problem is not None:
        return result(False, problem)

    remaining = deadline - clock()
    if remaining <= 0.5:
        return result(False, f"no time left for the client after {timeout_seconds:g} s")
    # The child works until its own deadline; the parent kills it at the overall deadline.
    grace = min(2.0, remaining / 5)
    outcome = await run_canary_client(
        namesrv_addrs,
        topic,
        timeout_seconds=remaining - grace,
        expect_broker_name=broker_name,
        command=client_command,
        kill_grace_seconds=grace,
    )
    if not outcome.is_ok:
        return result(False, _failure_detail(outcome, remaining - grace), outcome)
    if outcome.received_broker_name not in (None, broker_name):
        return result(
            False,
            f"message {outcome.sent_msg_id} landed on {outcome.received_broker_name}, "
            f"not {broker_name}",
            outcome,
        )
    is_ok, detail = await _confirm_on_broker(
        broker,
        broker_name,
        broker_addr,
        topic,
        outcome,
        max(0.2, min(_REQUEST_TIMEOUT_SECONDS, deadline - clock())),
    )
    return result(is_ok, detail, outcome)


def _failure_detail(outcome: ClientOutcome, client_seconds: float) -> str:
    error = outcome.error or "no reason given"
    if outcome.sent_msg_id is None:
        return f"send failed: {error}"
    if outcome.is_received:
        return f"message {outcome.sent_msg_id} came back, but {error}"
    return (
        f"message {outcome.sent_msg_id} sent but not received within {client_seconds:.1f} s: "
        f"{error}"
    )


async def _confirm_on_broker(
    broker: Requester,
    broker_name: str,
    broker_addr: str,
    topic: str,
    outcome: ClientOutcome,
    timeout_seconds: float,
) -> tuple[bool, str]:
    """The client saw its message come back; check it sits in broker_addr's own queue."""
    assert outcome.send_offset is not None
    queue_id = outcome.queue_id if outcome.queue_id is not None else 0
    try:
        max_offset = await get_max_offset(broker, topic, queue_id, timeout_seconds=timeout_seconds)
    except RemotingError as exc:
        return False, (
            f"message {outcome.sent_msg_id} came back, but {broker_addr} did not confirm its "
            f"queue offset: {exc}"
        )
    if max_offset <= outcome.send_offset:
        return False, (
            f"message {outcome.sent_msg_id} came back at queue offset {outcome.send_offset}, but "
            f"queue {queue_id} of {topic} on {broker_addr} ends at {max_offset}: another broker "
            f"serves {broker_name}"
        )
    status = ""
    if outcome.send_status not in (None, "SEND_OK"):
        status = f" (send status {outcome.send_status}: stored, replication not confirmed)"
    return True, (
        f"canary message {outcome.sent_msg_id} written to {broker_name} at {broker_addr} "
        f"(queue {queue_id}, offset {outcome.send_offset}) and read back{status}; "
        f"send {outcome.send_latency_seconds or 0.0:.2f} s, "
        f"round trip {outcome.roundtrip_seconds or 0.0:.2f} s"
    )


# --------------------------------------------------------------------------- probe producer


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
    at, latency, ok = doc.get("at_seconds"), doc.get("latency_seconds"), doc.get("ok")
    if not isinstance(ok, bool) or isinstance(at, bool) or isinstance(latency, bool):
        return None
    if not isinstance(at, int | float) or not isinstance(latency, int | float):
        return None
    if not (math.isfinite(at) and math.isfinite(latency)):
        return None
    text = {k: doc.get(k) if isinstance(doc.get(k), str) else None for k in ("error", "msg_id")}
    status = doc.get("status")
    return ProbeSend(
        at_seconds=float(at),
        is_ok=ok,
        latency_seconds=float(latency),
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
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("fatal"), str):
            problem = doc["fatal"]
            continue
        send = _probe_send(doc) if isinstance(doc, dict) else None
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
    argv = list(command) if command else [sys.executable, "-m", "watchdog.canary"]
    argv += [
        "--namesrv", ";".join(namesrv_addrs),
        "--topic", topic,
        "--probe-duration-seconds", f"{duration_seconds:.3f}",
        "--probe-interval-seconds", f"{interval_seconds:.3f}",
    ]  # fmt: skip
    started = time.monotonic()
    run = await _run_child(argv, duration_seconds + kill_grace_seconds, _PROBE_OUTPUT_CAP_BYTES)
    elapsed = time.monotonic() - started
    if isinstance(run, str):
        return ProbeReport(sends=(), duration_seconds=elapsed, error=run)
    sends, problem = parse_probe_output(run.stdout)
    error = problem
    if run.was_killed:
        waited = duration_seconds + kill_grace_seconds
        error = f"probe producer did not finish within {waited:.1f} s and was killed"
    elif run.code != 0:
        error = problem or f"probe producer failed ({_describe_exit(run.code)})"
        tail = _stderr_tail(run.stderr)
        if tail:
            error += f"; stderr: {tail}"
    return ProbeReport(sends=sends, duration_seconds=elapsed, error=error)


# --------------------------------------------------------------------------- the child


def _emit_event(event: Mapping[str, Any]) -> None:
    # Progress goes to stderr, so a parent that has to kill the child still learns how far it got.
    sys.stderr.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stderr.flush()


def _round_trip(
    namesrv: str, topic: str, expect_broker_name: str | None, timeout_seconds: float
) -> ClientOutcome:
    """Send one message with the real client (retrying until the deadline) and pull it back."""
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        import ctypes

        from rocketmq.client import Message, Producer, PullConsumer, RecvMessage
        from rocketmq.exceptions import ffi_check
        from rocketmq.ffi import _CMessageQueue, _CPullStatus, dll
    except Exception as exc:  # ImportError, or OSError when librocketmq.so cannot load
        return ClientOutcome(is_ok=False, error=f"rocketmq client unavailable: {exc}")

    token = uuid.uuid4().hex
    producer = Producer(PRODUCER_GROUP)
    producer.set_namesrv_addr(namesrv)
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
        _emit_event({"event": "send_attempt", "attempt": attempts})
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
    _emit_event(
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

    consumer = PullConsumer(CONSUMER_GROUP)
    consumer.set_namesrv_addr(namesrv)
    consumer.start()
    last_error = "message not found in any queue"
    while time.monotonic() < deadline:
        queues = ctypes.POINTER(_CMessageQueue)()
        count = ctypes.c_int()
        try:
            ffi_check(
                dll.FetchSubscriptionMessageQueues(
                    consumer._handle, topic.encode(), ctypes.pointer(queues), ctypes.pointer(count)
                )
            )
        except Exception as exc:
            last_error = f"cannot fetch queues: {type(exc).__name__}: {str(exc).strip()[:300]}"
            time.sleep(_PULL_RETRY_PAUSE_SECONDS)
            continue
        try:
            for i in range(int(count.value)):
                queue = queues[i]
                # The message sits at send_offset in the queue it went to; other queues either
                # have nothing there or other messages, which the token tells apart.
                pulled = dll.Pull(consumer._handle, ctypes.pointer(queue), b"*", send_offset, 32)
                try:
                    if pulled.pullStatus != _CPullStatus.FOUND:
                        continue
                    for j in range(int(pulled.size)):
                        found = RecvMessage(pulled.msgFoundList[j])
                        if found.keys != token.encode():
                            continue
                        broker_name = queue.brokerName.decode("utf-8", "replace")
                        is_expected = expect_broker_name in (None, broker_name)
                        return replace(
                            sent,
                            is_ok=is_expected,
                            error=None
                            if is_expected
                            else f"message landed on {broker_name}, not {expect_broker_name}",
                            is_received=True,
                            queue_id=int(queue.queueId),
                            received_broker_name=broker_name,
                            roundtrip_seconds=round(time.monotonic() - send_started, 4),
                        )
                finally:
                    dll.ReleasePullResult(pulled)
        finally:
            dll.ReleaseSubscriptionMessageQueue(queues)
        time.sleep(_PULL_RETRY_PAUSE_SECONDS)
    return replace(sent, error=last_error)


def _probe_loop(
    namesrv: str, topic: str, duration_seconds: float, interval_seconds: float, out: IO[str]
) -> int:
    """Send one message per interval until the duration is over; one JSON line per send."""
    started = time.monotonic()

    def emit(doc: Mapping[str, Any]) -> None:
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        out.flush()  # line by line, so a parent that kills us still has every finished send

    try:
        from rocketmq.client import Message, Producer
    except Exception as exc:  # ImportError, or OSError when librocketmq.so cannot load
        emit({"fatal": f"rocketmq client unavailable: {exc}"})
        return 1
    # A short send timeout: the probe is there to see when writes fail, not to wait them out.
    producer = Producer(PRODUCER_GROUP, timeout=1500)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.canary",
        description="Send one message with the real RocketMQ client and read it back.",
    )
    parser.add_argument("--namesrv", required=True, help="nameservers, 'host:port;host:port'")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--timeout-seconds", type=float, help="canary: give up after this")
    parser.add_argument(
        "--probe-duration-seconds",
        type=float,
        help="instead of the canary: send one message per interval for this long",
    )
    parser.add_argument("--probe-interval-seconds", type=float, default=0.2)
    parser.add_argument("--expect-broker-name", help="fail unless the message is on this group")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    return parser


def _check_args(args: argparse.Namespace) -> str | None:
    addrs = [a for a in str(args.namesrv).split(";") if a]
    if not addrs:
        return "--namesrv is empty"
    for addr in addrs:
        try:
            parse_addr(addr)
        except ValueError as exc:
            return f"--namesrv: {exc}"
    try:
        check_topic_name(args.topic)
    except ValueError as exc:
        return f"--topic: {exc}"
    if args.probe_duration_seconds is not None:
        checks = [
            ("--probe-duration-seconds", args.probe_duration_seconds),
            ("--probe-interval-seconds", args.probe_interval_seconds),
        ]
    else:
        checks = [("--timeout-seconds", args.timeout_seconds)]
    for flag, value in checks:
        if value is None or not value > 0 or not math.isfinite(value):
            return f"{flag} must be a positive number, got {value}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """The child: one round trip, one result line on stdout, exit 0 if ok else 1 (or, with
    --probe-duration-seconds, the probe producer: one line per send, exit 0)."""
    args = _parser().parse_args(argv)
    # The native library may write to fd 1; keep the real stdout for the result line only.
    result_out: IO[str] = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    problem = _check_args(args)
    if problem is None and args.probe_duration_seconds is not None:
        code = _probe_loop(
            args.namesrv,
            args.topic,
            args.probe_duration_seconds,
            args.probe_interval_seconds,
            result_out,
        )
        os._exit(code)
    if problem is not None and args.probe_duration_seconds is not None:
        result_out.write(json.dumps({"fatal": problem}) + "\n")
        result_out.flush()
        os._exit(1)
    if problem is not None:
        outcome = ClientOutcome(is_ok=False, error=problem)
    else:
        outcome = _round_trip(
            args.namesrv, args.topic, args.expect_broker_name, args.timeout_seconds
        )
    if args.json:
        result_out.write(outcome.to_json() + "\n")
    elif outcome.is_ok:
        result_out.write(
            f"ok: message {outcome.sent_msg_id} sent (queue {outcome.queue_id}, offset "
            f"{outcome.send_offset}) and read back from {outcome.received_broker_name} in "
            f"{outcome.roundtrip_seconds} s\n"
        )
    else:
        result_out.write(f"failed: {outcome.error}\n")
    result_out.flush()
    # Skip interpreter teardown: the client's destructors shut the native producer and
    # consumer down a second time, and a native crash then would turn a result into a failure.
    os._exit(0 if outcome.is_ok else 1)


if __name__ == "__main__":
    sys.exit(main())
