"""DockerBackend's contract, as test cases that run against any engine a `docker_world` fixture
gives: the stand-in (tests/unit) or a real Docker engine (tests/docker)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from watchdog.config import DockerHost
from watchdog.hosts import CommandResult, DockerBackend, HostError

_T = TypeVar("_T")


@dataclass(frozen=True)
class DockerWorld:
    """One container whose `files` directory has the same path inside it and in the test."""

    socket: str
    container: str
    files: Path
    is_running: Callable[[], bool]
    set_running: Callable[[bool], None]

    def backend(self, *, container: str | None = None, socket: str | None = None) -> DockerBackend:
        config = DockerHost(
            kind="docker", container=container or self.container, socket=socket or self.socket
        )
        return DockerBackend("box-1", config, api_timeout_seconds=20)

    def on(self, op: Callable[[DockerBackend], Coroutine[Any, Any, _T]], **backend: str) -> _T:
        async def main() -> _T:
            host = self.backend(**backend)
            try:
                return await op(host)
            finally:
                await host.close()

        return asyncio.run(main())

    def run(self, argv: list[str], *, timeout_seconds: float) -> CommandResult:
        """`argv` run once on a fresh backend; a loop can call it without a lambda per turn."""
        return self.on(lambda h: h.run(argv, timeout_seconds=timeout_seconds))


# --- commands --------------------------------------------------------------------------------


def test_exec_keeps_stdout_stderr_and_exit_code_apart(docker_world: DockerWorld) -> None:
    result = docker_world.on(
        lambda h: h.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_seconds=20)
    )
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_argv_arrives_literally(docker_world: DockerWorld) -> None:
    args = ["a b", "$(id)", ";rm -rf /", "*", "'\"", "", "-n"]
    result = docker_world.on(lambda h: h.run(["printf", "%s|", *args], timeout_seconds=20))
    assert result.exit_code == 0
    assert result.stdout == "a b|$(id)|;rm -rf /|*|'\"||-n|"
    assert result.argv == ("printf", "%s|", *args)


def test_long_output_arrives_whole_in_order(docker_world: DockerWorld) -> None:
    # Many frames, interleaved on both streams.
    script = 'i=0; while [ $i -lt 3000 ]; do echo "o$i"; echo "e$i" >&2; i=$((i+1)); done'
    result = docker_world.on(lambda h: h.run(["sh", "-c", script], timeout_seconds=60))
    assert result.exit_code == 0
    assert result.stdout.split() == [f"o{i}" for i in range(3000)]
    assert result.stderr.split() == [f"e{i}" for i in range(3000)]


def test_a_missing_program_exits_127(docker_world: DockerWorld) -> None:
    result = docker_world.on(lambda h: h.run(["no-such-program-xyz"], timeout_seconds=20))
    assert result.exit_code == 127
    assert "no-such-program-xyz" in result.stderr


def test_timeout_kills_the_command_and_what_it_started(docker_world: DockerWorld) -> None:
    late = docker_world.files / "late"
    script = f"(sleep 2; touch {late}) & sleep 30"
    started = time.monotonic()
    result = docker_world.on(lambda h: h.run(["sh", "-c", script], timeout_seconds=1))
    assert time.monotonic() - started < 10
    assert result.exit_code is None
    assert "timed out after 1 s" in result.stderr
    assert "rmq-watchdog-pid=" not in result.stderr
    time.sleep(2.5)
    assert not late.exists(), "the background child outlived the timed-out command"


def test_docker_stop_and_start_of_its_container_go_to_the_engine(
    docker_world: DockerWorld,
) -> None:
    name = docker_world.container
    stopped = docker_world.on(
        lambda h: h.run(["docker", "stop", "--time", "1", name], timeout_seconds=30)
    )
    assert (stopped.exit_code, stopped.stdout) == (0, f"{name}\n")
    assert not docker_world.is_running()
    again = docker_world.on(
        lambda h: h.run(["docker", "stop", "-t", "1", name], timeout_seconds=30)
    )
    assert again.exit_code == 0, "stopping a stopped container succeeds, as with the CLI"
    started = docker_world.on(lambda h: h.run(["docker", "start", name], timeout_seconds=30))
    assert (started.exit_code, started.stdout) == (0, f"{name}\n")
    assert docker_world.is_running()
    restarted = docker_world.on(
        lambda h: h.run(["docker", "restart", "-t=1", name], timeout_seconds=30)
    )
    assert restarted.exit_code == 0 and docker_world.is_running()
    killed = docker_world.on(
        lambda h: h.run(["docker", "kill", "--signal", "KILL", name], timeout_seconds=30)
    )
    assert killed.exit_code == 0 and not docker_world.is_running()
    not_running = docker_world.on(lambda h: h.run(["docker", "kill", name], timeout_seconds=30))
    assert not_running.exit_code == 1
    assert not_running.stderr.startswith("box-1: cannot kill container")
    assert "is not running" in not_running.stderr


def test_docker_commands_for_another_container_are_refused(docker_world: DockerWorld) -> None:
    for argv in (
        ["docker", "stop", "some-other-container"],
        ["docker", "start", docker_world.container, "some-other-container"],
    ):
        result = docker_world.run(argv, timeout_seconds=30)
        assert result.exit_code == 125
        assert result.stderr.startswith("box-1: refusing docker ")
        assert f"controls container {docker_world.container} only" in result.stderr
    assert docker_world.is_running(), "nothing was started or stopped"


@pytest.mark.parametrize(
    "argv",
    [["docker", "exec", "c", "ls"], ["docker", "start", "-a", "c"], ["docker", "stop"]],
)
def test_other_docker_commands_are_refused(docker_world: DockerWorld, argv: list[str]) -> None:
    result = docker_world.on(lambda h: h.run(argv, timeout_seconds=30))
    assert result.exit_code == 125
    assert result.stderr.startswith("box-1: refusing docker ")


# --- files -----------------------------------------------------------------------------------


def test_read_file(docker_world: DockerWorld) -> None:
    path = docker_world.files / "broker.properties"
    path.write_bytes(b"brokerId=1\n\xe9\n")
    assert docker_world.on(lambda h: h.read_file(str(path))) == b"brokerId=1\n\xe9\n"


def test_read_file_works_on_a_stopped_container(docker_world: DockerWorld) -> None:
    path = docker_world.files / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    docker_world.set_running(False)
    assert docker_world.on(lambda h: h.read_file(str(path))) == b"brokerId=1\n"


def test_read_follows_a_symlink(docker_world: DockerWorld) -> None:
    (docker_world.files / "real.properties").write_bytes(b"x=1\n")
    (docker_world.files / "link.properties").symlink_to("real.properties")
    link = str(docker_world.files / "link.properties")
    assert docker_world.on(lambda h: h.read_file(link)) == b"x=1\n"


def test_read_errors_name_the_host_and_the_path(docker_world: DockerWorld) -> None:
    missing = str(docker_world.files / "missing.properties")
    with pytest.raises(HostError, match=f"^box-1: cannot read {missing}: no such file$"):
        docker_world.on(lambda h: h.read_file(missing))
    directory = str(docker_world.files)
    with pytest.raises(HostError, match="^box-1: cannot read .*: not a regular file$"):
        docker_world.on(lambda h: h.read_file(directory))


def _assert_replaced(path: Path, data: bytes, mode: int) -> None:
    assert path.read_bytes() == data
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == mode
    assert stat.S_ISREG(os.lstat(path).st_mode)


def test_write_on_a_running_container_renames_and_keeps_mode_and_owner(
    docker_world: DockerWorld,
) -> None:
    path = docker_world.files / "broker.properties"
    path.write_bytes(b"brokerId=1\nbrokerRole=SLAVE\n")
    path.chmod(0o640)
    os.chown(path, 3000, 3000)
    old_inode = path.stat().st_ino
    docker_world.on(lambda h: h.write_file(str(path), b"brokerId=0\n"))
    _assert_replaced(path, b"brokerId=0\n", 0o640)
    assert (path.stat().st_uid, path.stat().st_gid) == (3000, 3000)
    assert path.stat().st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert sorted(p.name for p in docker_world.files.iterdir()) == ["broker.properties"]


def test_write_on_a_stopped_container_replaces_the_file_whole(
    docker_world: DockerWorld,
) -> None:
    path = docker_world.files / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    path.chmod(0o600)
    docker_world.set_running(False)
    docker_world.on(lambda h: h.write_file(str(path), b"brokerId=0\nbrokerRole=ASYNC_MASTER\n"))
    _assert_replaced(path, b"brokerId=0\nbrokerRole=ASYNC_MASTER\n", 0o600)
    # The staging name is a second link to the same, complete file.
    staging = docker_world.files / ".broker.properties.rmq-watchdog"
    assert staging.stat().st_ino == path.stat().st_ino
    docker_world.set_running(True)
    docker_world.on(lambda h: h.write_file(str(path), b"brokerId=0\n"))
    _assert_replaced(path, b"brokerId=0\n", 0o600)
    assert not staging.exists(), "a write on a running container renames the staging file away"


def test_write_creates_a_new_file_readable_by_all(docker_world: DockerWorld) -> None:
    path = docker_world.files / "broker.properties.epoch"
    docker_world.on(lambda h: h.write_file(str(path), b"epoch=1\n"))
    _assert_replaced(path, b"epoch=1\n", 0o644)
    assert docker_world.on(lambda h: h.read_file(str(path))) == b"epoch=1\n"


def test_write_into_a_missing_directory_names_host_and_path(docker_world: DockerWorld) -> None:
    path = str(docker_world.files / "nodir" / "x.properties")
    with pytest.raises(HostError, match=f"^box-1: cannot write {path}: "):
        docker_world.on(lambda h: h.write_file(path, b"x"))


def test_has_command(docker_world: DockerWorld) -> None:
    tool = docker_world.files / "tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    plain = docker_world.files / "plain"
    plain.write_text("x")
    assert docker_world.on(lambda h: h.has_command(str(tool))) is True
    assert docker_world.on(lambda h: h.has_command(str(plain))) is False
    assert docker_world.on(lambda h: h.has_command("no-such-program-xyz")) is False
    docker_world.set_running(False)
    with pytest.raises(HostError, match="cannot check for 'sh': box-1: .*is not running"):
        docker_world.on(lambda h: h.has_command("sh"))


# --- the engine or the container missing -----------------------------------------------------


def test_a_missing_container_is_named(docker_world: DockerWorld) -> None:
    expected = "^box-1: cannot read /x: no container ghost-box on the Docker engine at unix://"
    with pytest.raises(HostError, match=expected):
        docker_world.on(lambda h: h.read_file("/x"), container="ghost-box")
    result = docker_world.on(lambda h: h.run(["true"], timeout_seconds=20), container="ghost-box")
    assert result.exit_code == 255
    assert "no container ghost-box" in result.stderr


def test_an_unreachable_engine_reads_as_a_connection_failure(
    docker_world: DockerWorld, tmp_path: Path
) -> None:
    socket = str(tmp_path / "no-engine.sock")
    result = docker_world.on(lambda h: h.run(["true"], timeout_seconds=20), socket=socket)
    # The failover executor treats exit 255 with "connect" and no output as an unreachable host.
    assert (result.exit_code, result.stdout) == (255, "")
    assert f"cannot connect to the Docker engine at unix://{socket}" in result.stderr
    with pytest.raises(HostError, match="^box-1: cannot write /x: cannot connect to the Docker"):
        docker_world.on(lambda h: h.write_file("/x", b""), socket=socket)
    stopped = docker_world.on(
        lambda h: h.run(["docker", "stop", docker_world.container], timeout_seconds=20),
        socket=socket,
    )
    assert stopped.exit_code == 255 and "cannot connect" in stopped.stderr
