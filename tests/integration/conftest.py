"""Real RocketMQ sandboxes for integration tests: one shared read-only cluster, and fresh ones."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from watchdog.tools.sandbox import Sandbox

UP_TIMEOUT_SECONDS = 300
DOWN_TIMEOUT_SECONDS = 120


def sandbox_cli(
    *args: str, timeout_seconds: float = UP_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """`python -m watchdog sandbox ARGS` (no PATH needed); never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _flags(options: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for name, value in options.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def start_sandbox(directory: Path, **options: Any) -> Sandbox:
    """`sandbox up` through the CLI; fail the test with its message if it does not come up.

    Tests boot with `--tls disabled` unless they ask otherwise: RocketMQ's default permissive TLS
    builds a self-signed certificate at every JVM start (1-9 s of CPU on this 2-core machine),
    which tests pay at every sandbox and every broker restart for nothing they check."""
    options.setdefault("tls", "disabled")
    result = sandbox_cli("up", "--dir", str(directory), *_flags(options))
    if result.returncode != 0:
        stop_sandbox(directory)  # `up` stops what it started; this is for an `up` killed midway
        pytest.fail(f"sandbox up failed (exit {result.returncode}):\n{result.stderr}")
    return Sandbox(directory)


def stop_sandbox(directory: Path) -> None:
    if (directory / "cluster.json").exists():
        # A test's sandbox is thrown away: KILL at once instead of waiting out each JVM's
        # graceful shutdown (5-10 s a sandbox, ~5 minutes over `make test`). `sandbox down`'s
        # own graceful path is tested in test_sandbox.py.
        result = sandbox_cli(
            "down", "--dir", str(directory), "--timeout", "0s", timeout_seconds=DOWN_TIMEOUT_SECONDS
        )
        if result.returncode != 0:
            raise RuntimeError(f"sandbox down failed in {directory}: {result.stderr}")


@pytest.fixture(scope="session")
def sandbox_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One RocketMQ 4.9.7 sandbox (2 nameservers, broker-a master + slave) for read-only tests.

    Tests must not kill, stop or reconfigure anything in it: use `fresh_sandbox` for that.
    """
    directory = tmp_path_factory.mktemp("sandbox-shared")
    try:
        yield start_sandbox(directory)
    finally:
        stop_sandbox(directory)


@pytest.fixture
def fresh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Sandbox]]:
    """A factory: `fresh_sandbox(**up_options)` starts a new sandbox for this test alone
    (options as `sandbox up` flags: replication="sync", groups=2, version="5.3.3", ...).
    Every sandbox it started is taken down after the test, whatever happened."""
    started: list[Path] = []

    def factory(**options: Any) -> Sandbox:
        directory = tmp_path_factory.mktemp("sandbox")
        started.append(directory)
        return start_sandbox(directory, **options)

    try:
        yield factory
    finally:
        errors = []
        for directory in started:
            try:
                stop_sandbox(directory)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


@pytest.fixture(scope="module")
def plugin_sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Sandbox]]:
    """A factory for a test module: `plugin_sandboxes(**up_options)` starts a sandbox with
    `--promotion inplace` (the broker plug-in on every broker, built by `make plugin`), shared
    by the module's tests; every sandbox it started is taken down after the module."""
    started: list[Path] = []

    def factory(**options: Any) -> Sandbox:
        directory = tmp_path_factory.mktemp("sandbox-plugin")
        started.append(directory)
        return start_sandbox(directory, promotion="inplace", **options)

    try:
        yield factory
    finally:
        errors = []
        for directory in started:
            try:
                stop_sandbox(directory)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))
