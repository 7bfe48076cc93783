"""SshBackend against a real OpenSSH sshd on 127.0.0.1: the same contract as LocalBackend."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.sshd import SshdServer, free_port, wait_until_dead
from watchdog.config import SshHost
from watchdog.hosts import CommandResult, HostError, SshBackend

pytestmark = pytest.mark.integration

T = TypeVar("T")


def on_host(
    sshd: SshdServer, op: Callable[[SshBackend], Awaitable[T]], config: SshHost | None = None
) -> T:
    """Run `op` with a fresh backend in its own event loop, closing the backend afterwards."""

    async def scenario() -> T:
        host = SshBackend("box-ssh", config or sshd.ssh_host)
        try:
            return await op(host)
        finally:
            await host.close()

    return asyncio.run(scenario())


def run(sshd: SshdServer, argv: list[str], timeout_seconds: float = 30) -> CommandResult:
    return on_host(sshd, lambda h: h.run(argv, timeout_seconds=timeout_seconds))


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def test_argv_arrives_literally(sshd_host: SshdServer) -> None:
    args = ["a b", "$(id)", ";rm -rf /", "*", "'\"", "", "-n", "x\ny"]
    result = run(sshd_host, ["printf", "%s|", *args])
    assert result.exit_code == 0, result
    assert result.stdout == "a b|$(id)|;rm -rf /|*|'\"||-n|x\ny|"
    assert result.stderr == ""  # the process-group marker is not passed on


def test_exit_codes_propagate(sshd_host: SshdServer) -> None:
    async def codes(host: SshBackend) -> list[int | None]:
        argvs = [["sh", "-c", "exit 3"], ["false"], ["true"], ["sh", "-c", "kill -TERM $$"]]
        return [(await host.run(a, timeout_seconds=30)).exit_code for a in argvs]

    assert on_host(sshd_host, codes) == [3, 1, 0, -15]


def test_stderr_undecodable_output_and_missing_programs(sshd_host: SshdServer) -> None:
    result = run(sshd_host, ["sh", "-c", r"printf 'out\377'; printf 'oops\n' >&2; exit 2"])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "out\ufffd", "oops\n")
    missing = run(sshd_host, ["/nonexistent/prog"])
    assert missing.exit_code == 127
    assert "/nonexistent/prog" in missing.stderr
    # exec, not the shell: a builtin is not run as a program, just as locally.
    assert run(sshd_host, ["cd", "/"]).exit_code == 127


def test_bad_argv_is_refused(sshd_host: SshdServer) -> None:
    with pytest.raises(ValueError, match="empty command"):
        run(sshd_host, [])


def test_timeout_kills_the_remote_command_and_what_it_started(
    sshd_host: SshdServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    script = f"echo $$ > {pidfile}; sleep 300 & echo $! >> {pidfile}; echo started; wait"
    result = run(sshd_host, ["sh", "-c", script], timeout_seconds=3)
    assert result.exit_code is None
    assert result.stdout == "started\n"
    assert "timed out after 3 s" in result.stderr
    for pid in pids_in(pidfile):
        assert wait_until_dead(pid), f"remote process {pid} survived the timeout"


def test_cancelling_run_kills_the_remote_command(sshd_host: SshdServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"

    async def scenario(host: SshBackend) -> None:
        task = asyncio.create_task(
            host.run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout_seconds=600)
        )
        while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    on_host(sshd_host, scenario)  # close() waits for the kill it left running
    (sleeper,) = pids_in(pidfile)
    assert wait_until_dead(sleeper), f"remote sleep {sleeper} outlived the cancelled run"


def test_more_concurrent_commands_than_sshd_sessions(sshd_host: SshdServer) -> None:
    async def many(host: SshBackend) -> list[CommandResult]:
        # sshd allows 10 sessions per connection (MaxSessions); the backend queues the rest.
        return await asyncio.gather(
            *(host.run(["sh", "-c", f"sleep 0.2; echo {i}"], timeout_seconds=60) for i in range(25))
        )

    results = on_host(sshd_host, many)
    assert [(r.exit_code, r.stdout) for r in results] == [(0, f"{i}\n") for i in range(25)]


def test_read_file(sshd_host: SshdServer, tmp_path: Path) -> None:
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=0\n\xff")
    assert on_host(sshd_host, lambda h: h.read_file(str(path))) == b"brokerId=0\n\xff"


def test_read_missing_file_names_host_and_path(sshd_host: SshdServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    with pytest.raises(HostError) as info:
        on_host(sshd_host, lambda h: h.read_file(str(missing)))
    assert "box-ssh" in str(info.value) and str(missing) in str(info.value)


def test_write_replaces_atomically_and_keeps_the_mode(
    sshd_host: SshdServer, tmp_path: Path
) -> None:
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    path.chmod(0o640)
    before = path.stat()
    with path.open("rb") as reader:
        on_host(sshd_host, lambda h: h.write_file(str(path), b"brokerId=0\n"))
        assert reader.read() == b"brokerId=1\n"  # replaced by a rename, not rewritten
    after = path.stat()
    assert path.read_bytes() == b"brokerId=0\n"
    assert after.st_ino != before.st_ino
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broker.properties"]


def test_write_keeps_the_owner_and_group(sshd_host: SshdServer, tmp_path: Path) -> None:
    """The broker that reads the file after its restart is usually its owner."""
    assert os.geteuid() == 0, "the test sshd logs in as root, which may give the file back"
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    os.chown(path, 1234, 4321)
    path.chmod(0o640)
    on_host(sshd_host, lambda h: h.write_file(str(path), b"brokerId=0\n"))
    after = path.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (1234, 4321, 0o640)
    assert path.read_bytes() == b"brokerId=0\n"


def test_write_new_file_gets_0644(sshd_host: SshdServer, tmp_path: Path) -> None:
    path = tmp_path / "new.properties"
    on_host(sshd_host, lambda h: h.write_file(str(path), b"x=1\n"))
    assert path.read_bytes() == b"x=1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_into_unwritable_dir_fails_and_keeps_the_old_file(
    sshd_host: SshdServer, unwritable_dir: Path
) -> None:
    path = unwritable_dir / "old.properties"
    with pytest.raises(HostError) as info:
        on_host(sshd_host, lambda h: h.write_file(str(path), b"new\n"))
    assert "box-ssh" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == b"old\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in unwritable_dir.iterdir()] == ["old.properties"]


def test_failed_rename_leaves_no_temp_file(sshd_host: SshdServer, tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(HostError, match="a-directory"):
        on_host(sshd_host, lambda h: h.write_file(str(target), b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


def test_has_command(sshd_host: SshdServer, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)

    async def checks(host: SshBackend) -> list[bool]:
        names = ["sh", "/bin/sh", "no-such-command-rmq-watchdog", str(plain), str(tmp_path), "cd"]
        return [await host.has_command(n) for n in names]

    assert on_host(sshd_host, checks) == [True, True, False, False, False, False]


def test_unknown_host_key_is_refused(sshd_host: SshdServer, tmp_path: Path) -> None:
    # A known_hosts entry for this address and port, but with some other key.
    other = (Path(sshd_host.client_key).with_suffix(".pub")).read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd_host.port} {other[0]} {other[1]}\n")
    config = sshd_host.ssh_host_with(known_hosts=str(known_hosts))
    result = on_host(sshd_host, lambda h: h.run(["true"], timeout_seconds=30), config)
    assert result.exit_code == 255
    assert "host key" in result.stderr and str(known_hosts) in result.stderr
    with pytest.raises(HostError, match="not trusted"):
        on_host(sshd_host, lambda h: h.read_file("/etc/hostname"), config)
    with pytest.raises(HostError, match="not trusted"):
        on_host(sshd_host, lambda h: h.has_command("sh"), config)


def test_empty_known_hosts_is_refused_too(sshd_host: SshdServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = sshd_host.ssh_host_with(known_hosts=str(known_hosts))
    result = on_host(sshd_host, lambda h: h.run(["true"], timeout_seconds=30), config)
    assert result.exit_code == 255 and "not trusted" in result.stderr


def test_connection_refused_is_an_error_not_a_hang(sshd_host: SshdServer) -> None:
    config = sshd_host.ssh_host_with(port=free_port(exclude=frozenset({sshd_host.port})))
    result = on_host(sshd_host, lambda h: h.run(["true"], timeout_seconds=600), config)
    assert result.exit_code == 255
    assert f"127.0.0.1:{config.port}" in result.stderr
    with pytest.raises(HostError, match="cannot connect"):
        on_host(sshd_host, lambda h: h.write_file("/tmp/never-written", b"x"), config)
    with pytest.raises(HostError, match="cannot connect"):
        on_host(sshd_host, lambda h: h.has_command("sh"), config)


@pytest.mark.parametrize("noticed", [True, False], ids=["drop-noticed", "drop-unnoticed"])
def test_reconnects_after_the_server_restarts(sshd_host: SshdServer, noticed: bool) -> None:
    async def restart() -> None:
        # Kills sshd and the sessions it serves: the backend's cached connection is now dead.
        if noticed:
            await asyncio.to_thread(sshd_host.restart)  # the event loop sees the drop
        else:
            sshd_host.restart()  # blocks the loop: the drop shows when the backend next uses it

    async def scenario(host: SshBackend) -> tuple[CommandResult, CommandResult, bytes]:
        first = await host.run(["sh", "-c", "echo $PPID"], timeout_seconds=30)
        await restart()
        second = await host.run(["sh", "-c", "echo $PPID"], timeout_seconds=30)
        await restart()
        data = await host.read_file("/etc/hostname")
        return first, second, data

    first, second, data = on_host(sshd_host, scenario)
    assert first.is_ok and second.is_ok, (first, second)
    assert first.stdout != second.stdout  # served by a new sshd session process
    assert data == Path("/etc/hostname").read_bytes()
