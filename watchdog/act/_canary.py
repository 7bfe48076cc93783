"""The failover canary: a real RocketMQ client writes through one broker group and reads it back."""

# The client runs in a child (watchdog.native): a hung or crashing native call must never hang
# or kill the daemon. This is the parent's part, over its own remoting connections.
#
# Why a topic of its own: with several broker groups a plain send may land on any of them. The
# canary topic is created on the one broker under test (UPDATE_AND_CREATE_TOPIC); the broker then
# re-registers at once, so the route points at that group only. The parent waits until every
# answering nameserver shows that route before the client starts, and afterwards checks, over
# its own remoting connection, that the broker's queue really grew past the send offset.

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..model import AclCredentials
from ..native import ClientOutcome, run_canary_client
from ..remoting import (
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

__all__ = ["CanaryResult", "ClientSource", "run_canary"]

_REQUEST_TIMEOUT_SECONDS = 2.0
_ROUTE_POLL_SECONDS = 0.1


class ClientSource(Protocol):
    """Where run_canary gets its remoting clients (a ClientPool)."""

    def get(self, addr: str) -> Requester: ...


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
    credentials: AclCredentials | None = None,
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
    detail says which step failed. With ``credentials`` (the brokers' ACL account, as ``pool``
    signs with it) the client child signs its requests too.
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
        credentials=credentials,
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
