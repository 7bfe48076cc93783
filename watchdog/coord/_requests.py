"""An operator's `failover`, `switchover` or `ack` carried through etcd to the leader, from any
host of the group, and the leader's answers carried back.

Keys under the prefix (the layout beside _coordinator.py's):

    <prefix>/requests/<id>            the request, as the control socket's wire has it (one
                                      JSON object, plus "from"); the asking command's lease
    <prefix>/replies/<id>/<seq>       the leader's answers in order (seq: 6 digits): first
                                      {"event": "taken", "leader", "term"}, last {"end": true};
                                      the same lease

The asking command holds the lease while it waits, so a request or answers nobody waits for
any more vanish with it. The leader takes a request with a fenced transaction (the leader key
still held by its lease, at its create revision) that deletes it: only one leader ever takes
a request, once, and in the same transaction writes its first answer, naming itself and its
fencing token: the asking command stops waiting if that leader loses the lead before its last
answer. It runs the request as it runs a control-socket request (daemon/_control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import EtcdSettings
from ._errors import CoordError, EtcdUnavailable
from ._etcd import Delete, EtcdSession, Get, KeyCreated, KeyLease, KeyValue, Put

__all__ = [
    "ForwardedRequest",
    "ask_leader",
    "decode_request",
    "reply_key",
    "request_id",
    "requests_prefix",
]

# The asking command's lease: renewed every third of it while it waits.
REQUEST_LEASE_TTL_SECONDS = 10
_POLL_SECONDS = 0.2
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def requests_prefix(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/requests/"


def _replies_prefix(prefix: str, rid: str) -> str:
    return f"{prefix.rstrip('/')}/replies/{rid}/"


def reply_key(prefix: str, rid: str, seq: int) -> str:
    return f"{_replies_prefix(prefix, rid)}{seq:06d}"


def request_id() -> str:
    """Unique enough across hosts and commands: host, pid, random."""
    host = "".join(c for c in socket.gethostname().lower() if c in _ID_CHARS)[:40] or "host"
    return f"{host}-{os.getpid()}-{os.urandom(6).hex()}"


@dataclass(frozen=True)
class ForwardedRequest:
    """A request the leader took from etcd: its id, what was asked (None: not a JSON object,
    `error` says why), and the asking command's lease, under which its answers go."""

    request_id: str
    body: Mapping[str, Any] | None
    lease: int
    error: str | None = None

    @property
    def asked_by(self) -> str:
        return str((self.body or {}).get("from") or "?")


def decode_request(kv: KeyValue, prefix: str) -> ForwardedRequest:
    rid = kv.key[len(requests_prefix(prefix)) :]
    try:
        body = json.loads(kv.value)
    except ValueError as exc:
        return ForwardedRequest(rid, None, kv.lease, f"bad request: {exc}")
    if not isinstance(body, dict):
        return ForwardedRequest(rid, None, kv.lease, "bad request: not a JSON object")
    return ForwardedRequest(rid, body, kv.lease)


async def ask_leader(
    settings: EtcdSettings,
    prefix: str,
    request: Mapping[str, Any],
    *,
    asked_by: str,
    take_timeout_seconds: float,
) -> AsyncIterator[dict[str, Any]]:
    """Put `request` for the leader and yield its answers as they come, until its last one.

    Raises CoordError when etcd cannot be reached, when no leader takes the request within
    `take_timeout_seconds` (it is withdrawn), or when the leader that took it loses the lead
    before its last answer (what it ran is in its journal in etcd; the next leader resumes it).
    """
    rid = request_id()
    key = requests_prefix(prefix) + rid
    replies = _replies_prefix(prefix, rid)
    leader_key = f"{prefix.rstrip('/')}/leader"
    session = EtcdSession(settings)
    await session.open()
    keeper: asyncio.Task[None] | None = None
    lease = 0
    try:
        await session.authenticate()
        lease, ttl = await session.grant(REQUEST_LEASE_TTL_SECONDS)
        keeper = asyncio.create_task(_keep(session, lease, ttl))
        body = json.dumps({**request, "from": asked_by}).encode()
        await session.txn([KeyCreated(key, 0)], [Put(key, body, lease=lease)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + take_timeout_seconds
        term: int | None = None  # the taking leader's fencing token, from its first answer
        seen = 0
        while True:
            result = await session.txn([], [Get(key), Get(replies, prefix=True), Get(leader_key)])
            waiting, answers, leader = result.reads
            for kv in sorted(answers, key=lambda kv: kv.key)[seen:]:
                seen += 1
                message = _answer(kv)
                if message.get("end"):
                    return
                if message.get("event") == "taken":
                    term = int(message.get("term") or 0)
                yield message
            if waiting:
                if loop.time() > deadline:
                    await session.txn([KeyLease(key, lease)], [Delete(key)])
                    raise CoordError(
                        f"no leader took the request within {take_timeout_seconds:g} s "
                        "(withdrawn; nothing was done)"
                    )
            elif term is None:
                raise CoordError("the request vanished from etcd before a leader took it")
            elif not leader or leader[0].create_revision != term:
                raise CoordError(
                    "the leader that took the request lost the lead before its last answer: "
                    "what it ran is journaled in etcd and the next leader resumes it "
                    "(follow it with `rmq-watchdog status`)"
                )
            await asyncio.sleep(_POLL_SECONDS)
    finally:
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if lease:
            with contextlib.suppress(EtcdUnavailable):
                await session.revoke(lease)  # the request, if still there, and the answers
        await session.close()


def _answer(kv: KeyValue) -> dict[str, Any]:
    try:
        message = json.loads(kv.value)
    except ValueError as exc:
        raise CoordError(f"{kv.key}: the leader's answer is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise CoordError(f"{kv.key}: the leader's answer is not a JSON object")
    return message


async def _keep(session: EtcdSession, lease: int, ttl: int) -> None:
    while True:
        await asyncio.sleep(max(ttl / 3, 0.5))
        with contextlib.suppress(EtcdUnavailable):
            await session.keep_alive(lease)
