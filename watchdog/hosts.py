"""Host backends: run argv commands and read/write files on a broker's host: local, SSH, docker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import secrets
import shlex
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .config import DockerHost, HostConfig, LocalHost, SshHost

__all__ = [
    "CommandResult",
    "Host",
    "HostError",
    "LocalBackend",
    "SshBackend",
    "make_host",
]

_T = TypeVar("_T")

# After a timed-out command's process group is killed, how long to wait for its pipes to close
# before giving up on the rest of its output (something that left the group may hold them).
_DRAIN_GRACE_SECONDS = 2.0
# New files get this mode; an existing file keeps its own.
_NEW_FILE_MODE = 0o644


class HostError(Exception):
    """A host could not be reached, or a file operation on it failed."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None  # None: killed after its timeout; negative: died of that signal
    stdout: str
    stderr: str

    @property
    def is_ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        if self.exit_code is None:
            return "timed out"
        tail = (self.stderr or self.stdout).strip().splitlines()[-1:] or [""]
        return f"exit {self.exit_code}" + (f": {tail[0][:200]}" if tail[0] else "")


class Host(Protocol):
    name: str

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        """Run argv (never through a shell's word splitting); on timeout kill it and all it
        started in its process group, and return exit_code None."""
        ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None:
        """Replace `path` atomically (temp file in the same directory, then rename), keeping
        the mode of the file it replaces."""
        ...

    async def has_command(self, name: str) -> bool:
        """Whether `name` is an executable file (on PATH unless it contains a slash); raises
        HostError when the host cannot be asked."""
        ...

    async def close(self) -> None: ...


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    args = tuple(argv)
    if not args:
        raise ValueError("empty command: argv needs at least the program to run")
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"command argument {arg!r} is not a string")
        if "\0" in arg:
            raise ValueError(f"command argument {arg!r} contains a NUL byte")
    return args


def _check_path(host_name: str, path: str) -> None:
    if not path or path.endswith("/") or "\0" in path:
        raise HostError(f"{host_name}: {path!r} is not a file path")


def _timed_out(
    args: tuple[str, ...], timeout_seconds: float, out: bytes, err: bytes
) -> CommandResult:
    note = f"timed out after {timeout_seconds} s; killed its process group"
    stderr = err.decode(errors="replace")
    return CommandResult(
        args, None, out.decode(errors="replace"), f"{stderr}\n{note}" if stderr else note
    )


class LocalBackend:
    """This machine: subprocess with argv lists, never a shell."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        args = _check_argv(argv)
        try:
            # A new session makes the command a process group leader, so a timeout can kill
            # whatever it started as well.
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            # The shell's convention: 127 not found, 126 found but not executable.
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return CommandResult(args, code, "", f"cannot execute {args[0]}: {exc.strerror}")
        output = asyncio.ensure_future(proc.communicate())
        try:
            out, err = await asyncio.wait_for(asyncio.shield(output), timeout_seconds)
        except TimeoutError:
            out, err = await _kill_and_drain(proc, output)
            return _timed_out(args, timeout_seconds, out, err)
        except BaseException:
            # Cancelled: the command must not outlive the caller that gave up on it.
            await _kill_and_drain(proc, output)
            raise
        return CommandResult(
            args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def read_file(self, path: str) -> bytes:
        _check_path(self.name, path)
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise HostError(f"{self.name}: cannot read {path}: {exc.strerror}") from None

    async def write_file(self, path: str, data: bytes) -> None:
        _check_path(self.name, path)
        await asyncio.to_thread(_atomic_write_local, path, data, self.name)

    async def has_command(self, name: str) -> bool:
        if not name or "\0" in name:
            return False
        if os.sep in name:
            return os.path.isfile(name) and os.access(name, os.X_OK)
        return shutil.which(name) is not None

    async def close(self) -> None:
        return None


async def _kill_and_drain(
    proc: asyncio.subprocess.Process, output: asyncio.Future[tuple[bytes, bytes]]
) -> tuple[bytes, bytes]:
    """Kill the command's process group; return what it wrote, once its pipes close."""
    _kill_group(proc.pid)
    try:
        out, err = await asyncio.wait_for(output, _DRAIN_GRACE_SECONDS)
    except TimeoutError:
        # Something that left the group still holds the pipes: stop reading them.
        out, err = b"", b""
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    await proc.wait()
    return out, err


def _kill_group(pgid: int) -> None:
    # Also fine when the leader has exited: the group lives on while any member does.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _atomic_write_local(path: str, data: bytes, host_name: str) -> None:
    target = Path(path)
    try:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename is only durable once the directory entry is on disk.
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise HostError(f"{host_name}: cannot write {path}: {exc.strerror}") from None


# `sh -c SCRIPT NAME` exits 0 when NAME is an executable file, like shutil.which locally (not a
# shell builtin or function), for backends that ask a remote shell.
HAS_COMMAND_SCRIPT = (
    'case "$0" in */*) p="$0";; *) p=$(command -v -- "$0") || exit 1;; esac; '
    'case "$p" in /*|*/*) test -f "$p" && test -x "$p";; *) exit 1;; esac'
)
# The remote shell prints its pid (= its process group: sshd starts each session with setsid)
# on stderr before exec'ing the command, so a timeout can kill the whole group.
_PGID_MARKER = "rmq-watchdog-pgid="
_PGID_LINE = re.compile(rb"(?m)^" + re.escape(_PGID_MARKER.encode()) + rb"(\d+)\n")
# OpenSSH refuses more than MaxSessions (default 10) channels per connection; a timed-out
# command needs a second one to kill it.
_MAX_CHANNELS = 5


class SshBackend:
    """A remote host over SSH (asyncssh): host keys checked, files over SFTP.

    One connection is kept and reused; a connection found dead before a command starts is
    replaced once. The remote login shell must be POSIX (sh, bash, dash): argv is quoted for it.
    """

    def __init__(self, name: str, config: SshHost, *, file_timeout_seconds: float = 30.0) -> None:
        self.name = name
        self.config = config
        self.file_timeout_seconds = file_timeout_seconds
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(_MAX_CHANNELS)
        self._background: set[asyncio.Task[None]] = set()

    @property
    def _target(self) -> str:
        return f"{self.config.user}@{self.config.address}:{self.config.port}"

    async def _connection(self) -> tuple[Any, bool]:
        """The cached connection, or a new one; True when it is new."""
        import asyncssh

        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn, False
            known_hosts = self.config.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
            options: dict[str, Any] = {
                "port": self.config.port,
                "username": self.config.user,
                "connect_timeout": self.config.connect_timeout_seconds,
                # Always a file: asyncssh skips host key checks when told None.
                "known_hosts": known_hosts,
                # Only this config decides where and how to connect, not ~/.ssh/config.
                "config": [],
                # A server that vanished without a FIN is noticed instead of waited on forever.
                "keepalive_interval": 15,
                "keepalive_count_max": 3,
            }
            if self.config.client_keys:
                options["client_keys"] = list(self.config.client_keys)
            try:
                self._conn = await asyncssh.connect(self.config.address, **options)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostError(
                    f"{self.name}: host key of {self.config.address}:{self.config.port} is not "
                    f"trusted by {known_hosts}; refusing to connect ({exc})"
                ) from None
            except asyncssh.PermissionDenied as exc:
                raise HostError(
                    f"{self.name}: {self._target} refused authentication as {self.config.user} "
                    f"({exc})"
                ) from None
            except (OSError, asyncssh.Error, TimeoutError, ValueError) as exc:
                raise HostError(
                    f"{self.name}: cannot connect to {self._target}: {exc or type(exc).__name__}"
                ) from None
            return self._conn, True

    async def _on_connection(self, op: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run `op` on the connection; once more on a new one if the cached one proves dead."""
        conn, is_new = await self._connection()
        try:
            return await op(conn)
        except Exception as exc:
            if is_new or not _is_dead_connection(exc, conn):
                raise
        async with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()
        conn, _ = await self._connection()
        return await op(conn)

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        args = _check_argv(argv)
        try:
            return await self._run(args, timeout_seconds)
        except HostError as exc:
            return CommandResult(args, 255, "", str(exc))

    async def _run(self, args: tuple[str, ...], timeout_seconds: float) -> CommandResult:
        """Raises HostError only when the command could not be started."""
        import asyncssh

        # sshd hands every command to the login shell; quoting each argument keeps it argv, and
        # exec makes it the group leader the marker names.
        command = f"printf '{_PGID_MARKER}%s\\n' \"$$\" >&2; exec {shlex.join(args)}"

        async def start(conn: Any) -> tuple[Any, Any]:
            process = await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
            return conn, process

        async with self._channels:
            try:
                conn, process = await self._on_connection(start)
            except (OSError, asyncssh.Error) as exc:
                raise HostError(
                    f"{self.name}: cannot start a command on {self._target}: {exc}"
                ) from None
            out = bytearray()
            err = bytearray()

            async def pump(stream: Any, sink: bytearray) -> None:
                while chunk := await stream.read(65536):
                    sink.extend(chunk)

            async def finish() -> None:
                await asyncio.gather(pump(process.stdout, out), pump(process.stderr, err))
                await process.wait_closed()

            done = asyncio.ensure_future(finish())
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout_seconds)
            except TimeoutError:
                await self._kill_remote_group(conn, _pgid(err))
                try:
                    await asyncio.wait_for(done, _DRAIN_GRACE_SECONDS)
                except (TimeoutError, OSError, asyncssh.Error):
                    process.close()
                return _timed_out(args, timeout_seconds, bytes(out), _without_marker(err))
            except (OSError, asyncssh.Error) as exc:
                process.close()
                return CommandResult(
                    args,
                    255,
                    out.decode(errors="replace"),
                    f"{self.name}: connection to {self._target} lost while running "
                    f"(the command may or may not have finished): {exc}",
                )
            except BaseException:
                # Cancelled: the command must not outlive the caller that gave up on it.
                task = asyncio.ensure_future(self._kill_remote_group(conn, _pgid(err)))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                done.cancel()
                process.close()
                raise
        code = process.returncode
        stderr = _without_marker(err).decode(errors="replace")
        if code is None:
            code = 255
            stderr += f"\n{self.name}: {self._target} closed the session without an exit status"
        return CommandResult(args, code, out.decode(errors="replace"), stderr)

    async def _kill_remote_group(self, conn: Any, pgid: int | None) -> None:
        """Best effort: without the pid marker yet, there is nothing safe to kill."""
        import asyncssh

        if pgid is None:
            return
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(
                conn.run(f"kill -s KILL -- -{pgid}", check=False),
                self.config.connect_timeout_seconds,
            )

    async def _sftp(self, what: str, path: str, op: Callable[[Any], Coroutine[Any, Any, _T]]) -> _T:
        import asyncssh

        _check_path(self.name, path)

        async def on(conn: Any) -> _T:
            async with conn.start_sftp_client() as sftp:
                return await op(sftp)

        async with self._channels:
            try:
                return await asyncio.wait_for(self._on_connection(on), self.file_timeout_seconds)
            except TimeoutError:
                raise HostError(
                    f"{self.name}: cannot {what} {path}: no answer within "
                    f"{self.file_timeout_seconds} s"
                ) from None
            except (OSError, asyncssh.Error) as exc:
                raise HostError(f"{self.name}: cannot {what} {path}: {exc}") from None

    async def read_file(self, path: str) -> bytes:
        async def read(sftp: Any) -> bytes:
            async with sftp.open(path, "rb") as fh:
                data: bytes = await fh.read()
                return data

        return await self._sftp("read", path, read)

    async def write_file(self, path: str, data: bytes) -> None:
        import asyncssh

        directory, base = posixpath.split(path)

        async def write(sftp: Any) -> None:
            try:
                mode = (await sftp.stat(path)).permissions & 0o7777
            except asyncssh.SFTPNoSuchFile:
                mode = _NEW_FILE_MODE
            # A fresh name each time: exclusive create never follows a planted file or link.
            tmp = posixpath.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
            try:
                private = asyncssh.SFTPAttrs(permissions=0o600)
                async with sftp.open(tmp, "xb", private) as fh:
                    await fh.write(data)
                    with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                        await fh.fsync()
                await sftp.chmod(tmp, mode)
                # posix_rename replaces the target atomically (OpenSSH extension).
                await sftp.posix_rename(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(tmp)
                raise

        await self._sftp("write", path, write)

    async def has_command(self, name: str) -> bool:
        if not name or "\0" in name:
            return False
        timeout_seconds = self.config.connect_timeout_seconds + 5
        try:
            result = await self._run(("sh", "-c", HAS_COMMAND_SCRIPT, name), timeout_seconds)
        except HostError as exc:
            raise HostError(f"cannot check for {name!r}: {exc}") from None
        if result.exit_code is None or result.exit_code == 255:
            raise HostError(f"{self.name}: cannot check for {name!r}: {result.summary()}")
        return result.exit_code == 0

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()


def _pgid(err: bytearray) -> int | None:
    match = _PGID_LINE.search(err)
    return int(match.group(1)) if match else None


def _without_marker(err: bytearray) -> bytes:
    return _PGID_LINE.sub(b"", bytes(err), count=1)


def _is_dead_connection(exc: BaseException, conn: Any) -> bool:
    import asyncssh

    if conn.is_closed() or isinstance(exc, asyncssh.DisconnectError | ConnectionError):
        return True
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code == asyncssh.OPEN_CONNECT_FAILED


def make_host(name: str, config: HostConfig) -> Host:
    if isinstance(config, LocalHost):
        return LocalBackend(name)
    if isinstance(config, DockerHost):
        # Imported here: docker_host builds on this module's helpers.
        from .docker_host import DockerBackend

        return DockerBackend(name, config)
    return SshBackend(name, config)
