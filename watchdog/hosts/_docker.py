"""A broker's container as its host: commands, files, start and stop via the Docker Engine API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import posixpath
import shlex
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..config import DockerHost
from ..model import DockerCliCommand, DockerCliError, parse_docker_cli
from ._base import (
    HAS_COMMAND_SCRIPT,
    NEW_FILE_MODE,
    CommandResult,
    HostError,
    PidMarker,
    check_argv,
    check_path,
    timed_out,
)

__all__ = ["DockerBackend", "API_VERSION"]

# Engine 20.10 speaks 1.41, and every later engine still accepts it.
API_VERSION = "1.41"
# The exec'd shell prints its pid (in the container's pid namespace) on stderr before exec'ing
# the command, so a timed-out command can be killed: the engine API has no "kill this exec".
_PID = PidMarker("rmq-watchdog-pid=")
_WRAPPER = f'printf "{_PID.prefix}%s\\n" "$$" >&2; exec "$@"'
# Multiplexed exec output: 8-byte frame headers [stream, 0, 0, 0, size (uint32, big-endian)].
_FRAME_HEADER_BYTES = 8
_STDOUT, _STDERR = 1, 2
# Properties and epoch records are small; a bigger answer is a mistake, not a file to hold.
_MAX_FILE_BYTES = 16 * 1024 * 1024
_MAX_LINK_HOPS = 8
# After a timed-out stream is dropped, how long the exec may take to report it exited.
_EXIT_CODE_WAIT_SECONDS = 2.0
# Internal file and kill commands run as root in the container: the broker's user may not
# own a bind-mounted directory, and rename needs write access to it.
_ROOT = "0:0"


@dataclass(frozen=True)
class _FileOwner:
    mode: int
    uid: int
    gid: int


class _Demultiplexer:
    """Splits the engine's multiplexed exec stream into stdout and stderr."""

    def __init__(self, stdout: bytearray, stderr: bytearray) -> None:
        self._pending = bytearray()
        self._sinks = {_STDOUT: stdout, _STDERR: stderr}

    def feed(self, chunk: bytes) -> None:
        self._pending.extend(chunk)
        while len(self._pending) >= _FRAME_HEADER_BYTES:
            size = int.from_bytes(self._pending[4:_FRAME_HEADER_BYTES], "big")
            end = _FRAME_HEADER_BYTES + size
            if len(self._pending) < end:
                return
            stream = self._pending[0]
            # Stream 0 (stdin) is never attached; anything unknown is output all the same.
            self._sinks.get(stream, self._sinks[_STDERR]).extend(self._pending[8:end])
            del self._pending[:end]


class DockerBackend:
    """One container on a Docker engine reached over its unix socket (httpx).

    run() execs argv in the container through a POSIX `sh` there (needed to learn the pid a
    timeout must kill); `docker start|stop|restart|kill [options] CONTAINER` naming this
    host's own container goes to the engine API instead, and any other `docker ...` argv is
    refused. Files go through the archive endpoints, which work on a stopped container too.
    """

    def __init__(
        self, name: str, config: DockerHost, *, api_timeout_seconds: float = 30.0
    ) -> None:
        self.name = name
        self.config = config
        self.api_timeout_seconds = api_timeout_seconds
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=config.socket),
            base_url=f"http://docker/v{API_VERSION}",
            timeout=api_timeout_seconds,
        )
        self._container_path = f"/containers/{quote(config.container, safe='')}"
        # One write at a time: concurrent writes of one file would share its staging name.
        self._write_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def _engine(self) -> str:
        return f"the Docker engine at unix://{self.config.socket}"

    # --- engine requests ---------------------------------------------------------------------

    def _transport_error(self, what: str, exc: httpx.HTTPError) -> HostError:
        if isinstance(exc, httpx.TimeoutException):
            return HostError(
                f"{self.name}: cannot {what}: no answer from {self._engine} within "
                f"{self.api_timeout_seconds} s"
            )
        if isinstance(exc, httpx.ConnectError):
            return HostError(f"{self.name}: cannot {what}: cannot connect to {self._engine}: {exc}")
        return HostError(
            f"{self.name}: cannot {what}: connection to {self._engine} failed: "
            f"{exc or type(exc).__name__}"
        )

    def _answer(self, response: httpx.Response, what: str) -> Any:
        """The JSON body of an answer; HostError when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            snippet = response.content[:120].decode(errors="replace")
            raise HostError(
                f"{self.name}: cannot {what}: {self._engine} answered "
                f"{response.request.method} {response.request.url.path} with non-JSON "
                f"(HTTP {response.status_code}): {snippet!r}"
            ) from None

    def _refusal(self, response: httpx.Response, what: str) -> HostError:
        """An engine error answer as one message naming the host and what failed."""
        body = self._answer(response, what)
        message = str(body.get("message", body)) if isinstance(body, dict) else str(body)
        if response.status_code == 404 and message.startswith("No such container"):
            return HostError(
                f"{self.name}: cannot {what}: no container {self.config.container} on "
                f"{self._engine}"
            )
        return HostError(f"{self.name}: cannot {what}: {message} (HTTP {response.status_code})")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200,),
        params: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method, path, params=params, json=json, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from None
        if response.status_code not in ok:
            raise self._refusal(response, what)
        return response

    async def _is_running(self, what: str) -> bool:
        response = await self._request("GET", f"{self._container_path}/json", what=what)
        state = self._answer(response, what).get("State")
        if not isinstance(state, dict) or not isinstance(state.get("Running"), bool):
            raise HostError(f"{self.name}: cannot {what}: {self._engine} sent no State.Running")
        return bool(state["Running"])

    # --- commands ----------------------------------------------------------------------------

    async def run(self, argv: Sequence[str], *, timeout_seconds: float) -> CommandResult:
        args = check_argv(argv)
        try:
            command = parse_docker_cli(args)
        except DockerCliError as exc:
            return CommandResult(args, 125, "", f"{self.name}: refusing {shlex.join(args)}: {exc}")
        try:
            if command is not None:
                return await self._engine_action(args, command, timeout_seconds)
            return await self._exec(args, timeout_seconds)
        except HostError as exc:
            return CommandResult(args, 255, "", str(exc))

    async def _engine_action(
        self, args: tuple[str, ...], command: DockerCliCommand, timeout_seconds: float
    ) -> CommandResult:
        others = [c for c in command.containers if c.removeprefix("/") != self.config.container]
        if others:
            return CommandResult(
                args,
                125,
                "",
                f"{self.name}: refusing {shlex.join(args)}: this docker host controls container "
                f"{self.config.container} only, not {', '.join(others)}",
            )
        what = f"{command.action} container {self.config.container}"
        try:
            # The engine answers a stop only once the container has exited (up to t seconds).
            response = await asyncio.wait_for(
                self._client.post(
                    f"{self._container_path}/{command.action}",
                    params=dict(command.query),
                    timeout=None,
                ),
                timeout_seconds,
            )
        except TimeoutError:
            return CommandResult(
                args,
                None,
                "",
                f"timed out after {timeout_seconds} s waiting for {self._engine} to {what}; "
                "the engine may still carry it out",
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from None
        # 304: already started / already stopped, which the docker CLI reports as success.
        if response.status_code in (204, 304):
            return CommandResult(args, 0, f"{self.config.container}\n", "")
        return CommandResult(args, 1, "", str(self._refusal(response, what)))

    async def _exec(
        self, args: tuple[str, ...], timeout_seconds: float, *, user: str | None = None
    ) -> CommandResult:
        """Raises HostError only when the command could not be started."""
        what = f"run {args[0]} in container {self.config.container}"
        spec: dict[str, Any] = {
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": ["sh", "-c", _WRAPPER, "sh", *args],
        }
        if user is not None:
            spec["User"] = user
        created = self._answer(
            await self._request(
                "POST", f"{self._container_path}/exec", what=what, ok=(201,), json=spec
            ),
            what,
        )
        exec_id = created.get("Id") if isinstance(created, dict) else None
        if not isinstance(exec_id, str) or not exec_id:
            raise HostError(f"{self.name}: cannot {what}: {self._engine} sent no exec Id")
        out, err = bytearray(), bytearray()
        streamed = asyncio.ensure_future(self._stream_exec(exec_id, what, out, err))
        try:
            await asyncio.wait_for(asyncio.shield(streamed), timeout_seconds)
        except TimeoutError:
            streamed.cancel()
            with contextlib.suppress(asyncio.CancelledError, HostError):
                await streamed
            await self._kill(_PID.pid(err))
            return timed_out(args, timeout_seconds, bytes(out), _PID.strip(err))
        except BaseException:
            # Cancelled: the command must not outlive the caller that gave up on it.
            streamed.cancel()
            task = asyncio.ensure_future(self._kill(_PID.pid(err)))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        code, note = await self._exit_code(exec_id, what)
        stderr = _PID.strip(err).decode(errors="replace")
        return CommandResult(args, code, out.decode(errors="replace"), stderr + note)

    async def _stream_exec(self, exec_id: str, what: str, out: bytearray, err: bytearray) -> None:
        demux = _Demultiplexer(out, err)
        try:
            # The engine sends the output until the command exits, then closes the connection.
            async with self._client.stream(
                "POST",
                f"/exec/{exec_id}/start",
                json={"Detach": False, "Tty": False},
                timeout=httpx.Timeout(self.api_timeout_seconds, read=None),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._refusal(response, what)
                async for chunk in response.aiter_raw():
                    demux.feed(chunk)
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from None

    async def _exit_code(self, exec_id: str, what: str) -> tuple[int, str]:
        deadline = time.monotonic() + _EXIT_CODE_WAIT_SECONDS
        while True:
            response = await self._request("GET", f"/exec/{exec_id}/json", what=what)
            state = self._answer(response, what)
            code = state.get("ExitCode") if isinstance(state, dict) else None
            if isinstance(state, dict) and not state.get("Running") and isinstance(code, int):
                return code, ""
            if time.monotonic() >= deadline:
                return 255, f"\n{self.name}: the output ended but the engine reports no exit code"
            await asyncio.sleep(0.05)

    async def _kill(self, pid: int | None) -> None:
        """Best effort: without the pid marker yet, there is nothing safe to kill."""
        if pid is None:
            return
        # Its process group too, when it leads one; then the process itself.
        script = 'kill -s KILL -- "-$0" 2>/dev/null; kill -s KILL "$0" 2>/dev/null; true'
        with contextlib.suppress(HostError, TimeoutError):
            await self._exec(("sh", "-c", script, str(pid)), self.api_timeout_seconds, user=_ROOT)

    async def has_command(self, name: str) -> bool:
        if not name or "\0" in name:
            return False
        try:
            result = await self._exec(
                ("sh", "-c", HAS_COMMAND_SCRIPT, name), self.api_timeout_seconds
            )
        except HostError as exc:
            raise HostError(f"cannot check for {name!r}: {exc}") from None
        if result.exit_code not in (0, 1):
            raise HostError(f"{self.name}: cannot check for {name!r}: {result.summary()}")
        return result.exit_code == 0

    # --- files -------------------------------------------------------------------------------

    async def _archive_member(self, path: str, what: str) -> tuple[tarfile.TarInfo, bytes] | None:
        """The tar entry the engine sends for `path` and its data; None when there is none."""
        try:
            async with self._client.stream(
                "GET", f"{self._container_path}/archive", params={"path": path}
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 404:
                        error = self._refusal(response, what)
                        if "no container" in str(error):
                            raise error
                        return None
                    raise self._refusal(response, what)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > _MAX_FILE_BYTES + 64 * 1024:
                        raise HostError(
                            f"{self.name}: cannot {what}: larger than {_MAX_FILE_BYTES} bytes"
                        )
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from None
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(body)), mode="r:") as tar:
                member = tar.next()
                if member is None:
                    raise HostError(f"{self.name}: cannot {what}: the engine sent an empty archive")
                data = b""
                if member.isreg():
                    extracted = tar.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                return member, data
        except tarfile.TarError as exc:
            raise HostError(
                f"{self.name}: cannot {what}: the engine's answer is not a tar archive ({exc})"
            ) from None

    async def read_file(self, path: str) -> bytes:
        check_path(self.name, path)
        wanted = path
        for _ in range(_MAX_LINK_HOPS):
            found = await self._archive_member(path, f"read {wanted}")
            if found is None:
                raise HostError(f"{self.name}: cannot read {wanted}: no such file")
            member, data = found
            if member.isreg():
                return data
            if not member.issym():
                raise HostError(f"{self.name}: cannot read {wanted}: not a regular file")
            # The archive holds the link itself; follow it as open(2) would.
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
        raise HostError(f"{self.name}: cannot read {wanted}: more than {_MAX_LINK_HOPS} links")

    async def write_file(self, path: str, data: bytes) -> None:
        """Replace `path` whole, on a running or a stopped container.

        The data goes in through the archive endpoint as a staging file `.NAME.rmq-watchdog`
        beside it. Running: `mv` in the container renames it over `path` (atomic, rename(2)).
        Stopped (or mv failed): a second archive entry hard-links `path` to the staging file;
        the engine unlinks the old `path` and links the new one, so `path` is briefly absent
        but never partly written, and the staging name stays as a second link to the same
        file until the next write on a running container renames it away.
        """
        check_path(self.name, path)
        directory, base = posixpath.split(path)
        if not posixpath.isabs(path):
            raise HostError(f"{self.name}: cannot write {path}: not an absolute path")
        what = f"write {path}"
        staging = f".{base}.rmq-watchdog"
        async with self._write_lock:
            existing = await self._archive_member(path, what)
            if existing is not None:
                owner = _FileOwner(existing[0].mode & 0o7777, existing[0].uid, existing[0].gid)
            else:
                # A new file belongs to the container's user, as one the broker made would.
                owner = _FileOwner(NEW_FILE_MODE, *await self._user_ids(what))
            if await self._is_running(what):
                await self._put_archive(directory, _tar(staging, data, owner, None), owner, what)
                try:
                    moved = await self._exec(
                        ("mv", "-f", "--", posixpath.join(directory, staging), path),
                        self.api_timeout_seconds,
                        user=_ROOT,
                    )
                except HostError:
                    if await self._is_running(what):
                        raise
                else:
                    if moved.is_ok:
                        return
            await self._put_archive(directory, _tar(staging, data, owner, base), owner, what)

    async def _put_archive(
        self, directory: str, archive: bytes, owner: _FileOwner | None, what: str
    ) -> None:
        # The tar's own uid/gid, never copyUIDGID: engines up to 20.10 (Debian's) look the
        # container's user up in the host's user database, and refuse a name only the image
        # knows ('getent unable to find entry "rocketmq" in passwd database').
        await self._request(
            "PUT",
            f"{self._container_path}/archive",
            what=what,
            params={"path": directory, "noOverwriteDirNonDir": "true"},
            content=archive,
            headers={"Content-Type": "application/x-tar"},
        )

    async def _user_ids(self, what: str) -> tuple[int, int]:
        """uid and gid of the container's configured user (Config.User: name or uid, then
        :group or :gid), looked up in the container's own /etc/passwd and /etc/group as its
        runtime does; root when it names none."""
        response = await self._request("GET", f"{self._container_path}/json", what=what)
        config = self._answer(response, what).get("Config")
        spec = str(config.get("User") or "") if isinstance(config, dict) else ""
        user, _, group = spec.partition(":")
        uid = gid = 0
        if user:
            entry = await self._id_entry("/etc/passwd", user, what)
            if entry is None and not user.isdigit():
                raise HostError(f"{self.name}: cannot {what}: no user {user!r} in /etc/passwd")
            uid = int(user) if entry is None else int(entry[2])
            gid = 0 if entry is None else int(entry[3])
        if group:
            entry = await self._id_entry("/etc/group", group, what)
            if entry is None and not group.isdigit():
                raise HostError(f"{self.name}: cannot {what}: no group {group!r} in /etc/group")
            gid = int(group) if entry is None else int(entry[2])
        return uid, gid

    async def _id_entry(self, database: str, key: str, what: str) -> list[str] | None:
        """The line of /etc/passwd or /etc/group whose name (or, for a number, id) is `key`."""
        try:
            text = (await self.read_file(database)).decode(errors="replace")
        except HostError:
            return None  # an image without the file: numeric ids only
        ids = 2 if database == "/etc/passwd" else 1  # uid and gid, or gid
        column = 2 if key.isdigit() else 0
        for line in text.splitlines():
            fields = line.split(":")
            numbers = fields[2 : 2 + ids]
            if len(fields) >= 4 and fields[column] == key and all(n.isdigit() for n in numbers):
                return fields
        return None

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        await self._client.aclose()


def _tar(staging: str, data: bytes, owner: _FileOwner | None, link_as: str | None) -> bytes:
    """A tar with the staging file, and when `link_as` is given a hard link to it by that name."""
    buffer = io.BytesIO()
    now = time.time()
    mode = owner.mode if owner is not None else NEW_FILE_MODE
    uid, gid = (owner.uid, owner.gid) if owner is not None else (0, 0)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry = tarfile.TarInfo(staging)
        entry.size, entry.mode, entry.uid, entry.gid, entry.mtime = len(data), mode, uid, gid, now
        tar.addfile(entry, io.BytesIO(data))
        if link_as is not None:
            link = tarfile.TarInfo(link_as)
            link.type, link.linkname = tarfile.LNKTYPE, staging
            link.mode, link.uid, link.gid, link.mtime = mode, uid, gid, now
            tar.addfile(link)
    return buffer.getvalue()
