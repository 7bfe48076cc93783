"""RemotingClient against the stand-in server: concurrency, timeouts, reconnects, faults."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from watchdog.remoting import (
    ClientPool,
    ProtocolError,
    RemotingClient,
    RemotingClosed,
    RemotingCommand,
    RemotingConnectError,
    RemotingTimeout,
    RequestCode,
    SerializeType,
    encode_frame,
)
from watchdog.remoting.standin import StandinBroker, StandinNamesrv, StandinServer

pytestmark = pytest.mark.timeout(30)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


Scenario = Callable[[StandinServer, StandinNamesrv, StandinBroker], Awaitable[None]]


def with_standin(scenario: Scenario) -> None:
    async def main() -> None:
        server = StandinServer()
        ns = server.add_namesrv()
        broker = server.add_broker("broker-a", 0, register_with=[ns])
        async with server:
            await scenario(server, ns, broker)

    run(main())


async def until_disconnected(client: RemotingClient) -> None:
    """Let the client's event loop notice the connection the server just dropped."""
    for _ in range(200):
        if not client.is_connected:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("client never noticed the dropped connection")


async def max_offset(client: RemotingClient, queue_id: int, timeout: float = 2.0) -> int:
    reply = await client.request(
        RequestCode.GET_MAX_OFFSET,
        {"topic": "T", "queueId": str(queue_id)},
        timeout_seconds=timeout,
    )
    assert reply.code == 0, reply
    return int(reply.ext_fields["offset"])


def test_connects_lazily_and_reuses_the_connection() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        assert client.connects == 0 and not client.is_connected
        reply = await client.request(RequestCode.GET_BROKER_RUNTIME_INFO, timeout_seconds=2)
        assert reply.is_response and reply.code == 0 and b"commitLogMaxOffset" in reply.body
        await client.request(RequestCode.GET_BROKER_CONFIG, timeout_seconds=2)
        assert client.connects == 1 and client.is_connected
        assert broker.requests_seen == 2
        await client.close()
        assert not client.is_connected

    with_standin(scenario)


def test_one_hundred_requests_in_flight_answered_in_reverse_order() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        n = 100
        broker.queue_offsets = {("T", q): 1000 + q for q in range(n)}
        # Later requests are answered first: replies arrive in reverse order of sending.
        broker.reply_delay = lambda cmd: (n - int(cmd.ext_fields["queueId"])) * 0.003
        client = RemotingClient(broker.addr)
        finished: list[int] = []

        async def one(q: int) -> int:
            offset = await max_offset(client, q)
            finished.append(q)
            return offset

        offsets = await asyncio.gather(*(one(q) for q in range(n)))
        assert offsets == [1000 + q for q in range(n)]  # every reply matched to its request
        assert finished[:10] == list(range(n - 1, n - 11, -1))  # really out of order
        assert client.connects == 1 and len(broker.connections) == 1
        assert client.in_flight == 0
        await client.close()

    with_standin(scenario)


def test_timeout_then_late_reply_is_dropped() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        broker.queue_offsets = {("T", 1): 111, ("T", 2): 222}
        broker.reply_delay = lambda cmd: 0.3 if cmd.ext_fields.get("queueId") == "1" else 0.0
        client = RemotingClient(broker.addr)
        started = time.monotonic()
        with pytest.raises(RemotingTimeout, match="within 0.1s"):
            await max_offset(client, 1, timeout=0.1)
        assert 0.08 < time.monotonic() - started < 0.5
        assert client.in_flight == 0
        await asyncio.sleep(0.35)  # the late reply for queue 1 arrives now and must be dropped
        assert await max_offset(client, 2) == 222
        assert client.connects == 1  # a timeout does not cost the connection
        await client.close()

    with_standin(scenario)


def test_hanging_server_times_out() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        await broker.set_fault("hang")
        client = RemotingClient(broker.addr)
        results = await asyncio.gather(
            *(client.request(28, timeout_seconds=0.1) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RemotingTimeout) for r in results), results
        assert broker.requests_seen == 5
        await client.close()

    with_standin(scenario)


def test_nameserver_ignores_unknown_codes_so_the_client_times_out() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(ns.addr)
        with pytest.raises(RemotingTimeout):
            await client.request(9999, timeout_seconds=0.1)
        await client.close()

    with_standin(scenario)


def test_reconnects_after_the_server_closes_the_connection() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        assert await max_offset(client, 0) == 0
        await broker.set_fault("close")
        pending = [asyncio.ensure_future(max_offset(client, q)) for q in range(3)]
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, RemotingClosed) for r in results), results
        assert "connection lost" in str(results[0])
        await broker.set_fault("ok")
        assert await max_offset(client, 0) == 0
        assert client.connects == 2
        await client.close()

    with_standin(scenario)


def test_server_initiated_request_is_answered_code_3_and_not_taken_for_a_response() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        broker.queue_offsets = {("T", 0): 7}
        broker.reply_delay = 0.05
        client = RemotingClient(broker.addr)
        assert await max_offset(client, 0) == 7
        # While the request with opaque 2 is in flight, the server pushes requests with opaques
        # 1 and 2: a client matching by opaque alone would resolve the in-flight future wrongly.
        in_flight = asyncio.ensure_future(max_offset(client, 0))
        await asyncio.sleep(0.01)
        assert broker.push_request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"group": "g"}) == 1
        assert broker.push_request(RequestCode.CHECK_TRANSACTION_STATE, is_oneway=True) == 1
        answer = await asyncio.wait_for(broker.client_replies.get(), 2)
        assert answer.is_response and answer.code == 3 and answer.opaque == 1
        assert answer.remark is not None and "40" in answer.remark
        assert await in_flight == 7
        await asyncio.sleep(0.05)
        assert broker.client_replies.empty()  # the oneway request got no answer
        await client.close()

    with_standin(scenario)


def test_garbage_fails_every_pending_request_and_drops_the_connection() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        assert await max_offset(client, 0) == 0
        await broker.set_fault("garbage")
        results = await asyncio.gather(
            *(max_offset(client, q) for q in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, ProtocolError) for r in results), results
        assert broker.addr in str(results[0])
        assert not client.is_connected
        await broker.set_fault("ok")
        assert await max_offset(client, 0) == 0
        assert client.connects == 2
        await client.close()

    with_standin(scenario)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x08\x00\x00\x00\x04nope",  # plausible length, undecodable header
        b"\x00\x00\x00\x08\x07\x00\x00\x04abcd",  # unknown serialize type
        b"\x7f\xff\xff\xff",  # a 2 GB frame: must fail now, not wait for 2 GB
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # something else answering on the port
    ],
    ids=["bad-header", "bad-type", "huge-length", "http"],
)
def test_any_garbage_gives_protocol_error_not_a_hang(garbage: bytes) -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        broker.garbage = garbage
        await broker.set_fault("garbage")
        client = RemotingClient(broker.addr)
        with pytest.raises(ProtocolError):
            await client.request(28, timeout_seconds=5)
        await client.close()

    with_standin(scenario)


def test_refused_port_is_a_connect_error_and_recovers() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        assert await max_offset(client, 0) == 0
        await broker.set_fault("refuse")
        await until_disconnected(client)  # "refuse" also drops open connections, like a crash
        with pytest.raises(RemotingConnectError) as info:
            await max_offset(client, 0)
        # The address once, then the reason: not a second time as a tuple.
        assert str(info.value) == f"{broker.addr}: connect failed: Connection refused", info.value
        await broker.set_fault("ok")  # listens again on the same port
        assert await max_offset(client, 0) == 0
        await client.close()

    with_standin(scenario)


def test_connect_timeout_is_a_connect_error() -> None:
    async def main() -> None:
        # A listener with a full accept queue: the kernel drops further SYNs, connect() hangs.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname())
        addr = f"127.0.0.1:{listener.getsockname()[1]}"
        try:
            client = RemotingClient(addr, connect_timeout_seconds=0.2)
            started = time.monotonic()
            with pytest.raises(RemotingConnectError, match="connect timed out after 0.2s"):
                await client.request(28, timeout_seconds=5)
            assert time.monotonic() - started < 1.0
            # A request timeout shorter than the connect timeout bounds the connect too.
            slow = RemotingClient(addr, connect_timeout_seconds=5)
            started = time.monotonic()
            with pytest.raises(RemotingConnectError, match="not connected within"):
                await slow.request(28, timeout_seconds=0.2)
            assert time.monotonic() - started < 1.0
            await slow.close()
            await client.close()
        finally:
            filler.close()
            listener.close()

    run(main())


def test_concurrent_requests_share_one_connect_attempt() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        await asyncio.gather(*(max_offset(client, q) for q in range(20)))
        assert client.connects == 1
        await broker.set_fault("refuse")
        await until_disconnected(client)
        results = await asyncio.gather(
            *(max_offset(client, q) for q in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, RemotingConnectError) for r in results), results
        await client.close()

    with_standin(scenario)


def test_close_fails_pending_requests_and_the_client_stays_usable() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        broker.reply_delay = 0.5
        client = RemotingClient(broker.addr)
        pending = asyncio.ensure_future(max_offset(client, 0))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(RemotingClosed, match="client closed"):
            await pending
        broker.reply_delay = 0.0
        assert await max_offset(client, 0) == 0
        await client.close()

    with_standin(scenario)


def test_binary_serialize_type_is_answered_in_kind() -> None:
    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        client = RemotingClient(broker.addr)
        cmd = RemotingCommand(
            code=RequestCode.GET_MAX_OFFSET,
            ext_fields={"topic": "T", "queueId": "0"},
            serialize_type=SerializeType.ROCKETMQ,
        )
        reply = await client.send(cmd, timeout_seconds=2)
        assert reply.serialize_type == SerializeType.ROCKETMQ
        assert reply.ext_fields["offset"] == "0"
        await client.close()

    with_standin(scenario)


def test_bad_arguments_fail_fast() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        RemotingClient("localhost")
    with pytest.raises(ValueError, match="outside 1-65535"):
        RemotingClient("127.0.0.1:70000")
    with pytest.raises(ValueError, match="connect_timeout_seconds"):
        RemotingClient("127.0.0.1:1", connect_timeout_seconds=0)

    async def main() -> None:
        client = RemotingClient("127.0.0.1:1")
        with pytest.raises(ValueError, match="timeout_seconds"):
            await client.request(28, timeout_seconds=0)

    run(main())


def test_pool_reuses_one_client_per_address() -> None:
    async def scenario(server: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        pool = ClientPool(connect_timeout_seconds=0.5)
        for _cycle in range(3):
            await asyncio.gather(
                pool.get(broker.addr).request(28, timeout_seconds=2),
                pool.get(ns.addr).request(106, timeout_seconds=2),
            )
        assert pool.get(broker.addr) is pool.get(broker.addr)
        assert len(pool) == 2 and broker.addr in pool
        assert pool.get(broker.addr).connects == 1 and pool.get(ns.addr).connects == 1
        assert pool.get(broker.addr).connect_timeout_seconds == 0.5
        await pool.close_all()
        assert len(pool) == 0

    with_standin(scenario)


def test_raw_frames_split_across_writes_are_reassembled() -> None:
    async def main() -> None:
        reply = encode_frame(RemotingCommand(code=0, opaque=1, flag=1, body=b"x" * 5000))
        handled = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1000)
                for i in range(0, len(reply), 7):  # dribble the reply out in tiny pieces
                    writer.write(reply[i : i + 7])
                    await writer.drain()
                await reader.read()  # wait for the client to go away
            finally:
                writer.close()
                handled.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RemotingClient(f"127.0.0.1:{port}")
        got = await client.request(28, timeout_seconds=5)
        assert got.body == b"x" * 5000
        await client.close()
        await asyncio.wait_for(handled.wait(), 5)
        server.close()
        await server.wait_closed()

    run(main())


def test_client_survives_being_used_from_a_second_event_loop() -> None:
    async def serve_twice() -> None:
        server = StandinServer()
        broker = server.add_broker("b", 0)
        async with server:
            client = RemotingClient(broker.addr)
            assert await max_offset(client, 0) == 0
            # Another loop (in another thread) uses the same client while the first one waits.
            loop_result: list[int] = []

            def other_loop() -> None:
                async def use() -> None:
                    loop_result.append(await max_offset(client, 0))
                    await client.close()

                asyncio.run(use())

            await asyncio.to_thread(other_loop)
            assert loop_result == [0]
            assert await max_offset(client, 0) == 0  # back on the first loop: reconnects
            assert client.connects == 3
            await client.close()

    run(serve_twice())


def test_a_connection_silent_past_the_stall_window_is_dropped_and_redialled() -> None:
    """A partition leaves the TCP connection open with nothing coming back: once requests time
    out with nothing received for STALLED_SECONDS, the next request connects afresh (and a
    healed server answers it), instead of waiting minutes for TCP to give up."""

    async def scenario(_: StandinServer, ns: StandinNamesrv, broker: StandinBroker) -> None:
        broker.queue_offsets = {("T", 2): 222}
        client = RemotingClient(broker.addr)
        assert await max_offset(client, 2) == 222
        await broker.set_fault("hang")
        began = time.monotonic()
        while time.monotonic() - began < 2.6:
            with pytest.raises(RemotingTimeout):
                await max_offset(client, 2, timeout=0.4)
        await broker.set_fault("ok")
        assert await max_offset(client, 2) == 222
        assert client.connects == 2  # redialled once the connection was taken for dead
        await client.close()

    with_standin(scenario)
