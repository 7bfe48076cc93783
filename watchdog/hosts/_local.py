"""The local host backend: commands and files on the watchdog's own machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from ._base import (
    DRAIN_GRACE_SECONDS,
    NEW_FILE_MODE,
    CommandResult,
    HostError,
    check_argv,
    check_path,
    lost_access,
    timed_out,
)

__all__ = ["LocalBackend", "kill_process_group"]

_T = TypeVar("_T")



class LocalBackend:
    """This machine: subprocess with argv lists, never a shell."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        args = check_argv(argv)
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
            return timed_out(args, timeout_seconds, out, err)
        except BaseException:
            # Cancelled: the command must not outlive the caller that gave up on it.
            await _kill_and_drain(proc, output)
            raise
        return CommandResult(
            args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def read_file(self, path: str) -> bytes:
        check_path(self.name, path)
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise HostError(f"{self.name}: cannot read {path}: {exc.strerror}") from None

    async def write_file(self, path: str, data: bytes) -> None:
        check_path(self.name, path)
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
    kill_process_group(proc.pid)
    try:
        out, err = await asyncio.wait_for(output, DRAIN_GRACE_SECONDS)
    except TimeoutError:
        # Something that left the group still holds the pipes: stop reading them.
        out, err = b"", b""
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    await proc.wait()
    return out, err


def kill_process_group(pgid: int) -> None:
    """SIGKILL a process group we started in its own session; gone already is fine."""
    # Also fine when the leader has exited: the group lives on while any member does.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _keep_owner(tmp: str, path: str, st: os.stat_result, host_name: str) -> None:
    """Give the new file the old one's owner and group, as far as this user may."""
    kept_owner = kept_group = True
    try:
        os.chown(tmp, st.st_uid, st.st_gid)
    except PermissionError:
        kept_owner = st.st_uid == os.geteuid()
        try:
            os.chown(tmp, -1, st.st_gid)
        except PermissionError:
            kept_group = st.st_gid == os.stat(tmp).st_gid
    problem = lost_access(path, st.st_mode & 0o7777, kept_owner=kept_owner, kept_group=kept_group)
    if problem is not None:
        raise HostError(f"{host_name}: refusing to write {problem}")


def _atomic_write_local(path: str, data: bytes, host_name: str) -> None:
    target = Path(path)
    try:
        try:
            st: os.stat_result | None = target.stat()
        except FileNotFoundError:
            st = None
        mode = NEW_FILE_MODE if st is None else st.st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if st is not None:
                _keep_owner(tmp, path, st, host_name)
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


