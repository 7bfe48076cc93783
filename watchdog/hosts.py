"""Host backends: run argv commands and read/write files on a broker's host, locally or over SSH."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import HostConfig, LocalHost, SshHost

__all__ = [
    "CommandResult",
    "Host",
    "HostError",
    "LocalBackend",
    "SshBackend",
    "make_host",
]


class HostError(Exception):
    """A host could not be reached, or a file operation on it failed."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None  # None: killed after its timeout
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

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult: ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None:
        """Replace `path` atomically (temp file in the same directory, then rename)."""
        ...

    async def has_command(self, name: str) -> bool: ...

    async def close(self) -> None: ...


class LocalBackend:
    """This machine: subprocess with argv lists, never a shell."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return CommandResult(tuple(argv), 127, "", f"cannot execute {argv[0]}: {exc.strerror}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return CommandResult(tuple(argv), None, "", f"timed out after {timeout_seconds} s")
        return CommandResult(
            tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def read_file(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise HostError(f"{self.name}: cannot read {path}: {exc.strerror}") from None

    async def write_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(_atomic_write_local, path, data, self.name)

    async def has_command(self, name: str) -> bool:
        if os.sep in name:
            return os.access(name, os.X_OK)
        return shutil.which(name) is not None

    async def close(self) -> None:
        return None


def _atomic_write_local(path: str, data: bytes, host_name: str) -> None:
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
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
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise HostError(f"{host_name}: cannot write {path}: {exc.strerror}") from None


class SshBackend:
    """A remote host over SSH (asyncssh): host keys checked, files over SFTP."""

    def __init__(self, name: str, config: SshHost) -> None:
        self.name = name
        self.config = config
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        import asyncssh

        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            options: dict[str, Any] = {
                "port": self.config.port,
                "username": self.config.user,
                "connect_timeout": self.config.connect_timeout_seconds,
            }
            if self.config.known_hosts is not None:
                options["known_hosts"] = self.config.known_hosts
            if self.config.client_keys:
                options["client_keys"] = list(self.config.client_keys)
            try:
                self._conn = await asyncssh.connect(self.config.address, **options)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                raise HostError(
                    f"{self.name}: cannot connect to {self.config.user}@{self.config.address}:"
                    f"{self.config.port}: {exc}"
                ) from None
            return self._conn

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        import asyncssh

        try:
            conn = await self._connection()
        except HostError as exc:
            return CommandResult(tuple(argv), 255, "", str(exc))
        # sshd always hands the command to the remote shell; quoting each argument keeps it argv.
        command = shlex.join(argv)
        try:
            result = await asyncio.wait_for(conn.run(command, check=False), timeout_seconds)
        except TimeoutError:
            return CommandResult(tuple(argv), None, "", f"timed out after {timeout_seconds} s")
        except (OSError, asyncssh.Error) as exc:
            self._conn = None
            return CommandResult(tuple(argv), 255, "", f"{self.name}: ssh failed: {exc}")
        return CommandResult(
            tuple(argv),
            result.exit_status if result.exit_status is not None else 255,
            str(result.stdout or ""),
            str(result.stderr or ""),
        )

    async def read_file(self, path: str) -> bytes:
        import asyncssh

        conn = await self._connection()
        try:
            async with conn.start_sftp_client() as sftp, sftp.open(path, "rb") as fh:
                data: bytes = await fh.read()
                return data
        except (OSError, asyncssh.Error) as exc:
            raise HostError(f"{self.name}: cannot read {path}: {exc}") from None

    async def write_file(self, path: str, data: bytes) -> None:
        import asyncssh

        conn = await self._connection()
        directory, _, base = path.rpartition("/")
        tmp = f"{directory}/.{base}.rmq-watchdog.tmp"
        try:
            async with conn.start_sftp_client() as sftp:
                mode = None
                if await sftp.exists(path):
                    mode = (await sftp.stat(path)).permissions
                async with sftp.open(tmp, "wb") as fh:
                    await fh.write(data)
                if mode is not None:
                    await sftp.chmod(tmp, mode & 0o7777)
                # posix_rename replaces the target atomically (OpenSSH extension).
                await sftp.posix_rename(tmp, path)
        except (OSError, asyncssh.Error) as exc:
            raise HostError(f"{self.name}: cannot write {path}: {exc}") from None

    async def has_command(self, name: str) -> bool:
        probe = ["test", "-x", name] if "/" in name else ["sh", "-c", 'command -v "$0"', name]
        result = await self.run(probe, timeout_seconds=self.config.connect_timeout_seconds + 5)
        return result.is_ok

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None


def make_host(name: str, config: HostConfig) -> Host:
    if isinstance(config, LocalHost):
        return LocalBackend(name)
    return SshBackend(name, config)
