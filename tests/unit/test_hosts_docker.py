"""The docker host backend against a stand-in Engine API server (tests/docker_engine_stand_in.py,
not a Docker engine), plus its argv parser, config keys and stream demultiplexer.

tests/docker runs the same cases (tests/docker_host_cases.py) against a real engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_engine_stand_in import StandInEngine
from tests.docker_host_cases import *  # noqa: F403 - the shared cases run here on the stand-in
from tests.docker_host_cases import DockerWorld
from watchdog.config import ConfigError, DockerHost, parse_config
from watchdog.hosts import DockerBackend, HostError, make_host
from watchdog.hosts._docker import _Demultiplexer
from watchdog.model import DockerCliCommand, DockerCliError, parse_docker_cli

CONTAINER = "rmq-broker-a-s"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandInEngine]:
    # A short path: unix socket paths are limited to ~107 bytes.
    engine = StandInEngine(tmp_path / "docker.sock", [CONTAINER]).start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def docker_world(stand_in: StandInEngine, tmp_path: Path) -> DockerWorld:
    files = tmp_path / "files"
    files.mkdir()
    container = stand_in.containers[CONTAINER]

    def set_running(running: bool) -> None:
        container.running = running

    return DockerWorld(
        socket=str(stand_in.socket_path),
        container=CONTAINER,
        files=files,
        is_running=lambda: container.running,
        set_running=set_running,
    )


# --- stand-in only: what a real engine cannot be made to do on demand -------------------------


def test_stop_and_kill_pass_their_options_as_query_parameters(
    docker_world: DockerWorld, stand_in: StandInEngine
) -> None:
    docker_world.on(
        lambda h: h.run(["docker", "stop", "--time", "30", CONTAINER], timeout_seconds=30)
    )
    docker_world.on(lambda h: h.run(["docker", "start", CONTAINER], timeout_seconds=30))
    docker_world.on(
        lambda h: h.run(["docker", "kill", "-s", "TERM", CONTAINER], timeout_seconds=30)
    )
    calls = [(m, p, q) for m, p, q in stand_in.requests if m == "POST"]
    assert calls == [
        ("POST", f"/v1.41/containers/{CONTAINER}/stop", {"t": "30"}),
        ("POST", f"/v1.41/containers/{CONTAINER}/start", {}),
        ("POST", f"/v1.41/containers/{CONTAINER}/kill", {"signal": "TERM"}),
    ]


def test_a_non_json_answer_is_named(docker_world: DockerWorld, stand_in: StandInEngine) -> None:
    stand_in.answer_non_json = True
    with pytest.raises(HostError) as raised:
        docker_world.on(lambda h: h.read_file("/x"))
    assert str(raised.value) == (
        f"box-1: cannot read /x: the Docker engine at unix://{stand_in.socket_path} answered "
        f"GET /v1.41/containers/{CONTAINER}/archive with non-JSON (HTTP 502): "
        "'<html>Bad Gateway</html>'"
    )
    result = docker_world.on(lambda h: h.run(["true"], timeout_seconds=20))
    assert result.exit_code == 255 and "with non-JSON (HTTP 502)" in result.stderr


def test_cancelling_a_command_kills_it(docker_world: DockerWorld) -> None:
    late = docker_world.files / "late"

    async def cancel_midway() -> None:
        host = docker_world.backend()
        try:
            task = asyncio.ensure_future(
                host.run(["sh", "-c", f"sleep 2; touch {late}"], timeout_seconds=30)
            )
            await asyncio.sleep(0.7)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await host.close()

    asyncio.run(cancel_midway())
    time.sleep(2.5)
    assert not late.exists()


# --- pieces ----------------------------------------------------------------------------------


def test_demultiplexer_reassembles_frames_split_anywhere() -> None:
    stream = b"".join(
        bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
        for kind, data in [(1, b"hello "), (2, b"oops\n"), (1, b"world\n"), (1, b"")]
    )
    for size in (1, 3, 8, 9, len(stream)):
        out, err = bytearray(), bytearray()
        demux = _Demultiplexer(out, err)
        for i in range(0, len(stream), size):
            demux.feed(stream[i : i + size])
        assert (bytes(out), bytes(err)) == (b"hello world\n", b"oops\n")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mv", "a", "b"], None),
        (["docker", "start", "c1"], DockerCliCommand("start", ("c1",), ())),
        (
            ["docker", "stop", "--time", "30", "c1"],
            DockerCliCommand("stop", ("c1",), (("t", "30"),)),
        ),
        (["docker", "stop", "-t30", "c1"], DockerCliCommand("stop", ("c1",), (("t", "30"),))),
        (
            ["docker", "restart", "--time=5", "c1"],
            DockerCliCommand("restart", ("c1",), (("t", "5"),)),
        ),
        (
            ["docker", "kill", "-s", "KILL", "c1"],
            DockerCliCommand("kill", ("c1",), (("signal", "KILL"),)),
        ),
    ],
)
def test_parse_docker_cli(argv: list[str], expected: DockerCliCommand | None) -> None:
    assert parse_docker_cli(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["docker"], "only `docker start|stop|restart|kill"),
        (["docker", "rm", "c1"], "only `docker start|stop|restart|kill"),
        (["docker", "start", "-a", "c1"], "option '-a' is not supported"),
        (["docker", "stop", "-t"], "option -t needs a value"),
        (["docker", "stop", "-t", "soon", "c1"], "is not whole seconds"),
        (["docker", "kill"], "no container named"),
        (["docker", "kill", "c1", "a b"], "is not a container name"),
    ],
)
def test_parse_docker_cli_refuses(argv: list[str], message: str) -> None:
    with pytest.raises(DockerCliError, match=message.replace("|", r"\|")):
        parse_docker_cli(argv)


def _config(host: dict[str, object], stop: list[str]) -> dict[str, object]:
    return {
        "cluster_name": "c",
        "nameservers": ["127.0.0.1:9876"],
        "hosts": {"box": host},
        "brokers": [
            {
                "broker_name": "broker-a",
                "broker_id": 1,
                "addr": "127.0.0.1:10911",
                "properties": "/home/rocketmq/conf/broker-a-s.properties",
                "host": "box",
                "start": ["docker", "start", CONTAINER],
                "stop": stop,
            }
        ],
    }


def test_config_docker_host_defaults_and_make_host() -> None:
    config = parse_config(
        _config({"kind": "docker", "container": CONTAINER}, ["docker", "stop", CONTAINER])
    )
    host = config.hosts["box"]
    assert host == DockerHost(kind="docker", container=CONTAINER)
    assert host.socket == "/var/run/docker.sock"
    backend = make_host("box", host)
    assert isinstance(backend, DockerBackend)
    asyncio.run(backend.close())


@pytest.mark.parametrize(
    ("host", "stop", "message"),
    [
        ({"kind": "docker"}, ["true"], "hosts.box.container: Field required"),
        ({"kind": "docker", "container": "a b"}, ["true"], "'a b' is not a container name"),
        (
            {"kind": "docker", "container": CONTAINER, "socket": "docker.sock"},
            ["true"],
            "hosts.box.socket: 'docker.sock' is not an absolute path",
        ),
        ({"kind": "docker", "container": CONTAINER, "sock": "/x"}, ["true"], "sock: unknown key"),
        (
            {"kind": "docker", "container": CONTAINER},
            ["docker", "stop", "rmq-broker-a"],
            "broker broker-a:1 stop: rmq-broker-a is not container rmq-broker-a-s of host 'box'",
        ),
        (
            {"kind": "docker", "container": CONTAINER},
            ["docker", "rm", "-f", CONTAINER],
            "broker broker-a:1 stop: 'docker rm': only",
        ),
    ],
)
def test_config_docker_host_problems(
    host: dict[str, object], stop: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(host, stop), "w.toml")
    assert message in str(raised.value)
