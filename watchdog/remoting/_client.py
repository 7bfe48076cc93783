"""Asyncio RocketMQ remoting client: lazy connect, many requests in flight, per-request timeouts."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
from collections.abc import Mapping
from dataclasses import replace

from ..model import AclCredentials
from ._acl import sign_command
from ._codec import FLAG_RESPONSE, FrameDecoder, RemotingCommand, encode_frame
from ._errors import (
    ProtocolError,
    RemotingClosed,
    RemotingConnectError,
    RemotingError,
    RemotingTimeout,
)

__all__ = ["RemotingClient", "ClientPool", "parse_addr"]

_REQUEST_CODE_NOT_SUPPORTED = 3


# A connection with requests timing out and nothing received for this long is taken for dead.
STALLED_SECONDS = 2.0


def parse_addr(addr: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:9876"`` for IPv6); ValueError names what is wrong."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"address {addr!r} is not host:port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"address {addr!r} has port {port} outside 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


class _Expired(Exception):
    """A request's deadline passed before its reply came; send() turns it into RemotingTimeout."""


def _expire(future: asyncio.Future[RemotingCommand]) -> None:
    if not future.done():
        future.set_exception(_Expired())


@functools.lru_cache(maxsize=64, typed=True)
def _bare_request(code: int) -> RemotingCommand:
    """The request for `code` with no ext fields and no body; immutable, so shared."""
    return RemotingCommand(code=code)


class _Connection(asyncio.Protocol):
    """One TCP connection; owns the futures of the requests sent on it."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self.decoder = FrameDecoder()
        self.is_lost = False
        self.ignored_requests = 0
        self.last_received_at = 0.0  # loop time of the last bytes from the server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_received_at = asyncio.get_running_loop().time()  # silence counts from here

    def data_received(self, data: bytes) -> None:
        self.last_received_at = asyncio.get_running_loop().time()
        try:
            commands = self.decoder.feed(data)
        except ProtocolError as exc:
            # Framing is lost for good: nothing after this point can be trusted.
            self._fail_all(ProtocolError(f"{self.addr}: {exc}"))
            self.abort()
            return
        for cmd in commands:
            if cmd.is_response:
                future = self.pending.pop(cmd.opaque, None)
                # No future means the request already timed out: the late reply is dropped.
                if future is not None and not future.done():
                    future.set_result(cmd)
            else:
                self._answer_server_request(cmd)

    def _answer_server_request(self, cmd: RemotingCommand) -> None:
        # A broker only pushes requests (consumer-ids changed, transaction checks, ...) to
        # clients that sent HEART_BEAT; an admin client never does, so it declines politely.
        self.ignored_requests += 1
        if cmd.is_oneway or self.transport is None or self.transport.is_closing():
            return
        reply = RemotingCommand(
            code=_REQUEST_CODE_NOT_SUPPORTED,
            opaque=cmd.opaque,
            flag=FLAG_RESPONSE,
            remark=f" request type {cmd.code} not supported",
            serialize_type=cmd.serialize_type,
        )
        self.transport.write(encode_frame(reply))

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        reason = f": {exc}" if exc else ""
        self._fail_all(RemotingClosed(f"{self.addr}: connection lost{reason}"))

    def _fail_all(self, exc: RemotingError) -> None:
        self.is_lost = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    def abort(self) -> None:
        self.is_lost = True
        if self.transport is not None:
            self.transport.abort()

    def abort_if_stalled(self, since: float, now: float) -> None:
        """A request timed out, not one byte arrived since `since` (when it was sent) and the
        connection has been silent for STALLED_SECONDS: it may be dead without a FIN or RST (a
        partition, a host gone). Drop it, so the next request connects afresh instead of
        writing into a black hole until TCP gives up minutes later; a slow server that
        answers anything keeps its connection."""
        if self.last_received_at < since and now - self.last_received_at >= STALLED_SECONDS:
            self.abort()

    @property
    def is_usable(self) -> bool:
        return not self.is_lost and self.transport is not None and not self.transport.is_closing()


class RemotingClient:
    """Requests to one RocketMQ server over one lazily opened connection.

    - The connection opens on the first request and again on the next request after a loss.
    - Requests are matched to replies by opaque, so any number can be in flight at once.
    - Each request has its own timeout; a reply arriving after it is dropped.
    - Server-initiated requests are answered with code 3 (oneway ones are ignored).
    - Garbage on the wire fails every pending request with ProtocolError and drops the connection.
    - With ``credentials`` every request is signed as RocketMQ's ACL 1.0 signs it (AccessKey,
      Signature); a broker's ACL refusal is then an AclRefused from the typed calls.

    Usage::

        client = RemotingClient("127.0.0.1:9876", connect_timeout_seconds=0.5)
        reply = await client.request(106, timeout_seconds=1.0)
        await client.close()

    The reply is returned whatever its code; the typed calls in ``_admin`` turn non-zero codes
    into RemoteError.
    """

    def __init__(
        self,
        addr: str,
        *,
        connect_timeout_seconds: float = 1.0,
        source_address: str | None = None,
        credentials: AclCredentials | None = None,
    ) -> None:
        self.host, self.port = parse_addr(addr)
        # Read at each request: ClientPool.set_credentials changes it for a reloaded config.
        self.credentials = credentials
        # Bind outgoing connections to this local address (multi-homed hosts; tests).
        self.source_address = source_address
        self.addr = addr
        if connect_timeout_seconds <= 0:
            raise ValueError(f"connect_timeout_seconds must be > 0, got {connect_timeout_seconds}")
        self.connect_timeout_seconds = connect_timeout_seconds
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Opaques only need to be unique among in-flight requests; stay inside int32.
        self._opaques = itertools.cycle(range(1, 2**31))
        self.connects = 0  # how many connections were opened (tests check reuse)

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and self._conn.is_usable

    @property
    def in_flight(self) -> int:
        return len(self._conn.pending) if self._conn is not None else 0

    async def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout_seconds: float,
    ) -> RemotingCommand:
        """Send one request and wait for its reply.

        Raises RemotingConnectError (no connection within the connect timeout or the request
        timeout, whichever is shorter), RemotingTimeout, RemotingClosed or ProtocolError.
        """
        if ext_fields or body:
            cmd = RemotingCommand(code=code, ext_fields=dict(ext_fields or {}), body=body)
        else:
            cmd = _bare_request(code)
        return await self.send(cmd, timeout_seconds=timeout_seconds)

    async def send(self, cmd: RemotingCommand, *, timeout_seconds: float) -> RemotingCommand:
        """Like request(), for a prepared command (its opaque is replaced; version/type kept)."""
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        conn = self._conn
        if conn is None or self._loop is not loop or not conn.is_usable:
            conn = await self._connection(deadline)
        opaque = next(self._opaques)
        if cmd.flag & FLAG_RESPONSE:
            cmd = replace(cmd, flag=cmd.flag & ~FLAG_RESPONSE)
        if self.credentials is not None:
            cmd = sign_command(cmd, self.credentials)
        frame = encode_frame(cmd, opaque=opaque)
        future: asyncio.Future[RemotingCommand] = loop.create_future()
        conn.pending[opaque] = future
        # A timer that fails the future, rather than asyncio.timeout(): the same deadline for
        # a third of the cost, which counts at thousands of requests a cycle.
        timer = loop.call_at(deadline, _expire, future)
        try:
            assert conn.transport is not None
            conn.transport.write(frame)
            return await future
        except _Expired:
            conn.abort_if_stalled(deadline - timeout_seconds, loop.time())
            raise self._timed_out(cmd.code, timeout_seconds) from None
        finally:
            timer.cancel()
            if conn.pending.get(opaque) is future:
                del conn.pending[opaque]

    def _timed_out(self, code: int, timeout_seconds: float) -> RemotingTimeout:
        return RemotingTimeout(
            f"{self.addr}: no reply to request code {code} within {timeout_seconds:g}s"
        )

    def send_nowait(self, cmd: RemotingCommand) -> asyncio.Future[RemotingCommand] | None:
        """Write ``cmd`` at once on the live connection and return the future of its reply;
        None when there is no live connection in this loop (send() connects first).

        No deadline of its own: the caller ends a future still waiting with expire(). This
        lets one task send to thousands of servers with one timer, where send() costs a task
        and a timer per request (the prober's 2,000 brokers a cycle).
        """
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is None or self._loop is not loop or not conn.is_usable:
            return None
        assert conn.transport is not None
        opaque = next(self._opaques)
        if cmd.flag & FLAG_RESPONSE:
            cmd = replace(cmd, flag=cmd.flag & ~FLAG_RESPONSE)
        if self.credentials is not None:
            cmd = sign_command(cmd, self.credentials)
        frame = encode_frame(cmd, opaque=opaque)
        future: asyncio.Future[RemotingCommand] = loop.create_future()
        conn.pending[opaque] = future
        conn.transport.write(frame)
        return future

    def expire(
        self, future: asyncio.Future[RemotingCommand], code: int, timeout_seconds: float
    ) -> RemotingTimeout:
        """Give up on a send_nowait() future: a later reply is dropped. Returns the error a
        send() with this timeout would have raised."""
        conn = self._conn
        if conn is not None:
            for opaque, waiting in conn.pending.items():
                if waiting is future:
                    del conn.pending[opaque]
                    break
            if self._loop is not None and not self._loop.is_closed():
                now = self._loop.time()
                conn.abort_if_stalled(now - timeout_seconds, now)
        future.cancel()
        return self._timed_out(code, timeout_seconds)

    def _adopt_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # A client kept across event loops (asyncio.run() twice, or another thread) must not
        # write to a transport owned by another loop: the reply would never be read there.
        if self._loop is loop:
            return
        old_loop, old_conn = self._loop, self._conn
        self._conn, self._connecting, self._loop = None, None, loop
        # Transports are not thread-safe: the owning loop drops the old one. A closed loop's
        # socket goes with its transport object; close() the client before its loop ends.
        transport = old_conn.transport if old_conn is not None else None
        if transport is not None and old_loop is not None and not old_loop.is_closed():
            old_loop.call_soon_threadsafe(transport.abort)

    async def _connection(self, deadline: float) -> _Connection:
        self._adopt_loop(asyncio.get_running_loop())
        if self._conn is not None and self._conn.is_usable:
            return self._conn
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        # Concurrent requests share one connect attempt instead of each opening a socket.
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        task = self._connecting
        remaining = deadline - asyncio.get_running_loop().time()
        # asyncio.wait neither cancels the shared attempt on our timeout nor turns its
        # cancellation (by close()) into a CancelledError of this request.
        await asyncio.wait({task}, timeout=max(remaining, 0.0))
        if not task.done():
            raise RemotingConnectError(f"{self.addr}: not connected within the request timeout")
        if task.cancelled():
            raise RemotingClosed(f"{self.addr}: client closed while connecting")
        exc = task.exception()
        if exc is not None:
            # A fresh exception per waiter: many requests may share this one failed attempt.
            errno = exc.errno if isinstance(exc, RemotingConnectError) else None
            raise RemotingConnectError(str(exc), errno=errno) from None
        conn = task.result()
        if not conn.is_usable:
            raise RemotingClosed(f"{self.addr}: connection lost right after connecting")
        return conn

    def _connect_done(self, task: asyncio.Task[_Connection]) -> None:
        superseded = self._connecting is not task
        if not superseded:
            self._connecting = None
        if task.cancelled() or task.exception() is not None:  # exception() marks it retrieved
            return
        if superseded:
            task.result().abort()  # close() ran while this attempt was finishing
        else:
            self._conn = task.result()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_seconds):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.addr),
                    self.host,
                    self.port,
                    local_addr=(self.source_address, 0) if self.source_address else None,
                )
        except TimeoutError:
            raise RemotingConnectError(
                f"{self.addr}: connect timed out after {self.connect_timeout_seconds:g}s"
            ) from None
        except OSError as exc:
            # The errno's text alone: asyncio's message repeats the address as a tuple ("Connect
            # call failed ('10.0.0.1', 10911)") after the one this message already starts with.
            reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            raise RemotingConnectError(
                f"{self.addr}: connect failed: {reason}", errno=exc.errno
            ) from None
        self.connects += 1
        return conn

    async def close(self) -> None:
        """Drop the connection; pending requests fail with RemotingClosed.

        The client stays usable: a later request connects again.
        """
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()  # its done-callback aborts a connection that won the race
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._fail_all(RemotingClosed(f"{self.addr}: client closed"))
            if conn.transport is not None:
                conn.transport.close()


class ClientPool:
    """One RemotingClient per address, kept across probe cycles so connections are reused;
    with ``credentials`` every client signs its requests (RocketMQ ACL 1.0)."""

    def __init__(
        self,
        *,
        connect_timeout_seconds: float = 1.0,
        source_address: str | None = None,
        credentials: AclCredentials | None = None,
    ) -> None:
        self.connect_timeout_seconds = connect_timeout_seconds
        self.source_address = source_address
        self.credentials = credentials
        self._clients: dict[str, RemotingClient] = {}

    def set_credentials(self, credentials: AclCredentials | None) -> None:
        """Sign with ``credentials`` from the next request on (a reloaded config's account)."""
        self.credentials = credentials
        for client in self._clients.values():
            client.credentials = credentials

    def get(self, addr: str) -> RemotingClient:
        client = self._clients.get(addr)
        if client is None:
            client = RemotingClient(
                addr,
                connect_timeout_seconds=self.connect_timeout_seconds,
                source_address=self.source_address,
                credentials=self.credentials,
            )
            self._clients[addr] = client
        return client

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, addr: object) -> bool:
        return addr in self._clients

    async def close_all(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients))
