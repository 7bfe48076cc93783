"""A real Prometheus server for integration tests: start it on loopback, query it, kill it."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["PROMETHEUS_BIN", "RunningPrometheus", "free_port", "run_prometheus"]

PROMETHEUS_BIN = "/usr/bin/prometheus"
# This harness's share of loopback ports; tests in parallel sessions use other ranges.
DEFAULT_PORTS = range(24000, 25000)

Vector = list[dict[str, Any]]


def free_port(ports: range = DEFAULT_PORTS) -> int:
    """A loopback TCP port in `ports` that nothing listens on right now."""
    candidates = list(ports)
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        PROMETHEUS_BIN if Path(PROMETHEUS_BIN).exists() else None
    )
    if found is None:
        raise RuntimeError(
            f"Prometheus is not installed ({PROMETHEUS_BIN} missing): `make test` installs it "
            "(Debian package `prometheus`, which also provides promtool)"
        )
    return found


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    pid: int
    log_path: Path

    def query(self, promql: str) -> Vector:
        """Run an instant query and return its result vector (possibly empty)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        result: Vector = body["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        is_done: Callable[[Vector], bool] = bool,
        timeout_seconds: float = 30.0,
    ) -> Vector:
        """Poll `promql` until `is_done(result)`; fail naming the last result after the timeout."""
        deadline = time.monotonic() + timeout_seconds
        result: Vector = []
        while True:
            result = self.query(promql)
            if is_done(result):
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{promql!r} did not reach the expected value within {timeout_seconds} s; "
                    f"last result {result}; targets {self.targets()}; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health and last error."""
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5.0)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in active]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


def _config(targets: Sequence[str], scrape_interval: str, job: str) -> str:
    # JSON is YAML, so no YAML library is needed to write Prometheus' config.
    return json.dumps(
        {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": scrape_interval,
            },
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        },
        indent=2,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def run_prometheus(
    targets: Sequence[str],
    workdir: Path,
    *,
    scrape_interval: str = "1s",
    job: str = "rmq-watchdog",
    ports: range = DEFAULT_PORTS,
    start_timeout_seconds: float = 30.0,
) -> Iterator[RunningPrometheus]:
    """Run Prometheus on 127.0.0.1 scraping `targets` ("host:port", path /metrics).

    Its config, TSDB and log live under `workdir`; the process is stopped (and reaped) on exit
    from the block, whatever happens inside it.
    """
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(_config(targets, scrape_interval, job))
    log_path = workdir / "prometheus.log"
    port = free_port(ports)
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    running = RunningPrometheus(url=f"http://127.0.0.1:{port}", pid=proc.pid, log_path=log_path)
    try:
        deadline = time.monotonic() + start_timeout_seconds
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {proc.returncode} during start-up "
                    f"({' '.join(argv)}):\n{running.log_tail()}"
                )
            try:
                if httpx.get(f"{running.url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"prometheus not ready within {start_timeout_seconds} s:\n{running.log_tail()}"
                )
            time.sleep(0.2)
        yield running
    finally:
        _stop(proc)
