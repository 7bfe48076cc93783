"""The install test's harness: the README's steps in a systemd container, and what they need.

The host side (a sandbox cluster, an sshd, a wheelhouse, the site's watchdog.toml) and the
inside (the README's blocks run in the source tree, journal reading) for conftest.py's fixtures
and test_install.py; see conftest.py for the phases.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.sshd import SshdServer
from tests.systemd.container import Container, Entry
from tests.systemd.readme import Block

REPO = Path(__file__).resolve().parents[2]
RMQ_WATCHDOG = str(Path(sys.executable).parent / "rmq-watchdog")

SRC = "/usr/src/rmq-watchdog"  # the source tree inside the container
UNIT = "rmq-watchdog.service"
CONFIG = "/etc/rmq-watchdog/watchdog.toml"
MASTER, SLAVE = "broker-a:0", "broker-a:1"
BROKER_HOST = "broker-host"  # the [hosts] name of the sshd

# The README's placeholder, and the offline form it tells operators to put in its place.
PLACEHOLDER = "/path/to/rmq-watchdog"
OFFLINE_INSTALL = "--no-index --find-links wheelhouse rmq-watchdog"
WHEELHOUSE_BUILD = "pip wheel -w wheelhouse /path/to/rmq-watchdog"
CONTAINER_PYTHON = (3, 11)  # Debian bookworm's python3

SANDBOX_UP_TIMEOUT_SECONDS = 300
FAILOVER_TIMEOUT_SECONDS = 180


def phase_line(name: str, seconds: float, note: str = "") -> str:
    return f"[systemd phase] {name:<32} {seconds:6.1f} s{'  ' + note if note else ''}"


@dataclass
class Phase:
    name: str
    note: str = ""


@dataclass
class Phases:
    """How long each phase took; printed as it ends and again in pytest's summary."""

    lines: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[Phase]:
        phase = Phase(name)
        started = time.monotonic()
        try:
            yield phase
        finally:
            self.add(phase.name, time.monotonic() - started, phase.note)

    def add(self, name: str, seconds: float, note: str = "") -> None:
        line = phase_line(name, seconds, note)
        self.lines.append(line)
        print(line, flush=True)


PHASES = Phases()


@dataclass
class Install:
    """What `installed` made: the container, the host's sandbox and sshd, the README's blocks."""

    container: Container
    sandbox_dir: Path
    sshd: SshdServer
    properties_before: dict[str, str]  # broker key -> its properties text before any failover
    addrs: dict[str, str]  # broker key -> host:port
    metrics: str  # the daemon's metrics endpoint, host:port (the host's network)
    install_cursor: str  # the journal before the README's first block
    outputs: list[tuple[Block, str]]  # every block run, with its output
    broker_host_blocks: list[Block]  # run by the gate test
    not_run: list[tuple[Block, str]]  # with the reason

    def ensure_running(self) -> None:
        if self.container.show(UNIT, "ActiveState")["ActiveState"] != "active":
            self.container.run(["systemctl", "start", UNIT])


def daemon_events(entries: list[Entry]) -> list[dict[str, Any]]:
    """The daemon's JSON log lines among journal entries, parsed, with the entry as "_journal"."""
    events = []
    for entry in entries:
        if entry.get("_SYSTEMD_UNIT") == UNIT and entry["MESSAGE"].startswith("{"):
            event = json.loads(entry["MESSAGE"])
            event["_journal"] = entry
            events.append(event)
    return events


def sandbox_cli(*args: str, timeout: float = SANDBOX_UP_TIMEOUT_SECONDS) -> str:
    result = subprocess.run(
        [RMQ_WATCHDOG, "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rmq-watchdog sandbox {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def container_config(sandbox: dict[str, Any], sshd: SshdServer) -> str:
    """The site's watchdog.toml: the sandbox's cluster, every broker and check over SSH."""

    def q(value: object) -> str:
        return json.dumps(value)  # a JSON string or list of strings is TOML too

    out = [
        "# rmq-watchdog's install test: the host's sandbox cluster, its brokers over SSH",
        f"cluster_name = {q(sandbox['cluster_name'])}",
        f"nameservers = {q(sandbox['nameservers'])}",
        'state_dir = "/var/lib/rmq-watchdog"',
        "",
        f"[hosts.{BROKER_HOST}]",
        'kind = "ssh"',
        # A name, not an address: resolved (/etc/hosts) by the daemon under the unit's hardening.
        'address = "localhost"',
        f"port = {sshd.port}",
        f"user = {q(sshd.user)}",
        'known_hosts = "/etc/rmq-watchdog/known_hosts"',
        'client_keys = ["/etc/rmq-watchdog/id_ed25519"]',
        'connect_timeout = "5s"',
        "",
        "[metrics]",
        f"listen = {q(sandbox['metrics']['listen'])}",
        "",
        "[failover]",
        'recovery_block = "1h"',
        'canary_timeout = "60s"',
    ]
    for check in sandbox.get("secondary_checks", []):
        out += [
            "",
            "[[secondary_checks]]",
            f"name = {q(check['name'])}",
            f"host = {q(BROKER_HOST)}",
            f"command = {q(check['command'])}",
        ]
    for broker in sandbox["brokers"]:
        out += ["", "[[brokers]]"]
        out += [f"{key} = {q(broker[key])}" for key in ("broker_name", "broker_id", "addr")]
        out += [f"properties = {q(broker['properties'])}", f"host = {q(BROKER_HOST)}"]
        out += [f"{key} = {q(broker[key])}" for key in ("start", "stop", "kill") if key in broker]
    return "\n".join(out) + "\n"


def classify(blocks: list[Block]) -> tuple[list[Block], list[Block], list[tuple[Block, str]]]:
    """(blocks to run at install, blocks for a broker host, blocks not run with the reason)."""
    run, broker_host, not_run = [], [], []
    for block in blocks:
        if "rmq-broker-gate" in block.commands:
            broker_host.append(block)
        elif "usermod" in block.commands and "/opt/rocketmq/conf" in block.commands:
            not_run.append(
                (block, 'for brokers on the watchdog\'s host (kind = "local"); these are on SSH')
            )
        else:
            run.append(block)
    return run, broker_host, not_run


def copy_source_tree(target: Path) -> None:
    """The files an operator's checkout has that the install uses (no venv, no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.epoch", "*.bak")
    target.mkdir(parents=True)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy2(REPO / name, target / name)
    for name in ("watchdog", "deploy", "config"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)


def build_wheelhouse(source: Path) -> int:
    """The README's `pip wheel -w wheelhouse /path/to/rmq-watchdog`, run in the source tree with
    this venv's pip; the number of wheels. The README asks for the same Python minor version as
    the installing host's: the test fails (never skips) when this venv's is not the container's.
    """
    if sys.version_info[:2] != CONTAINER_PYTHON:
        pytest.fail(
            f"the wheelhouse is built with this venv's Python "
            f"{sys.version_info.major}.{sys.version_info.minor}, but Debian bookworm's is "
            f"{'.'.join(map(str, CONTAINER_PYTHON))} (the README: same minor version): make the "
            f"venv with python3.11 (make venv PYTHON=python3.11)"
        )
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "-w", "wheelhouse", str(source)]
    result = subprocess.run(argv, cwd=source, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return len(list((source / "wheelhouse").glob("*.whl")))


def readme_block_script(block: Block) -> str:
    return block.commands.replace(PLACEHOLDER, OFFLINE_INSTALL)


def run_block(container: Container, block: Block) -> str:
    """One README block in the source tree; its output (commands echoed), or the test fails."""
    script = readme_block_script(block)
    print(f"--- README step {block.step}:\n{script.rstrip()}", flush=True)
    try:
        result = container.sh(script, cwd=SRC, check=False, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README step {block.step} did not finish in 600 s:\n{script}")
    output = result.stdout + result.stderr
    print(output.rstrip(), flush=True)
    if result.returncode != 0:
        pytest.fail(
            f"README step {block.step} failed (exit {result.returncode}) in the container:\n"
            f"{script}\n--- output:\n{output}"
        )
    return output


@dataclass
class Failover:
    """The failover the daemon in the container drove after the master was killed."""

    cursor: str  # the journal just before the kill
    failover_id: str
    events: list[dict[str, Any]]  # the daemon's events of this failover
    kill_to_outcome_seconds: float
