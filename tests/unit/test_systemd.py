"""SystemdNotifier against real AF_UNIX datagram sockets, as systemd's notify socket is."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from watchdog.observe import SystemdNotifier


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="sdn-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def path_socket(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(short_dir / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2.0)
        yield path, sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"rmq-watchdog-test-{os.getpid()}-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        yield "@" + name, sock


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.is_enabled
    assert notifier.watchdog_interval_seconds is None
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.reloading() is False


def test_empty_notify_socket_is_unset() -> None:
    assert not SystemdNotifier.from_environ({"NOTIFY_SOCKET": ""}).is_enabled


def test_messages_reach_a_filesystem_socket(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.is_enabled

    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.ready(status="watching 2 broker groups")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 2 broker groups"
    assert notifier.status("broker-a: MASTER_SDOWN\nsince 3.1 s")
    assert sock.recv(4096) == b"STATUS=broker-a: MASTER_SDOWN since 3.1 s"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_messages_reach_an_abstract_socket(abstract_socket: tuple[str, socket.socket]) -> None:
    name, sock = abstract_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": name})
    assert notifier.ready("up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_reloading_sends_the_monotonic_time(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading(status="reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    first, second, third = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert third == "STATUS=reloading config"


def test_default_environ_is_os_environ(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier.from_environ()
    assert notifier.watchdog_interval_seconds == 20.0
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "5000000"}, 5.0),
        ({"WATCHDOG_USEC": "1500"}, 0.0015),
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "5s"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier.from_environ(env).watchdog_interval_seconds == expected


def test_a_garbage_watchdog_usec_is_logged() -> None:
    with capture_logs() as logs:
        SystemdNotifier.from_environ({"WATCHDOG_USEC": "soon"})
    assert [(e["log_level"], e["value"]) for e in logs] == [("warning", "soon")]


@pytest.mark.parametrize("value", ["vsock:2:1234", "run/systemd/notify", "@"])
def test_an_unusable_notify_socket_disables_with_a_warning(value: str) -> None:
    with capture_logs() as logs:
        notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": value})
    assert not notifier.is_enabled
    assert notifier.ready() is False
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["notify_socket"] == value


def test_send_failures_never_raise_and_are_logged_once_per_outage(short_dir: Path) -> None:
    path = str(short_dir / "notify")  # nothing bound there yet
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})

    with capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.status("still failing") is False
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["notify_socket"] == path
    assert "No such file" in logs[0]["error"]

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2.0)
        with capture_logs() as logs:
            assert notifier.watchdog() is True
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert [e["log_level"] for e in logs] == ["info"]

    os.unlink(path)
    with capture_logs() as logs:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    assert [e["log_level"] for e in logs] == ["warning"]


def test_abstract_socket_failure_is_reported_with_its_at_name() -> None:
    name = f"@rmq-watchdog-nobody-{uuid.uuid4().hex}"
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": name})
    with capture_logs() as logs:
        assert notifier.stopping() is False
    assert [e["notify_socket"] for e in logs] == [name]
