"""docker-compose.yml end to end (pytest-docker): the demo cluster comes up through compose,
broker-a's master container is killed (SIGKILL), and the watchdog in its container promotes the
slave through the docker host backend (stop, rewrite the mounted properties, start). A real
client (librocketmq, `python -m watchdog.native canary` in the watchdog's container, on the
compose network) writes to broker-a and reads its message back before the kill and after the
failover; the kill waits until the slave has the first write, and the new master keeps it.

The images: RMQWD_COMPOSE_IMAGES=local (the default) adds docker/local/compose.yml, whose images
docker/local/build.py builds here without a registry (or loads from its cache);
RMQWD_COMPOSE_IMAGES=published runs the file as a user with registry access does
(apache/rocketmq:4.9.7 pulled, the watchdog built on python:3.11-slim). Either way
tests/docker/compose.test.yml mounts a copy of config/ (the failover rewrites it) and the socket
of the engine under test. Compose is `docker compose` where the plugin answers, else Debian's
docker-compose (1.29). Run with `make test-docker`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import engine_socket

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_CONFIG = "/etc/rmq-watchdog/watchdog.docker.toml"
NAMESRV = "namesrv1:9876;namesrv2:9876"
MASTER = "172.28.10.11:10911"
SLAVE = "172.28.10.12:10911"
TOPIC = "RmqwdComposeFailover"
CONTAINERS = ("rmq-namesrv1", "rmq-namesrv2", "rmq-broker-a", "rmq-broker-a-s", "rmq-watchdog")
IMAGES = os.environ.get("RMQWD_COMPOSE_IMAGES", "local")
# Generous: four JVMs start on two cores that other work shares.
UP_TIMEOUT_SECONDS = 420.0
FAILOVER_TIMEOUT_SECONDS = 300.0


def _say(line: str) -> None:
    print(f"compose: {line}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def compose_config() -> Iterator[Path]:
    """A copy of config/ for the containers to mount: the failover rewrites the properties and
    writes .epoch records beside them, which must not land in the checkout."""
    folder = Path(tempfile.mkdtemp(prefix="rmqwd-compose-config-"))
    # The brokers read it as uid 3000, the watchdog as 10001.
    folder.chmod(0o755)
    for path in (REPO / "config").iterdir():
        if path.is_file() and not path.name.endswith((".epoch", ".bak")):
            shutil.copy2(path, folder / path.name)
    os.environ["RMQWD_COMPOSE_CONFIG"] = str(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    plugin = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=60, check=False
    )
    if plugin.returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose") is None:
        pytest.fail("neither `docker compose` nor docker-compose: `make test-docker` installs it")
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_compose_file() -> list[str]:
    files = [REPO / "docker-compose.yml"]
    if IMAGES == "local":
        files.append(REPO / "docker" / "local" / "compose.yml")
    elif IMAGES != "published":
        pytest.fail(f"RMQWD_COMPOSE_IMAGES={IMAGES}: local or published")
    files.append(Path(__file__).with_name("compose.test.yml"))
    return [str(f) for f in files]


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return "rmq-watchdog-test"


@pytest.fixture(scope="session")
def docker_setup(compose_config: Path) -> list[str]:
    """Images first (local: built or loaded by docker/local/build.py), then `up -d`."""
    socket = engine_socket()
    os.environ["RMQWD_DOCKER_SOCKET"] = socket
    os.environ["DOCKER_GID"] = str(os.stat(socket).st_gid)
    if IMAGES == "published":
        return ["up --build -d"]
    started = time.monotonic()
    build = subprocess.run(
        [sys.executable, str(REPO / "docker" / "local" / "build.py"), "images"],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    sys.stderr.write(build.stderr)
    if build.returncode != 0:
        pytest.fail(f"docker/local/build.py images failed:\n{build.stderr[-3000:]}")
    _say(f"local images ready in {time.monotonic() - started:.1f} s")
    # Images are there: compose must not build (that would be the published Dockerfile).
    return ["up -d --no-build"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --timeout 10"]


def _docker(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _watchdog_json(*args: str) -> Any:
    done = _docker("exec", "rmq-watchdog", "rmq-watchdog", *args, "-c", WATCHDOG_CONFIG, "--json")
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)


def _master_of_broker_a() -> tuple[str, int] | None:
    report = _watchdog_json("status")
    if report is None:
        return None
    for broker in report["brokers"]:
        if broker["broker_name"] == "broker-a" and broker["is_master"] and broker["up"]:
            return broker["addr"], broker["reported_broker_id"]
    return None


def _is_up(addr: str) -> bool:
    report = _watchdog_json("status")
    return report is not None and any(b["addr"] == addr and b["up"] for b in report["brokers"])


def _commitlog_offsets() -> dict[str, int]:
    """Each answering broker's commit log end, by address, as the watchdog probed it."""
    report = _watchdog_json("status")
    brokers = report["brokers"] if report is not None else []
    return {
        b["addr"]: b["commitlog_max_offset"]
        for b in brokers
        if b["up"] and b["commitlog_max_offset"] is not None
    }


def _promotions() -> list[dict[str, Any]]:
    rows = _watchdog_json("history", "--broker-name", "broker-a")
    return [r for r in rows or [] if r.get("kind") == "promote"]


def _canary() -> dict[str, Any]:
    """One message sent to broker-a and read back by the real client, in the watchdog's
    container (it resolves the nameservers and reaches the brokers on the compose network)."""
    done = _docker(
        "exec", "rmq-watchdog", "python", "-m", "watchdog.native", "canary",
        "--namesrv", NAMESRV, "--topic", TOPIC, "--expect-broker-name", "broker-a",
        "--timeout-seconds", "30", "--json",
        timeout=90,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"ok": False}
    result["exit"] = done.returncode
    if done.returncode != 0:
        result.setdefault("stderr", done.stderr[-500:])
    return result


def _wait(what: str, check: Callable[[], bool], timeout: float, pause: float = 2.0) -> float:
    """Seconds until `check()` held; fails naming `what` after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(pause)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def _logs() -> str:
    parts = []
    for name in CONTAINERS:
        done = _docker("logs", "--tail", "40", name)
        parts.append(f"--- docker logs {name} ---\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def _properties(folder: Path, name: str) -> dict[str, str]:
    pairs = {}
    for line in (folder / name).read_text(encoding="latin-1").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def test_killing_the_master_container_promotes_the_slave(
    compose_config: Path, docker_services: Any
) -> None:
    try:
        _run_failover(compose_config)
    except BaseException:
        print(_logs())
        raise


def _run_failover(config: Path) -> None:
    took = _wait(
        "broker-a's master and slave up, as the watchdog in compose sees them",
        lambda: _master_of_broker_a() == (MASTER, 0) and _is_up(SLAVE),
        UP_TIMEOUT_SECONDS,
    )
    _say(f"cluster up and probed {took:.1f} s after `up` returned")
    # The first send creates the topic on the master (autoCreateTopicEnable); the slave copies
    # the master's topics, so the topic is routed to broker-a after the failover too.
    before: dict[str, Any] = {}

    def written() -> bool:
        before.update(_canary())
        return bool(before["ok"])

    _wait(f"a write and read through broker-a before the kill (last: {before})", written, 120.0)
    _say(f"before the kill: {before}")
    assert before["received_broker_name"] == "broker-a"
    # ASYNC_MASTER: an acknowledged write is safe once the slave has it. Kill only then, so the
    # failover must keep it (the watchdog's expected loss is 0, and the new master's log ends
    # no earlier).
    offsets: dict[str, int] = {}

    def replicated() -> bool:
        offsets.update(_commitlog_offsets())
        return offsets.get(MASTER, 0) > 0 and offsets.get(SLAVE) == offsets[MASTER]

    took = _wait(f"the slave's commit log at the master's (last: {offsets})", replicated, 120.0)
    written_end = offsets[MASTER]
    _say(f"slave at the master's commit log end {written_end} after {took:.1f} s")

    assert _docker("kill", "--signal", "KILL", "rmq-broker-a").returncode == 0
    killed = time.monotonic()
    took = _wait(
        "the slave registered as broker-a's master (brokerId 0)",
        lambda: _master_of_broker_a() == (SLAVE, 0),
        FAILOVER_TIMEOUT_SECONDS,
        pause=1.0,
    )
    _say(f"broker-a-s is broker-a's master {took:.1f} s after the kill")
    finished: list[dict[str, Any]] = []

    def promotion_finished() -> bool:
        finished[:] = [r for r in _promotions() if r.get("outcome") != "running"]
        return bool(finished)

    _wait("the watchdog's promotion finished", promotion_finished, FAILOVER_TIMEOUT_SECONDS)
    _say(f"promotion journaled {time.monotonic() - killed:.1f} s after the kill: {finished}")
    assert [r["outcome"] for r in finished] == ["succeeded"], finished
    assert finished[0]["new_master"] == "broker-a:1"
    assert finished[0]["expected_loss_bytes"] == 0
    assert _commitlog_offsets().get(SLAVE, 0) >= written_end

    after = _canary()
    _say(f"after the failover: {after}")
    assert after["ok"], after
    assert after["received_broker_name"] == "broker-a"

    # What the failover left in the mounted properties, through the engine's archive API.
    promoted = _properties(config, "broker-a-s.properties")
    assert promoted["brokerId"] == "0"
    assert promoted["brokerRole"] in ("ASYNC_MASTER", "SYNC_MASTER")
    record = _properties(config, "broker-a-s.properties.epoch")
    assert (record["master_addr"], record["may_be_master"]) == (SLAVE, "true")
    fenced = _properties(config, "broker-a.properties.epoch")
    assert (fenced["master_addr"], fenced["may_be_master"]) == (SLAVE, "false")
    assert _docker("inspect", "--format", "{{.State.Running}}", "rmq-broker-a").stdout.strip() == (
        "false"
    )
