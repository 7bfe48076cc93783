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
    Etcd3Client,
    EtcdConnectionError,
    EtcdError,
    EtcdTransientError,
    EtcdUnauthenticatedError,
    prefix_range_end,
)
from etcd3aio._protobuf import Compare as _PbCompare
from etcd3aio._protobuf import DeleteRangeRequest, PutRequest, RangeRequest, RequestOp

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


def _code_name(exc: BaseException) -> str | None:
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return None


class EtcdSession:
    """One gRPC channel to the configured members (round robin), with auth and TLS.

    A request goes to one member; when that member is down (connection refused) or hangs
    (a frozen or partitioned member), the request is tried again on the next member within the
    same timeout: each try gets part of the budget, so one hung member does not eat it all.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self._settings = settings
        self._timeout = settings.request_timeout_seconds
        self._client: Etcd3Client | None = None
        # Tries per request: a hung member costs one try; each other member may be tried once.
        self._tries = min(len(settings.endpoints), 3)

    @property
    def timeout_seconds(self) -> float:
        return self._timeout

    async def open(self) -> None:
        """Build the channel (it connects on first use: an unreachable etcd is no error here)."""
        s = self._settings
        ca = Path(s.cacert).read_bytes() if s.cacert is not None else None
        cert = Path(s.cert).read_bytes() if s.cert is not None else None
        key = Path(s.key).read_bytes() if s.key is not None else None
        # Retries are ours (_call): the client's own would retry a hung member past the budget.
        client = Etcd3Client(
            list(s.endpoints),
            rpc_max_attempts=1,
            tls_server_name=s.server_name,
            ca_cert=ca,
            cert_chain=cert,
            cert_key=key,
        )
        await client.connect()
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _connected(self) -> Etcd3Client:
        if self._client is None:
            raise EtcdUnavailable("etcd session not open")
        return self._client

    async def _authenticate(self, client: Etcd3Client, timeout: float) -> None:
        user, password = self._settings.user, self._settings.password_text()
        if user is None or password is None or client.auth is None:
            return
        reply = await client.auth.authenticate(user, password, timeout=timeout)
        client.set_token(str(reply.token))

    async def _call(self, what: str, attempt: Callable[[float], Awaitable[T]]) -> T:
        """Run `attempt(timeout)` within the request budget, tried again on another member
        after a refused connection or a try that timed out; any failure -> EtcdUnavailable."""
        client = self._connected()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        per_try = self._timeout / self._tries
        last = "no try made"
        authenticated = False
        while (left := deadline - loop.time()) > 0.005:
            try:
                return await attempt(min(per_try, left))
            except EtcdUnauthenticatedError as exc:
                # A token lost with an etcd restart (simple tokens live in memory) or expired:
                # once more with a fresh one.
                if authenticated or self._settings.user is None:
                    raise EtcdUnavailable(f"{what}: authentication failed: {exc}") from None
                authenticated = True
                try:
                    await self._authenticate(client, max(deadline - loop.time(), 0.01))
                except (EtcdError, grpc.aio.AioRpcError, TimeoutError) as auth_exc:
                    raise EtcdUnavailable(f"{what}: authentication failed: {auth_exc}") from None
                last = str(exc)
            except (EtcdConnectionError, EtcdTransientError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            except grpc.aio.AioRpcError as exc:
                code = _code_name(exc)
                if code == "NOT_FOUND" and "lease" in (exc.details() or ""):
                    raise LeaseGone(f"{what}: {exc.details()}") from None
                if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    last = f"{code}: {exc.details()}"
                    continue
                raise EtcdUnavailable(f"{what}: {code}: {exc.details()}") from None
            except EtcdError as exc:
                raise EtcdUnavailable(f"{what}: {exc}") from None
        raise EtcdUnavailable(f"{what}: no answer within {self._timeout:g} s ({last})")

    async def authenticate(self) -> None:
        """Get a token when [etcd] names a user (once at start; again when etcd refuses it)."""
        client = self._connected()
        if self._settings.user is None:
            return

        async def attempt(timeout: float) -> None:
            await self._authenticate(client, timeout)

        await self._call("authenticate", attempt)

    async def grant(self, ttl_seconds: int) -> tuple[int, int]:
        """A new lease: (id, TTL granted; etcd may round a short TTL up)."""
        client = self._connected()

        async def attempt(timeout: float) -> tuple[int, int]:
            assert client.lease is not None
            reply = await client.lease.grant(ttl_seconds, timeout=timeout)
            return int(reply.ID), int(reply.TTL)

        return await self._call("lease grant", attempt)

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease once: its TTL from now, 0 when etcd no longer has it."""
        client = self._connected()

        async def attempt(timeout: float) -> int:
            assert client.lease is not None
            call = client.lease.keep_alive(lease_id)
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
        client = self._connected()

        async def attempt(timeout: float) -> None:
            assert client.lease is not None
            await client.lease.revoke(lease_id, timeout=timeout)

        await self._call("lease revoke", attempt)

    async def get(self, key: str, *, prefix: bool = False) -> tuple[tuple[KeyValue, ...], int]:
        """A linearizable read: the keys and the revision read at."""
        client = self._connected()

        async def attempt(timeout: float) -> tuple[tuple[KeyValue, ...], int]:
            assert client.kv is not None
            end = _range_end(key, prefix) or None
            reply = await client.kv.get(key.encode(), end, timeout=timeout)
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
        client = self._connected()
        compares = [_compare(c) for c in conditions]
        ops_ok = [_op(o) for o in success]
        ops_else = [_op(o) for o in failure]

        async def attempt(timeout: float) -> TxnResult:
            assert client.kv is not None
            reply = await client.kv.txn(compares, ops_ok, ops_else, timeout=timeout)
            reads = tuple(
                tuple(_kv(kv) for kv in r.response_range.kvs)
                for r in reply.responses
                if r.WhichOneof("response") == "response_range"
            )
            return TxnResult(bool(reply.succeeded), int(reply.header.revision), reads)

        return await self._call("txn", attempt)
