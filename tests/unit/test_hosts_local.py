"""LocalBackend keeps the host contract: literal argv, exit codes, timeouts, atomic writes."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tests.sshd import is_alive, wait_until_dead
from watchdog.hosts import CommandResult, HostError, LocalBackend

HOST = LocalBackend("box-1")


def run(argv: list[str], timeout_seconds: float = 30) -> CommandResult:
    return asyncio.run(HOST.run(argv, timeout_seconds=timeout_seconds))


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def assert_no_leaked_pipes() -> None:
    # An unclosed subprocess transport warns when collected; filterwarnings=error fails the test.
    gc.collect()


def test_argv_arrives_literally() -> None:
    args = ["a b", "$(id)", ";rm -rf /", "*", "'\"", "", "-n"]
    result = run(["printf", "%s|", *args])
    assert result.exit_code == 0
    assert result.stdout == "a b|$(id)|;rm -rf /|*|'\"||-n|"
    assert result.argv == ("printf", "%s|", *args)


def test_exit_codes_propagate() -> None:
    assert run(["sh", "-c", "exit 3"]).exit_code == 3
    assert run(["false"]).exit_code == 1
    assert run(["true"]).is_ok
    # Death by a signal is the negative signal number, as for the SSH backend.
    assert run(["sh", "-c", "kill -TERM $$"]).exit_code == -15


def test_stderr_and_undecodable_output() -> None:
    result = run(["sh", "-c", r"printf 'out\377'; printf 'oops\n' >&2; exit 2"])
    assert result.stdout == "out\ufffd"
    assert result.stderr == "oops\n"
    assert result.summary() == "exit 2: oops"


def test_missing_and_unexecutable_programs(tmp_path: Path) -> None:
    missing = run(["/nonexistent/prog", "x"])
    assert missing.exit_code == 127
    assert "/nonexistent/prog" in missing.stderr
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")
    plain.chmod(0o644)
    assert run([str(plain)]).exit_code == 126


def test_bad_argv_is_refused() -> None:
    with pytest.raises(ValueError, match="empty command"):
        run([])
    with pytest.raises(ValueError, match="NUL"):
        run(["echo", "a\0b"])


def test_timeout_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f'echo $$ > {pidfile}; sleep 300 & echo $! >> {pidfile}; echo started; wait'
    result = run(["sh", "-c", script], timeout_seconds=2)
    assert result.exit_code is None
    assert result.summary() == "timed out"
    assert result.stdout == "started\n"
    assert "timed out after 2 s" in result.stderr
    assert_no_leaked_pipes()
    shell, sleeper = pids_in(pidfile)
    assert not is_alive(shell)
    assert wait_until_dead(sleeper), f"background sleep {sleeper} survived the timeout"


def test_timeout_returns_even_if_an_escaped_process_keeps_the_pipes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    # setsid leaves the process group, so the kill misses it and it keeps stdout open.
    script = f"setsid sleep 300 & echo $! > {pidfile}; wait"
    result = run(["sh", "-c", script], timeout_seconds=1)
    escaped = pids_in(pidfile)[0]
    try:
        assert result.exit_code is None
        assert_no_leaked_pipes()
    finally:
        os.kill(escaped, 9)


def test_cancelling_run_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"

    async def scenario() -> list[int]:
        task = asyncio.create_task(
            HOST.run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout_seconds=600)
        )
        while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids_in(pidfile)

    (sleeper,) = asyncio.run(scenario())
    assert_no_leaked_pipes()
    assert wait_until_dead(sleeper), f"sleep {sleeper} outlived the cancelled run"


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=0\n\xff")
    assert asyncio.run(HOST.read_file(str(path))) == b"brokerId=0\n\xff"


def test_read_missing_file_names_host_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    with pytest.raises(HostError) as info:
        asyncio.run(HOST.read_file(str(missing)))
    assert "box-1" in str(info.value) and str(missing) in str(info.value)


def test_write_replaces_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    path.chmod(0o640)
    before = path.stat()
    with path.open("rb") as reader:
        asyncio.run(HOST.write_file(str(path), b"brokerId=0\n"))
        # Replaced by a rename: a reader of the old file still sees all of the old content.
        assert reader.read() == b"brokerId=1\n"
    after = path.stat()
    assert path.read_bytes() == b"brokerId=0\n"
    assert after.st_ino != before.st_ino
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broker.properties"]


def test_write_new_file_gets_0644(tmp_path: Path) -> None:
    path = tmp_path / "new.properties"
    asyncio.run(HOST.write_file(str(path), b"x=1\n"))
    assert path.read_bytes() == b"x=1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_into_unwritable_dir_fails_and_keeps_the_old_file(unwritable_dir: Path) -> None:
    path = unwritable_dir / "old.properties"
    with pytest.raises(HostError) as info:
        asyncio.run(HOST.write_file(str(path), b"new\n"))
    assert "box-1" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == b"old\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in unwritable_dir.iterdir()] == ["old.properties"]


def test_write_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="no-such-dir"):
        asyncio.run(HOST.write_file(str(tmp_path / "no-such-dir" / "f"), b"x"))
    with pytest.raises(HostError, match="not a file path"):
        asyncio.run(HOST.write_file(f"{tmp_path}/", b"x"))


def test_has_command(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)

    def has(name: str) -> bool:
        return asyncio.run(HOST.has_command(name))

    assert has("sh")
    assert has("/bin/sh")
    assert has(str(script))
    assert not has("no-such-command-rmq-watchdog")
    assert not has(str(plain))
    assert not has(str(tmp_path))  # a directory is not a command
    assert not has("cd")  # a shell builtin is not a program
    assert not has("")


def test_a_rewrite_keeps_the_owner_and_group(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "make test runs as root: this test gives the file another owner"
    path = tmp_path / "broker.properties"
    path.write_bytes(b"brokerId=1\n")
    os.chown(path, 1234, 4321)
    path.chmod(0o640)
    asyncio.run(HOST.write_file(str(path), b"brokerId=0\n"))
    after = path.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (1234, 4321, 0o640)


def _write_as(uid: int, groups: list[int], path: Path) -> tuple[int, str]:
    """Rewrite `path` with the local backend in a forked child running as `uid`: (exit, error).

    Forked, not spawned: this interpreter may live where that user cannot reach (/root).
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, write, report, never return into pytest
        code = 0
        try:
            os.close(reader)
            os.setgroups(groups)
            os.setgid(uid)
            os.setuid(uid)
            asyncio.run(LocalBackend("box-1").write_file(str(path), b"brokerId=0\n"))
        except HostError as exc:
            os.write(writer, str(exc).encode())
            code = 3
        except BaseException as exc:  # anything else is the test's own failure
            os.write(writer, repr(exc).encode())
            code = 4
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as fh:
        message = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), message


@pytest.mark.parametrize(
    ("mode", "extra_groups", "expected"),
    [
        # the watchdog's user is in the broker's group: the group is kept, the broker reads
        (0o640, [4321], (0, 65534, 4321, 0o640)),
        # not in the group, but others may read: the broker still reads it
        (0o644, [], (0, 65534, 65534, 0o644)),
        # owner-only: the broker (uid 1234) could not read its own file afterwards: refused
        (0o600, [4321], (3, 1234, 4321, 0o600)),
        (0o640, [], (3, 1234, 4321, 0o640)),
    ],
)
def test_a_rewrite_by_another_user_never_locks_the_broker_out(
    mode: int, extra_groups: list[int], expected: tuple[int, int, int, int]
) -> None:
    assert os.geteuid() == 0, "make test runs as root: the writer here is another user"
    # /tmp itself: the writer (uid 65534) must reach the directory, pytest's tmp_path is 0700.
    directory = Path(tempfile.mkdtemp(prefix="rmqwd-owner-"))
    try:
        directory.chmod(0o777)
        path = directory / "broker.properties"
        path.write_bytes(b"brokerId=1\n")
        os.chown(path, 1234, 4321)
        path.chmod(mode)
        code, message = _write_as(65534, extra_groups, path)
        after = path.stat()
        got = (code, after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode))
        assert got == expected, message
        if code == 3:
            assert "no read access through the group or others" in message
            assert path.read_bytes() == b"brokerId=1\n"
            assert [p.name for p in directory.iterdir()] == ["broker.properties"]
        else:
            assert path.read_bytes() == b"brokerId=0\n"
    finally:
        shutil.rmtree(directory)
