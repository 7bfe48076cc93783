"""The SSH host backend (asyncssh): commands and SFTP file operations on a broker's host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import secrets
import shlex
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ..config import SshHost
from ._base import (
    DRAIN_GRACE_SECONDS,
    HAS_COMMAND_SCRIPT,
    NEW_FILE_MODE,
    CommandResult,
    HostError,
    PidMarker,
    check_argv,
    check_path,
    lost_access,
    timed_out,
)

__all__ = ["SshBackend"]

_T = TypeVar("_T")

# The remote shell prints its pid (= its process group: sshd starts each session with setsid)
# on stderr before exec'ing the command, so a timeout can kill the whole group.
_PGID = PidMarker("rmq-watchdog-pgid=")
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
        args = check_argv(argv)
        try:
            return await self._run(args, timeout_seconds)
        except HostError as exc:
            return CommandResult(args, 255, "", str(exc))

    async def _run(self, args: tuple[str, ...], timeout_seconds: float) -> CommandResult:
        """Raises HostError only when the command could not be started."""
        import asyncssh

        # sshd hands every command to the login shell; quoting each argument keeps it argv, and
        # exec makes it the group leader the marker names.
        command = f"printf '{_PGID.prefix}%s\\n' \"$$\" >&2; exec {shlex.join(args)}"

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
                await self._kill_remote_group(conn, _PGID.pid(err))
                try:
                    await asyncio.wait_for(done, DRAIN_GRACE_SECONDS)
                except (TimeoutError, OSError, asyncssh.Error):
                    process.close()
                return timed_out(args, timeout_seconds, bytes(out), _PGID.strip(err))
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
                task = asyncio.ensure_future(self._kill_remote_group(conn, _PGID.pid(err)))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                done.cancel()
                process.close()
                raise
        code = process.returncode
        stderr = _PGID.strip(err).decode(errors="replace")
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

        check_path(self.name, path)

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
                old: Any = await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                old = None
            mode = NEW_FILE_MODE if old is None else old.permissions & 0o7777
            # A fresh name each time: exclusive create never follows a planted file or link.
            tmp = posixpath.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
            try:
                private = asyncssh.SFTPAttrs(permissions=0o600)
                async with sftp.open(tmp, "xb", private) as fh:
                    await fh.write(data)
                    with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                        await fh.fsync()
                if old is not None:
                    await _keep_owner(sftp, tmp, path, old, mode)
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



def _is_dead_connection(exc: BaseException, conn: Any) -> bool:
    import asyncssh

    if conn.is_closed() or isinstance(exc, asyncssh.DisconnectError | ConnectionError):
        return True
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code == asyncssh.OPEN_CONNECT_FAILED


async def _keep_owner(sftp: Any, tmp: str, path: str, old: Any, mode: int) -> None:
    """Give the new file the old one's owner and group, as far as the SSH user may."""
    import asyncssh

    if old.uid is None or old.gid is None:
        return  # the server does not report owners: nothing to keep
    kept_owner = kept_group = True
    try:
        await sftp.chown(tmp, uid=old.uid, gid=old.gid)
    except (asyncssh.SFTPPermissionDenied, asyncssh.SFTPFailure):
        new = await sftp.stat(tmp)
        kept_owner = new.uid == old.uid
        try:
            await sftp.chown(tmp, uid=new.uid, gid=old.gid)
        except (asyncssh.SFTPPermissionDenied, asyncssh.SFTPFailure):
            kept_group = new.gid == old.gid
    problem = lost_access(path, mode, kept_owner=kept_owner, kept_group=kept_group)
    if problem is not None:
        raise HostError(f"refusing to write {problem}")
