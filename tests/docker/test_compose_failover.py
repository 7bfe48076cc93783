"""docker-compose.yml end to end (pytest-docker): the demo cluster comes up, broker-a's master
container is stopped, and the watchdog in its container promotes the slave through the docker
host backend (stop, rewrite the mounted properties, start).

Needs a Docker engine with the compose plugin, and the images: apache/rocketmq:4.9.7 is pulled
and the watchdog image built by `docker compose up --build`. Run with `make test-docker`.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
WATCHDOG_CONFIG = "/etc/rmq-watchdog/watchdog.docker.toml"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(REPO / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return "rmq-watchdog-test"


@pytest.fixture(scope="session")
def config_dir_restored() -> Iterator[None]:
    """The brokers' properties are the repository's config/, bind-mounted and rewritten by the
    failover: put every file back as it was, and remove what the run added."""
    before = {p: p.read_bytes() for p in CONFIG_DIR.iterdir() if p.is_file()}
    try:
        yield
    finally:
        for path in CONFIG_DIR.iterdir():
            if path.is_file() and path not in before:
                path.unlink()
        for path, data in before.items():
            path.write_bytes(data)


def _status() -> dict[str, Any] | None:
    done = subprocess.run(
        ["docker", "exec", "rmq-watchdog", "rmq-watchdog", "status", "-c", WATCHDOG_CONFIG,
         "--json"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _master_of_broker_a() -> tuple[str, int] | None:
    report = _status()
    if report is None:
        return None
    for broker in report["brokers"]:
        if broker["broker_name"] == "broker-a" and broker["is_master"] and broker["up"]:
            return broker["addr"], broker["reported_broker_id"]
    return None


def test_stopping_the_master_container_promotes_the_slave(
    config_dir_restored: None, docker_services: Any
) -> None:
    docker_services.wait_until_responsive(
        check=lambda: _master_of_broker_a() == ("172.28.10.11:10911", 0),
        timeout=300.0,
        pause=5.0,
    )
    subprocess.run(["docker", "stop", "rmq-broker-a"], check=True, timeout=120)
    started = time.monotonic()
    docker_services.wait_until_responsive(
        check=lambda: _master_of_broker_a() == ("172.28.10.12:10911", 0),
        timeout=300.0,
        pause=5.0,
    )
    promoted = (CONFIG_DIR / "broker-a-s.properties").read_text(encoding="latin-1")
    assert "brokerId=0" in promoted.replace(" ", "")
    assert (CONFIG_DIR / "broker-a-s.properties.epoch").is_file()
    print(f"broker-a-s promoted {time.monotonic() - started:.1f} s after the master stopped")
