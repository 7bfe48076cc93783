"""DaemonChild against a stand-in daemon: the argv it builds, its environment, log reading, stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from watchdog.tools.daemon_child import (
    CRASH_AFTER_STEP_ENV,
    DaemonChild,
    DaemonChildExited,
    DaemonChildTimeout,
    child_env,
)

# Run as the prefix, so it receives the daemon's argv after its own name: it logs that argv and
# the crash variable as JSON, then does what MODE says.
STAND_IN = """
import json, os, signal, sys, time
mode = sys.argv[1]
argv = sys.argv[2:]
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def line(**fields):
    fields.setdefault("timestamp", "2030-01-01T00:00:00+00:00")
    print(json.dumps(fields), flush=True)
line(event="started", argv=argv, crash=os.environ.get("RMQ_WATCHDOG_CRASH_AFTER_STEP"))
print("not json", flush=True)
sys.stdout.write('{"event": "half')
sys.stdout.flush()
time.sleep(0.3)
sys.stdout.write(' a line"}\\n')
line(event="old", timestamp="2000-01-01T00:00:00+00:00")
sys.stdout.flush()
if mode == "exit":
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def _child(tmp_path: Path, mode: str, **kwargs: object) -> DaemonChild:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return DaemonChild(
        tmp_path / "watchdog.toml",
        tmp_path / "daemon.log",
        prefix=[sys.executable, str(script), mode],
        **kwargs,  # type: ignore[arg-type]
    )


def test_argv_env_and_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_AFTER_STEP_ENV, "2")
    with _child(tmp_path, "run") as child:
        started = child.wait_for(lambda e: e.get("event") == "started", 10, "the start line")
        assert started["argv"] == [sys.executable, "-m", "watchdog", "run", "-c",
                                   str(tmp_path / "watchdog.toml"), "--log-format", "json"]
        assert started["crash"] is None  # inherited crash hooks are dropped
        child.wait_for(lambda e: e.get("event") == "half a line", 10, "the split line")
        # `after` skips lines logged before it.
        with pytest.raises(DaemonChildTimeout, match="the old line"):
            child.wait_for(lambda e: e.get("event") == "old", 0.5, "the old line", after=1e9)
        assert [e["event"] for e in child.events()] == ["started", "half a line", "old"]
        assert "not json" in child.tail()
    assert child.returncode == -signal.SIGTERM


def test_explicit_env_wins(tmp_path: Path) -> None:
    with _child(tmp_path, "run", env={CRASH_AFTER_STEP_ENV: "4"}) as child:
        started = child.wait_for(lambda e: e.get("event") == "started", 10, "the start line")
    assert started["crash"] == "4"


def test_exit_before_the_event(tmp_path: Path) -> None:
    child = _child(tmp_path, "exit")
    with pytest.raises(DaemonChildExited, match=r"exited \(3\) before a promotion"):
        child.wait_for(lambda e: e.get("event") == "promote", 10, "a promotion")
    assert child.wait_exit(5) == 3
    assert child.stop() == 3


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    child = _child(tmp_path, "ignore-term")
    child.wait_for(lambda e: e.get("event") == "old", 10, "the last line")
    assert child.stop(timeout_seconds=0.5) == -signal.SIGKILL
    assert not child.is_running


def test_stop_async(tmp_path: Path) -> None:
    child = _child(tmp_path, "ignore-term")
    child.wait_for(lambda e: e.get("event") == "started", 10, "the start line")
    assert asyncio.run(child.stop_async(timeout_seconds=0.3)) == -signal.SIGKILL


def test_child_env_puts_this_tree_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_env({"X": "1"})
    root = str(Path(__file__).resolve().parents[2])
    assert env["PYTHONPATH"].split(":") == [root, "/elsewhere"]
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["X"] == "1"
    assert json.dumps(env)  # plain strings only
