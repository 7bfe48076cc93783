"""The one module that speaks to etcd: a narrow, typed session over the etcd3aio client.

Everything else in coord/ uses these values and calls, never etcd3aio or gRPC: the client can
be swapped here alone. Every call is bounded by the configured request timeout, and every
failure comes out as EtcdUnavailable (LeaseGone when a named lease no longer exists), so the
coordinator has one thing to treat as "etcd unreachable".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from etcd3aio import (
    EtcdConnectionError,
    EtcdError,
    EtcdTransientError,
    EtcdUnauthenticatedError,
    prefix_range_end,
)
from etcd3aio._protobuf import Compare as _PbCompare
from etcd3aio._protobuf import DeleteRangeRequest, PutRequest, RangeRequest, RequestOp
from etcd3aio.auth import AuthService
from etcd3aio.kv import KVService
from etcd3aio.lease import LeaseService

from ..config import EtcdSettings
from ._errors import EtcdUnavailable, LeaseGone

__all__ = [
    "Delete",
    "EtcdSession",
    "Get",
    "KeyCreated",
    "KeyLease",
    "KeyValue",
    "Put",
    "TxnResult",
]

T = TypeVar("T")


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    lease: int  # 0: none
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Get:
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


Op = Put | Get | Delete


@dataclass(frozen=True)
class KeyCreated:
    """Holds when `key` was created at `revision` (0: the key does not exist)."""

    key: str
    revision: int


@dataclass(frozen=True)
class KeyLease:
    """Holds when `key` exists and is attached to `lease`."""

    key: str
    lease: int


Condition = KeyCreated | KeyLease


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    reads: tuple[tuple[KeyValue, ...], ...]  # one entry per Get of the branch that ran, in order


def _kv(pb: Any) -> KeyValue:
    return KeyValue(
        key=bytes(pb.key).decode("utf-8", "replace"),
        value=bytes(pb.value),
        lease=int(pb.lease),
        create_revision=int(pb.create_revision),
        mod_revision=int(pb.mod_revision),
    )


def _range_end(key: str, prefix: bool) -> bytes:
    return prefix_range_end(key.encode()) if prefix else b""


def _op(op: Op) -> Any:
    if isinstance(op, Put):
        return RequestOp(
            request_put=PutRequest(key=op.key.encode(), value=op.value, lease=op.lease)
        )
    if isinstance(op, Get):
        return RequestOp(
            request_range=RangeRequest(key=op.key.encode(), range_end=_range_end(op.key, op.prefix))
        )
    return RequestOp(
        request_delete_range=DeleteRangeRequest(
            key=op.key.encode(), range_end=_range_end(op.key, op.prefix)
        )
    )


def _compare(condition: Condition) -> Any:
    if isinstance(condition, KeyCreated):
        return _PbCompare(
            result=_PbCompare.EQUAL,
            target=_PbCompare.CREATE,
            key=condition.key.encode(),
            create_revision=condition.revision,
        )
    return _PbCompare(
        result=_PbCompare.EQUAL,
        target=_PbCompare.LEASE,
        key=condition.key.encode(),
        lease=condition.lease,
    )


def _classify(exc: BaseException) -> tuple[str, str]:
    """(kind, text) of a failed try: "auth" (no or a stale token), "lease" (a lease etcd no
    longer has), "retry" (this member refused, hung, or has no raft leader: try another),
    "fatal" (etcd said no: another member would say the same)."""
    if isinstance(exc, EtcdUnauthenticatedError):
        return "auth", str(exc)
    if isinstance(exc, EtcdConnectionError | EtcdTransientError | TimeoutError):
        return "retry", str(exc) or type(exc).__name__
    if isinstance(exc, grpc.aio.AioRpcError):
        code, details = str(exc.code().name), str(exc.details() or "")
        if code == "UNAUTHENTICATED":
            return "auth", details
        if code == "NOT_FOUND" and "lease" in details:
            return "lease", details
        # etcd answers UNAVAILABLE for "request timed out", "leader changed", "no leader".
        if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
            return "retry", f"{code} {details}"
        return "fatal", f"{code}: {details}"
    return "fatal", str(exc)


# gRPC keep-alive pings find a connection to a dead or hung member between requests (etcd
# refuses pings more often than every 5 s: --grpc-keepalive-min-time).
_CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


@dataclass
class _Member:
    endpoint: str
    channel: Any  # grpc.aio.Channel
    kv: KVService
    lease: LeaseService
    auth: AuthService

    def set_token(self, token: str | None) -> None:
        for service in (self.kv, self.lease, self.auth):
            service.set_token(token)


class EtcdSession:
    """One gRPC channel per configured member, with TLS and auth; requests go to one member
    (pinned) and move on to the next when it fails, as etcd's own Go client does.

    A member that refuses (stopped) fails a try at once; one that hangs (frozen, cut off from
    its quorum) costs half the request timeout, then the next member is tried, and pinned: the
    following requests go straight to it instead of waiting on the hung one again.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self._settings = settings
        self._timeout = settings.request_timeout_seconds
        self._members: list[_Member] = []
        self._current = 0
        self._token: str | None = None

    @property
    def timeout_seconds(self) -> float:
        return self._timeout

    @property
    def endpoint(self) -> str | None:
        """The member requests go to now."""
        return self._members[self._current].endpoint if self._members else None

    async def open(self) -> None:
        """Build the channels (they connect on first use: an unreachable etcd is no error
        here); OSError when a TLS file cannot be read."""
        s = self._settings
        credentials = None
        if s.cacert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(s.cacert).read_bytes(),
                private_key=Path(s.key).read_bytes() if s.key is not None else None,
                certificate_chain=Path(s.cert).read_bytes() if s.cert is not None else None,
            )
        options: list[tuple[str, str | int]] = list(_CHANNEL_OPTIONS)
        if s.server_name is not None:
            options.append(("grpc.ssl_target_name_override", s.server_name))
        members = []
        for endpoint in s.endpoints:
            if credentials is None:
                channel = grpc.aio.insecure_channel(endpoint, options=options)
            else:
                channel = grpc.aio.secure_channel(endpoint, credentials, options=options)
            # Retries are ours (_call): the client's own would retry a hung member past the
            # budget instead of moving to another.
            members.append(
                _Member(
                    endpoint,
                    channel,
                    KVService(channel, max_attempts=1),
                    LeaseService(channel, max_attempts=1),
                    AuthService(channel, max_attempts=1),
                )
            )
        self._members = members
        self._current = 0

    async def close(self) -> None:
        members, self._members = self._members, []
        for member in members:
            await member.channel.close()

    async def _authenticate(self, member: _Member, timeout: float) -> None:
        user, password = self._settings.user, self._settings.password_text()
        if user is None or password is None:
            return
        reply = await member.auth.authenticate(user, password, timeout=timeout)
        # A simple token is agreed through raft: every member takes it.
        self._token = str(reply.token)
        for m in self._members:
            m.set_token(self._token)

    async def _call(
        self,
        what: str,
        attempt: Callable[[_Member, float], Awaitable[T]],
        *,
        needs_token: bool = True,
    ) -> T:
        """Run `attempt(member, timeout)` within the request budget, on the pinned member and
        then the next ones after a refusal or a try that timed out, authenticating first when
        [etcd] names a user and no token is held; any failure -> EtcdUnavailable."""
        if not self._members:
            raise EtcdUnavailable(f"{what}: etcd session not open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        per_try = self._timeout if len(self._members) == 1 else self._timeout / 2
        errors: list[str] = []
        refreshed = False
        while (left := deadline - loop.time()) > 0.005:
            member = self._members[self._current]
            began = loop.time()
            try:
                if needs_token and self._settings.user is not None and self._token is None:
                    await self._authenticate(member, min(per_try, left))
                    continue
                return await attempt(member, min(per_try, left))
            except (EtcdError, grpc.aio.AioRpcError, TimeoutError) as exc:
                kind, text = _classify(exc)
            if kind == "lease":
                raise LeaseGone(f"{what}: {text}")
            if kind == "auth":
                # A token lost with an etcd restart (simple tokens live in members' memory) or
                # expired: once more with a fresh one.
                if refreshed or not needs_token or self._settings.user is None:
                    raise EtcdUnavailable(f"{what}: authentication failed: {text}")
                refreshed = True
                # Dropped everywhere: etcd refuses even a login that carries a stale token.
                self._token = None
                for m in self._members:
                    m.set_token(None)
                continue
            if kind == "fatal":
                raise EtcdUnavailable(f"{what}: {text}")
            errors.append(f"{member.endpoint}: {text}")
            self._current = (self._current + 1) % len(self._members)
            if loop.time() - began < 0.01:  # refused at once: no busy loop over dead members
                await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
        tried = "; ".join(errors[-len(self._members) :]) or "no try made"
        raise EtcdUnavailable(f"{what}: no answer within {self._timeout:g} s ({tried})")

    async def authenticate(self) -> None:
        """Get a token now when [etcd] names a user (requests also get one when none is held,
        and a fresh one when etcd refuses the one held)."""
        if self._settings.user is None:
            return
        await self._call("authenticate", self._authenticate, needs_token=False)

    async def grant(self, ttl_seconds: int) -> tuple[int, int]:
        """A new lease: (id, TTL granted; etcd may round a short TTL up)."""

        async def attempt(member: _Member, timeout: float) -> tuple[int, int]:
            reply = await member.lease.grant(ttl_seconds, timeout=timeout)
            return int(reply.ID), int(reply.TTL)

        return await self._call("lease grant", attempt)

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease once: its TTL from now, 0 when etcd no longer has it."""

        async def attempt(member: _Member, timeout: float) -> int:
            call = member.lease.keep_alive(lease_id)
            try:
                async with asyncio.timeout(timeout):
                    reply = await call.read()
            finally:
                call.cancel()
            if reply is grpc.aio.EOF:
                raise EtcdConnectionError("keep-alive stream closed without an answer")
            return max(int(reply.TTL), 0)

        return await self._call("lease keep-alive", attempt)

    async def revoke(self, lease_id: int) -> None:
        async def attempt(member: _Member, timeout: float) -> None:
            await member.lease.revoke(lease_id, timeout=timeout)

        await self._call("lease revoke", attempt)

    async def get(self, key: str, *, prefix: bool = False) -> tuple[tuple[KeyValue, ...], int]:
        """A linearizable read: the keys and the revision read at."""

        async def attempt(member: _Member, timeout: float) -> tuple[tuple[KeyValue, ...], int]:
            end = _range_end(key, prefix) or None
            reply = await member.kv.get(key.encode(), end, timeout=timeout)
            return tuple(_kv(kv) for kv in reply.kvs), int(reply.header.revision)

        return await self._call("get", attempt)

    async def txn(
        self,
        conditions: Sequence[Condition],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """One transaction: `success` if every condition holds, else `failure`.

        A try that timed out may have committed: callers make their transactions safe to run
        twice (the same puts; a campaign recognizes its own lease on the key)."""
        compares = [_compare(c) for c in conditions]
        ops_ok = [_op(o) for o in success]
        ops_else = [_op(o) for o in failure]

        async def attempt(member: _Member, timeout: float) -> TxnResult:
            reply = await member.kv.txn(compares, ops_ok, ops_else, timeout=timeout)
            reads = tuple(
                tuple(_kv(kv) for kv in r.response_range.kvs)
                for r in reply.responses
                if r.WhichOneof("response") == "response_range"
            )
            return TxnResult(bool(reply.succeeded), int(reply.header.revision), reads)

        return await self._call("txn", attempt)
