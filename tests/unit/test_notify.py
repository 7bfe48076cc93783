"""Webhooks against a real local HTTP server, and hooks as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from watchdog.observe import (
    EVENT_NAMES,
    Delivery,
    Event,
    HookRunner,
    HooksConfig,
    NotifyConfig,
    WebhookConfig,
    WebhookNotifier,
    alertmanager_payload,
    json_payload,
    switchover_event_name,
)


def _notifier(hooks: list[WebhookConfig]) -> WebhookNotifier:
    # Backoff in tests: short enough to keep retries fast, still exercised.
    return WebhookNotifier(hooks, backoff_base_seconds=0.01, backoff_max_seconds=0.05)


def _send(hooks: list[WebhookConfig], event: Event) -> tuple[Delivery, ...]:
    async def main() -> tuple[Delivery, ...]:
        notifier = _notifier(hooks)
        try:
            return await notifier.send(event)
        finally:
            await notifier.aclose()

    return asyncio.run(main())


def _event(name: str = "failover_succeeded", **kw: Any) -> Event:
    values: dict[str, Any] = {
        "name": name,
        "broker_name": "broker-a",
        "failover_id": "fo-20241125-0001",
        "at": 1732521600.25,
        "summary": "promoted broker-a id=1 at 127.0.0.1:10921 (0 bytes behind)",
        "steps": (
            {"step": "stop_old_master", "outcome": "ok"},
            {"step": "promote", "outcome": "ok"},
        ),
        "details": {"old_master": "127.0.0.1:10911", "lag_bytes": 0},
    }
    values.update(kw)
    return Event(**values)


# --- a real HTTP receiver --------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with scripted statuses and records requests."""

    def __init__(self, statuses: list[int] | None = None, hold: threading.Event | None = None):
        self.statuses = list(statuses or [])
        self.requests: list[dict[str, Any]] = []
        self.hold = hold  # while set-able and unset, requests wait before being recorded
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                receiver.received.set()
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=secret"

    def json(self, index: int) -> Any:
        return json.loads(self.requests[index]["body"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    if r.hold is not None:
        r.hold.set()
    r.server.shutdown()
    r.server.server_close()


def _webhook(url: str, **kw: Any) -> WebhookConfig:
    return WebhookConfig.model_validate({"url": url, "timeout": "2s", **kw})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- payloads --------------------------------------------------------------------------------


def test_json_payload_shape() -> None:
    payload = json_payload(_event())
    assert payload == {
        "event": "failover_succeeded",
        "broker_name": "broker-a",
        "failover_id": "fo-20241125-0001",
        "at": 1732521600.25,
        "summary": "promoted broker-a id=1 at 127.0.0.1:10921 (0 bytes behind)",
        "steps": [
            {"step": "stop_old_master", "outcome": "ok"},
            {"step": "promote", "outcome": "ok"},
        ],
        "details": {"old_master": "127.0.0.1:10911", "lag_bytes": 0},
    }


def test_alertmanager_payload_is_postable_alerts() -> None:
    (alert,) = alertmanager_payload(_event("failover_failed"))
    assert alert["labels"] == {
        "alertname": "RmqWatchdogFailoverFailed",
        "broker_name": "broker-a",
        "severity": "critical",
        "event": "failover_failed",
        "failover_id": "fo-20241125-0001",
    }
    assert alert["annotations"]["summary"] == _event().summary
    assert "step=promote, outcome=ok" in alert["annotations"]["description"]
    assert alert["startsAt"] == "2024-11-25T08:00:00.250Z"
    assert datetime.fromisoformat(alert["startsAt"]).timestamp() == 1732521600.25
    assert set(alert) == {"labels", "annotations", "startsAt"}
    assert all(isinstance(v, str) and v for v in alert["labels"].values())


def test_every_event_has_an_alertname_and_severity() -> None:
    for name in EVENT_NAMES:
        (alert,) = alertmanager_payload(_event(name, failover_id=None))
        assert alert["labels"]["alertname"].startswith("RmqWatchdog")
        assert "_" not in alert["labels"]["alertname"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert "failover_id" not in alert["labels"]
    (down,) = alertmanager_payload(_event("master_down"))
    assert down["labels"]["alertname"] == "RmqWatchdogMasterDown"


def test_a_switchover_has_event_names_of_its_own() -> None:
    """A receiver or route that pages on failover_* is not paged by a planned switchover;
    only its failure is critical."""
    pairs = {n: switchover_event_name(n) for n in EVENT_NAMES if n.startswith("failover_")}
    assert pairs == {
        "failover_started": "switchover_started",
        "failover_step": "switchover_step",
        "failover_succeeded": "switchover_succeeded",
        "failover_failed": "switchover_failed",
        "failover_blocked": "switchover_blocked",
    }
    assert switchover_event_name("awaiting_fence") == "awaiting_fence"
    assert set(pairs.values()) <= set(EVENT_NAMES)
    severity = {
        n: alertmanager_payload(_event(n))[0]["labels"]["severity"] for n in pairs.values()
    }
    assert severity == {
        "switchover_started": "info",
        "switchover_step": "info",
        "switchover_succeeded": "info",
        "switchover_failed": "critical",
        "switchover_blocked": "warning",
    }
    (alert,) = alertmanager_payload(_event("switchover_succeeded"))
    assert alert["labels"]["alertname"] == "RmqWatchdogSwitchoverSucceeded"


def test_payload_survives_values_json_cannot_hold() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    event = _event(details={"obj": object(), "nan": float("nan"), "path": Path("/x"),
                            "cyclic": cyclic, 3: {1, 2}})
    text = json.dumps(json_payload(event), allow_nan=False)  # strict JSON, no NaN tokens
    details = json.loads(text)["details"]
    assert details["nan"] == "nan" and details["path"] == "/x" and details["3"] == [1, 2]


def test_event_is_validated_and_detached_from_the_callers_dicts() -> None:
    with pytest.raises(ValueError, match="event name must be one of"):
        _event("failover_exploded")
    with pytest.raises(ValueError, match="Unix seconds"):
        _event(at=float("inf"))
    details = {"k": "before"}
    event = _event(details=details)
    details["k"] = "after"
    assert event.details["k"] == "before"
    with pytest.raises(TypeError):
        event.details["k"] = "x"  # type: ignore[index]


# --- config ----------------------------------------------------------------------------------


def test_webhook_config_from_toml_values() -> None:
    config = NotifyConfig.model_validate(
        {"webhook": [{"url": "https://am.example:9093/api/v2/alerts", "format": "alertmanager",
                      "timeout": "800ms", "retries": 2, "headers": {"Authorization": "Bearer x"},
                      "events": ["failover_failed", "master_down"]}]}
    )
    (hook,) = config.webhook
    assert hook.timeout_seconds == 0.8 and hook.retries == 2 and hook.format == "alertmanager"
    assert hook.events == ("failover_failed", "master_down")
    default = _webhook("http://127.0.0.1:1/")
    assert "failover_step" not in default.events and "switchover_step" not in default.events
    assert set(default.events) == set(EVENT_NAMES) - {"failover_step", "switchover_step"}
    assert default.timeout_seconds == 2.0 and default.retries == 3 and default.format == "json"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"url": "ftp://x/"}, "not an http:// or https:// URL"),
        ({"url": "http:///nohost"}, "not an http:// or https:// URL"),
        ({"url": "http://x/", "timeout": 5}, "needs its unit"),
        ({"url": "http://x/", "timeout": "0s"}, "greater than 0"),
        ({"url": "http://x/", "retries": -1}, "greater than or equal to 0"),
        ({"url": "http://x/", "retries": 11}, "less than or equal to 10"),
        ({"url": "http://x/", "events": ["failover_exploded"]}, "failover_started"),
        ({"url": "http://x/", "events": []}, "at least 1"),
        ({"url": "http://x/", "format": "xml"}, "'json' or 'alertmanager'"),
        ({"url": "http://x/", "headers": {"X-A": "a\r\nInjected: 1"}}, "line breaks"),
        ({"url": "http://x/", "headers": {"Bad Name": "v"}}, "not a valid HTTP header name"),
        ({"url": "http://x/", "retry": 3}, "Extra inputs are not permitted"),
    ],
)
def test_webhook_config_refuses_bad_values(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says.replace("(", r"\(").replace(")", r"\)")):
        WebhookConfig.model_validate(values)


def test_hooks_config() -> None:
    hooks = HooksConfig.model_validate({"pre_failover": ["/bin/true", "--x"], "timeout": "2s"})
    assert hooks.pre_failover == ("/bin/true", "--x") and hooks.post_failover is None
    assert hooks.timeout_seconds == 2.0
    assert HooksConfig().timeout_seconds == 30.0
    with pytest.raises(ValidationError, match="not a string: no shell"):
        HooksConfig.model_validate({"pre_failover": "/bin/check && echo ok"})
    with pytest.raises(ValidationError, match="non-empty argv list"):
        HooksConfig.model_validate({"on_failure": []})
    with pytest.raises(ValidationError, match="must not contain NUL"):
        HooksConfig.model_validate({"on_failure": ["/bin/x", "a\0b"]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        HooksConfig.model_validate({"pre_promote": ["/bin/true"]})


# --- webhook delivery ------------------------------------------------------------------------


def test_json_webhook_delivered(receiver: Receiver) -> None:
    hook = _webhook(receiver.url, headers={"Authorization": "Bearer s3cret"})

    (delivery,) = _send([hook], _event())
    assert delivery.is_ok and delivery.attempts == 1 and delivery.status_code == 200
    assert "secret" not in delivery.url  # the query (a token) is never logged or returned
    (request,) = receiver.requests
    assert request["path"] == "/hook?token=secret"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert receiver.json(0) == json_payload(_event())


def test_alertmanager_webhook_delivered(receiver: Receiver) -> None:
    hook = _webhook(receiver.url, format="alertmanager")

    (delivery,) = _send([hook], _event("master_down"))
    assert delivery.is_ok
    body = receiver.json(0)
    assert isinstance(body, list) and body[0]["labels"]["alertname"] == "RmqWatchdogMasterDown"


def test_server_errors_are_retried_until_success(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 200]
    hook = _webhook(receiver.url, retries=3)

    (delivery,) = _send([hook], _event())
    assert delivery.is_ok and delivery.attempts == 3
    assert len(receiver.requests) == 3
    assert receiver.json(0) == receiver.json(2)  # the same payload each time


def test_retries_are_bounded_and_failure_is_a_value(receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    hook = _webhook(receiver.url, retries=2)

    (delivery,) = _send([hook], _event())
    assert not delivery.is_ok
    assert delivery.attempts == 3 and len(receiver.requests) == 3
    assert delivery.error == "HTTP 503" and delivery.status_code == 503


@pytest.mark.parametrize(("status", "attempts"), [(404, 1), (400, 1), (429, 3), (408, 3)])
def test_which_statuses_are_retried(receiver: Receiver, status: int, attempts: int) -> None:
    receiver.statuses = [status] * 10
    hook = _webhook(receiver.url, retries=2)

    (delivery,) = _send([hook], _event())
    assert not delivery.is_ok and delivery.attempts == attempts == len(receiver.requests)
    assert delivery.error == f"HTTP {status}"


def test_unreachable_webhook_is_retried_and_never_raises() -> None:
    hook = _webhook(f"http://127.0.0.1:{_closed_port()}/x", retries=2)

    (delivery,) = _send([hook], _event())
    assert not delivery.is_ok and delivery.attempts == 3
    assert delivery.error is not None and "ConnectError" in delivery.error


def test_one_dead_webhook_does_not_stop_another(receiver: Receiver) -> None:
    dead = _webhook(f"http://127.0.0.1:{_closed_port()}/x", retries=0)
    alive = _webhook(receiver.url)

    deliveries = _send([dead, alive], _event())
    assert [d.is_ok for d in deliveries] == [False, True]
    assert len(receiver.requests) == 1


def test_dispatch_returns_before_the_receiver_hears_anything(receiver: Receiver) -> None:
    """dispatch() only schedules a task: the failover goes on while the receiver is stuck."""
    receiver.hold = threading.Event()  # the receiver will not answer until released
    hook = _webhook(receiver.url, retries=0, timeout="5s")
    order: list[str] = []

    async def failover_step() -> None:
        order.append("failover step done")

    async def main() -> Any:
        notifier = _notifier([hook])
        task = notifier.dispatch(_event("failover_started"))
        assert task is not None and isinstance(task, asyncio.Task)
        # Nothing was sent yet: dispatch did not even open a connection.
        assert receiver.requests == [] and not task.done() and notifier.pending == 1
        await failover_step()
        await asyncio.sleep(0.2)  # the delivery is now waiting on the stuck receiver
        assert not task.done() and receiver.requests == []
        order.append("failover went on while the webhook hung")
        receiver.hold.set()  # type: ignore[union-attr]
        await notifier.aclose(timeout_seconds=10)
        order.append("delivered")
        assert notifier.pending == 0
        return task.result()

    (delivery,) = asyncio.run(main())
    assert order == ["failover step done", "failover went on while the webhook hung", "delivered"]
    assert delivery.is_ok and len(receiver.requests) == 1


def test_one_webhook_gets_events_in_dispatch_order(receiver: Receiver) -> None:
    """The first event meets a failing receiver and is retried; the ones dispatched after it
    wait for it, so the receiver still reads them in order, the outcome last."""
    receiver.statuses = [503, 503]
    names = ["master_down", "failover_started", "failover_step", "failover_succeeded"]
    hook = _webhook(receiver.url, retries=3, events=names)

    async def main() -> None:
        notifier = _notifier([hook])
        for name in names:
            notifier.dispatch(_event(name))
        await notifier.aclose(timeout_seconds=20)

    asyncio.run(main())
    received = [receiver.json(i)["event"] for i in range(len(receiver.requests))]
    assert received == [names[0]] * 3 + names[1:]


def test_blackholed_webhook_is_bounded_and_aclose_cancels_it() -> None:
    """A port that accepts connections but never answers: the delivery times out per attempt,
    and aclose() gives up on it after its own bound instead of waiting for every retry."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
    port = blackhole.getsockname()[1]
    try:
        slow = _webhook(f"http://127.0.0.1:{port}/x", retries=10, timeout="5s")
        quick = _webhook(f"http://127.0.0.1:{port}/x", retries=1, timeout="100ms")

        async def main() -> tuple[Any, asyncio.Task[Any], float]:
            bounded = _notifier([quick])
            quick_result = await bounded.send(_event())
            await bounded.aclose()

            notifier = _notifier([slow])
            task = notifier.dispatch(_event())
            assert task is not None and not task.done()
            started = time.monotonic()
            await notifier.aclose(timeout_seconds=0.2)
            return quick_result, task, time.monotonic() - started

        (quick_delivery,), task, close_seconds = asyncio.run(main())
    finally:
        blackhole.close()
    assert not quick_delivery.is_ok and quick_delivery.attempts == 2
    assert "Timeout" in (quick_delivery.error or "")
    assert task.cancelled()
    # Far below one attempt's 5 s timeout: aclose did not wait for the stuck delivery.
    assert close_seconds < 5.0


def test_events_nobody_subscribed_to_are_not_sent(receiver: Receiver) -> None:
    hook = _webhook(receiver.url, events=["failover_failed"])

    async def main() -> None:
        notifier = _notifier([hook])
        assert notifier.dispatch(_event("failover_succeeded")) is None
        assert await notifier.send(_event("failover_step")) == ()
        task = notifier.dispatch(_event("failover_failed"))
        assert task is not None
        await notifier.aclose()
        assert notifier.dispatch(_event("failover_failed")) is None  # closed

    asyncio.run(main())
    assert [receiver.json(i)["event"] for i in range(len(receiver.requests))] == [
        "failover_failed"
    ]


def test_max_delivery_seconds_cuts_off_retries(receiver: Receiver) -> None:
    receiver.statuses = [500] * 100
    hook = _webhook(receiver.url, retries=10)

    async def main() -> Any:
        # Generous enough that the first attempt lands even on a loaded machine; the 11 attempts
        # retries=10 allows would need 3 s of backoff alone, so the cut-off must end it first.
        notifier = WebhookNotifier(
            [hook], backoff_base_seconds=0.3, backoff_max_seconds=0.3, max_delivery_seconds=2.0
        )
        try:
            return await notifier.send(_event())
        finally:
            await notifier.aclose()

    (delivery,) = asyncio.run(main())
    assert not delivery.is_ok and delivery.error == "gave up after 2 s"
    assert 1 <= len(receiver.requests) < 11


# --- hooks -----------------------------------------------------------------------------------


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _run_hook(hooks: dict[str, Any], hook: Any, event: Event | None = None,
              environ: dict[str, str] | None = None) -> Any:
    runner = HookRunner(HooksConfig.model_validate(hooks), base_environ=environ)
    return asyncio.run(runner.run(hook, event or _event()))


def test_hook_allows(tmp_path: Path) -> None:
    script = _script(tmp_path, "allow", "echo 'no change freeze'\nexit 0\n")
    result = _run_hook({"pre_failover": [script]}, "pre_failover")
    assert result.is_ok and not result.is_veto and result.exit_code == 0
    assert result.reason == "pre_failover hook succeeded: no change freeze"


def test_hook_vetoes_with_its_reason(tmp_path: Path) -> None:
    script = _script(tmp_path, "veto", "echo 'change freeze until 18:00' >&2\nexit 3\n")
    result = _run_hook({"pre_failover": [script]}, "pre_failover")
    assert result.is_veto and result.exit_code == 3 and not result.is_timed_out
    assert result.reason == "pre_failover hook exited 3: change freeze until 18:00"


def test_failing_post_hook_is_not_a_veto(tmp_path: Path) -> None:
    script = _script(tmp_path, "fail", "exit 1\n")
    result = _run_hook({"post_failover": [script]}, "post_failover", _event())
    assert not result.is_ok and not result.is_veto and result.exit_code == 1


def _is_dead(pid: int) -> bool:
    # PID 1 on some machines does not reap orphans: a zombie (state Z) is dead too.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_hook_timeout_kills_it_and_its_children_and_vetoes(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = _script(tmp_path, "slow", f"sleep 60 &\necho $! > '{pidfile}'\nwait\n")
    result = _run_hook({"pre_failover": [script], "timeout": "300ms"}, "pre_failover")
    assert result.is_timed_out and result.is_veto and result.exit_code is None
    assert result.reason.startswith("pre_failover hook timed out after 0.")
    assert result.duration_seconds < 10  # not the child's 60 s
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while not _is_dead(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _is_dead(child), f"the hook's child {child} survived the timeout"


def test_hook_that_cannot_start_vetoes(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    result = _run_hook({"pre_failover": [missing]}, "pre_failover")
    assert result.is_veto and result.error is not None
    assert result.reason.startswith(f"pre_failover hook could not start: {missing}: ")
    not_executable = tmp_path / "plain.txt"
    not_executable.write_text("echo hi\n")
    result = _run_hook({"pre_failover": [str(not_executable)]}, "pre_failover")
    assert result.is_veto and "could not start" in result.reason


def test_unconfigured_hook_is_a_no_op() -> None:
    result = _run_hook({}, "pre_failover")
    assert not result.is_configured and result.is_ok and not result.is_veto
    assert result.reason == "no pre_failover hook configured"


def test_hook_sees_the_event_only_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.out"
    names = ["RMQ_WATCHDOG_HOOK", "RMQ_WATCHDOG_EVENT", "RMQ_WATCHDOG_BROKER_NAME",
             "RMQ_WATCHDOG_FAILOVER_ID", "RMQ_WATCHDOG_AT", "RMQ_WATCHDOG_SUMMARY",
             "RMQ_WATCHDOG_EVENT_JSON", "RMQ_WATCHDOG_STALE", "PATH"]
    body = "".join(f"printf '%s\\0' \"${{{n}-<unset>}}\" >> '{out}'\n" for n in names)
    body += f"printf '%s\\0' \"$#\" >> '{out}'\n"
    script = _script(tmp_path, "env", body)
    event = _event("failover_failed", summary="it's $(broken) `now`; \"quoted\" | & >x\n2nd line")
    environ = {"PATH": "/usr/bin:/bin", "RMQ_WATCHDOG_STALE": "from the daemon's parent"}
    result = _run_hook({"on_failure": [script]}, "on_failure", event, environ)
    assert result.is_ok, result.reason
    seen = dict(zip(names + ["argc"], out.read_text().split("\0")[:-1], strict=True))
    assert seen["RMQ_WATCHDOG_HOOK"] == "on_failure"
    assert seen["RMQ_WATCHDOG_EVENT"] == "failover_failed"
    assert seen["RMQ_WATCHDOG_BROKER_NAME"] == "broker-a"
    assert seen["RMQ_WATCHDOG_FAILOVER_ID"] == "fo-20241125-0001"
    assert seen["RMQ_WATCHDOG_AT"] == "1732521600.250"
    assert seen["RMQ_WATCHDOG_SUMMARY"] == event.summary
    assert json.loads(seen["RMQ_WATCHDOG_EVENT_JSON"]) == json_payload(event)
    assert seen["RMQ_WATCHDOG_STALE"] == "<unset>"  # inherited RMQ_WATCHDOG_* are dropped
    assert seen["PATH"] == "/usr/bin:/bin"
    assert seen["argc"] == "0"  # nothing from the event became an argument
    assert not (tmp_path / "x").exists()


def test_hook_arguments_with_shell_metacharacters_are_passed_literally(tmp_path: Path) -> None:
    out = tmp_path / "args.out"
    script = _script(
        tmp_path, "args", f"for a in \"$@\"; do printf '%s\\0' \"$a\" >> '{out}'; done\n"
    )
    weird = ["; touch pwned", "$(touch pwned)", "`touch pwned`", "a b  c", "*", "'\"", "|&>x",
             "--flag=$HOME", ""]
    result = _run_hook({"post_failover": [script, *weird]}, "post_failover")
    assert result.is_ok, result.reason
    assert out.read_text().split("\0")[:-1] == weird
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert not (tmp_path / "x").exists()


def test_hook_runs_even_with_garbage_in_the_event(tmp_path: Path) -> None:
    out = tmp_path / "summary"
    script = _script(tmp_path, "s", f"printf '%s' \"$RMQ_WATCHDOG_SUMMARY\" > '{out}'\n")
    event = _event(summary="nul\0here \ud800 surrogate", broker_name="b\0")
    result = _run_hook({"post_failover": [script]}, "post_failover", event)
    assert result.is_ok, result.reason
    assert out.read_text() == "nul\ufffdhere ? surrogate"


def test_hook_output_is_bounded(tmp_path: Path) -> None:
    script = _script(tmp_path, "chatty", "head -c 200000 /dev/zero | tr '\\0' 'x'\n")
    result = _run_hook({"post_failover": [script]}, "post_failover")
    assert result.is_ok
    assert result.output.endswith("[output truncated]") and len(result.output) < 70 * 1024


def test_hook_runner_rejects_unknown_hook_names() -> None:
    runner = HookRunner(HooksConfig())
    with pytest.raises(ValueError, match="hook must be one of"):
        asyncio.run(runner.run("pre_promote", _event()))  # type: ignore[arg-type]


def test_environment_keeps_the_daemons_variables_by_default(tmp_path: Path) -> None:
    out = tmp_path / "home"
    script = _script(tmp_path, "h", f"printf '%s' \"$HOME\" > '{out}'\n")
    result = _run_hook({"post_failover": [script]}, "post_failover")
    assert result.is_ok and out.read_text() == os.environ.get("HOME", "")
