"""A webhook receiver gets the events of a real sandbox failover, hooks run around it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon_harness import running_daemon

pytestmark = pytest.mark.integration


class Receiver:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def names(self) -> list[str]:
        with self.lock:
            return [p["event"] for p in self.payloads]


@pytest.fixture()
def receiver() -> Iterator[tuple[Receiver, str]]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with received.lock:
                received.payloads.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_gets_failover_events_and_hooks_run(
    fresh_sandbox: Any, tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    received, url = receiver
    sandbox = fresh_sandbox()
    marker = tmp_path / "post-failover.env"
    hook = tmp_path / "post-hook.sh"
    hook.write_text(f'#!/bin/sh\nenv | grep ^RMQ_WATCHDOG_ > "{marker}"\n')
    hook.chmod(0o755)
    config = Path(sandbox.config_path)
    config.write_text(
        config.read_text()
        + f'\n[hooks]\npost_failover = ["{hook}"]\n'
        + f'\n[[notify.webhook]]\nurl = "{url}"\n'
        + 'events = ["master_down", "failover_started", "failover_step", "failover_succeeded",'
        + ' "failover_failed"]\n'
    )
    with running_daemon(config, tmp_path / "daemon.log") as d:
        d.wait_event(lambda e: e.get("state") == "HEALTHY", 60, "a healthy cycle")
        sandbox.kill("broker-a:0", "KILL")
        done = d.wait_event(
            lambda e: str(e.get("event", "")).startswith("failover succeeded"), 120, "failover"
        )
        deadline = time.monotonic() + 20
        while "failover_succeeded" not in received.names() and time.monotonic() < deadline:
            time.sleep(0.2)

    names = received.names()
    assert names[0] == "master_down", names
    assert "failover_started" in names and names[-1] == "failover_succeeded", names
    assert names.index("failover_started") < names.index("failover_succeeded")
    final = received.payloads[-1]
    assert final["broker_name"] == "broker-a"
    assert final["failover_id"] == done["failover_id"]
    assert final["details"]["new_master"] == "broker-a:1"
    # In plan order (steps side by side end in any order): the fence lane, the candidate's.
    kinds = [s["kind"] for s in sorted(final["steps"], key=lambda s: s["index"])]
    assert kinds[:6] == ["rewrite", "stop", "stop", "rewrite", "confirm_fenced", "start"]
    assert all(s["status"] in ("done", "skipped") for s in final["steps"])
    step_events = [p for p in received.payloads if p["event"] == "failover_step"]
    assert len(step_events) == len(final["steps"])
    assert {p["failover_id"] for p in received.payloads[1:]} == {done["failover_id"]}

    env = dict(line.split("=", 1) for line in marker.read_text().splitlines())
    assert env["RMQ_WATCHDOG_BROKER_NAME"] == "broker-a"
    assert env["RMQ_WATCHDOG_FAILOVER_ID"] == done["failover_id"]
