"""configure_logging: one chain for structlog and stdlib, JSON off a TTY, idempotent."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from watchdog.observe import configure_logging


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_level_timestamp_logger_and_context() -> None:
    out = io.StringIO()
    assert configure_logging("json", stream=out) == "json"
    structlog.contextvars.bind_contextvars(cluster="DefaultCluster", broker_name="broker-a")

    structlog.get_logger("watchdog.loop").info("no action", master="127.0.0.1:10911")

    [event] = lines(out)
    assert event["event"] == "no action"
    assert event["level"] == "info"
    assert event["logger"] == "watchdog.loop"
    assert event["master"] == "127.0.0.1:10911"
    assert event["cluster"] == "DefaultCluster"
    assert event["broker_name"] == "broker-a"
    stamp = datetime.fromisoformat(event["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_stdlib_loggers_come_out_through_the_same_chain() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    structlog.contextvars.bind_contextvars(failover_id="f-1")

    logging.getLogger("asyncssh").warning("Connection to %s lost", "host-b")

    [event] = lines(out)
    assert event["event"] == "Connection to host-b lost"
    assert event["level"] == "warning"
    assert event["logger"] == "asyncssh"
    assert event["failover_id"] == "f-1"
    assert "timestamp" in event


def test_level_filters_structlog_and_stdlib() -> None:
    out = io.StringIO()
    configure_logging("json", level="WARNING", stream=out)

    log = structlog.get_logger("watchdog")
    log.info("dropped")
    logging.getLogger("httpx").info("dropped too")
    log.warning("kept")
    logging.getLogger("httpx").error("kept too")

    assert [e["event"] for e in lines(out)] == ["kept", "kept too"]


def test_debug_level_lets_debug_through() -> None:
    out = io.StringIO()
    configure_logging("json", level="debug", stream=out)
    structlog.get_logger().debug("probe sent", addr="127.0.0.1:9876")
    assert [(e["event"], e["level"]) for e in lines(out)] == [("probe sent", "debug")]


def test_exceptions_are_rendered_into_the_json_line() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        structlog.get_logger().exception("probe failed")
        logging.getLogger("asyncssh").exception("ssh failed")

    first, second = lines(out)
    for event in (first, second):
        assert event["level"] == "error"
        assert "Traceback (most recent call last)" in event["exception"]
        assert "ConnectionResetError: peer went away" in event["exception"]
    assert (first["event"], second["event"]) == ("probe failed", "ssh failed")


def test_auto_picks_console_on_a_tty_and_json_otherwise() -> None:
    tty = FakeTty()
    assert configure_logging("auto", stream=tty) == "console"
    structlog.get_logger().info("watching", groups=2)
    rendered = tty.getvalue()
    assert "watching" in rendered and "groups" in rendered
    with pytest.raises(json.JSONDecodeError):
        json.loads(rendered)

    plain = io.StringIO()
    assert configure_logging("auto", stream=plain) == "json"
    structlog.get_logger().info("watching", groups=2)
    [event] = lines(plain)
    assert (event["event"], event["groups"]) == ("watching", 2)
    assert set(event) == {"event", "groups", "level", "logger", "timestamp"}


def test_console_off_a_tty_has_no_colour_codes_and_shows_tracebacks() -> None:
    out = io.StringIO()
    assert configure_logging("console", stream=out) == "console"
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("watchdog.remoting").exception("decode failed")
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "decode failed" in text
    assert "ValueError: bad frame" in text


def test_calling_twice_does_not_duplicate_output() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)

    structlog.get_logger().info("once")
    logging.getLogger("httpx").info("once too")

    assert first.getvalue() == ""
    assert [e["event"] for e in lines(second)] == ["once", "once too"]
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_WatchdogHandler"]
    assert len(ours) == 1


def test_loggers_created_before_reconfiguring_follow_the_new_setup() -> None:
    configure_logging("json", stream=io.StringIO())
    log = structlog.get_logger("early")
    log.info("first")
    out = io.StringIO()
    configure_logging("json", level="error", stream=out)
    log.warning("filtered now")
    log.error("shown")
    assert [e["event"] for e in lines(out)] == ["shown"]


def test_capture_logs_sees_events_with_their_level() -> None:
    configure_logging("json", stream=io.StringIO())
    with capture_logs() as captured:
        structlog.get_logger().warning("master unreachable", broker_name="broker-a")
    assert captured == [
        {"event": "master unreachable", "broker_name": "broker-a", "log_level": "warning"}
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xml"}, "log format must be one of"),
        ({"level": "verbose"}, "log level must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_logging(stream=io.StringIO(), **kwargs)


def test_asyncssh_chatter_stays_out_of_the_log() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.getLogger("asyncssh").info("[conn=0, chan=1] Command: kill -0 1")
    logging.getLogger("asyncssh").warning("[conn=0] Connection lost")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["[conn=0] Connection lost"]
