"""The prober's `failure`: a refused connect told apart from timeouts, on real sockets."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable

import pytest

from watchdog.config import WatchdogConfig, parse_config
from watchdog.model import BrokerObservation
from watchdog.model._snapshot import BrokerFailure
from watchdog.probe import Prober
from watchdog.probe._prober import failure_of
from watchdog.remoting import (
    ClientPool,
    ProtocolError,
    RemoteError,
    RemotingClosed,
    RemotingConnectError,
    RemotingError,
    RemotingTimeout,
)
from watchdog.remoting.standin import FaultMode, StandinBroker, StandinServer

# (what the remoting client raised, the failure detection reads)
FAILURES: list[tuple[str, RemotingError, BrokerFailure]] = [
    (
        "refused",
        RemotingConnectError(
            "10.0.0.1:10911: connect failed: Connection refused", errno=errno.ECONNREFUSED
        ),
        "refused",
    ),
    (
        "no route",
        RemotingConnectError(
            "10.0.0.1:10911: connect failed: No route to host", errno=errno.EHOSTUNREACH
        ),
        "unreachable",
    ),
    (
        "connect timed out",
        RemotingConnectError("10.0.0.1:10911: connect timed out after 1s"),
        "timeout",
    ),
    (
        "not connected within the request timeout",
        RemotingConnectError("10.0.0.1:10911: not connected within the request timeout"),
        "timeout",
    ),
    # The errno decides, never the text.
    (
        "refusal text without the errno",
        RemotingConnectError("x: connect failed: Connection refused"),
        "timeout",
    ),
    (
        "refusal text in a timeout",
        RemotingTimeout("x: connect failed: Connection refused: no reply within 1s"),
        "timeout",
    ),
    (
        "no reply",
        RemotingTimeout("10.0.0.1:10911: no reply to request code 28 within 1s"),
        "timeout",
    ),
    ("connection lost", RemotingClosed("10.0.0.1:10911: connection lost"), "closed"),
    ("garbage", ProtocolError("frame length 1195725856 exceeds 16 MiB"), "protocol"),
    ("error code", RemoteError(1, "busy", 28), "remote_error"),
]


@pytest.mark.parametrize(
    ("exc", "failure"), [(e, f) for _, e, f in FAILURES], ids=[n for n, _, _ in FAILURES]
)
def test_failure_of(exc: RemotingError, failure: BrokerFailure) -> None:
    assert failure_of(exc) == failure


def _config(nameservers: list[str], brokers: dict[int, str]) -> WatchdogConfig:
    return parse_config(
        {
            "cluster_name": "test",
            "nameservers": nameservers,
            "probe": {"interval": "1s", "timeout": "500ms", "connect_timeout": "300ms"},
            "brokers": [
                {
                    "broker_name": "broker-a",
                    "broker_id": broker_id,
                    "addr": addr,
                    "properties": "/p",
                    "start": ["x"],
                    "stop": ["y"],
                }
                for broker_id, addr in brokers.items()
            ],
        }
    )


def _closed_port() -> str:
    """A local port nothing listens on (bound, then closed): a connect gets ECONNREFUSED."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def _master(prober: Prober) -> BrokerObservation:
    snapshot = await prober.snapshot()
    return next(b for b in snapshot.brokers if b.broker_id == 0)


def test_a_port_nothing_listens_on_is_refused() -> None:
    """The real kernel's refusal, through the real client: the text failure_of reads is the
    one the remoting client writes."""

    async def main() -> BrokerObservation:
        pool = ClientPool(connect_timeout_seconds=0.3)
        try:
            return await _master(Prober(_config([_closed_port()], {0: _closed_port()}), pool))
        finally:
            await pool.close_all()

    master = asyncio.run(main())
    assert not master.is_up
    assert master.failure == "refused", master.error


def _with_standin(body: Callable[[StandinBroker, Prober], Awaitable[None]]) -> None:
    async def main() -> None:
        server = StandinServer()
        ns = server.add_namesrv()
        master = server.add_broker("broker-a", 0, register_with=[ns])
        await server.start()
        pool = ClientPool(connect_timeout_seconds=0.3)
        try:
            await body(master, Prober(_config([ns.addr], {0: master.addr}), pool))
        finally:
            await pool.close_all()
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        ("refuse", "refused"),  # kill -9: nothing listens, open connections are gone
        ("hang", "timeout"),  # SIGSTOP: the kernel still accepts, nothing answers
        ("close", "closed"),
        ("garbage", "protocol"),
        ("error", "remote_error"),
    ],
)
def test_a_master_that_answered_then_fails(fault: FaultMode, failure: BrokerFailure) -> None:
    """The connection the prober keeps is live when the fault starts: a crash drops it, and
    the next probe connects afresh and is refused (not "closed", which is no crash)."""

    async def body(master: StandinBroker, prober: Prober) -> None:
        before = await _master(prober)
        assert before.is_up and before.failure is None
        await master.set_fault(fault)
        await asyncio.sleep(0.05)  # between two cycles: the client sees its connection go
        after = await _master(prober)
        assert not after.is_up
        assert after.failure == failure, after.error

    _with_standin(body)


def test_a_crash_in_the_middle_of_a_cycle_is_refused_by_the_next_probe() -> None:
    """Killed while the prober writes on its connection (here: before the client has seen the
    connection go), that probe may see the connection lost ("closed", no crash evidence); the
    next one connects afresh and is refused. The crash rule may thus take one more cycle."""

    async def body(master: StandinBroker, prober: Prober) -> None:
        assert (await _master(prober)).is_up
        await master.set_fault("refuse")
        first, second = [(await _master(prober)).failure for _ in range(2)]
        assert first in ("closed", "refused")
        assert second == "refused"

    _with_standin(body)
