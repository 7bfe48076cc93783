"""A stand-in for the Docker Engine API on a unix socket: only what DockerBackend calls.

It is NOT a Docker engine and starts no container. It answers the endpoints the docker host
backend uses, in the wire formats the Engine API documents (v1.41): inspect, exec create /
start (the multiplexed stream: 8-byte headers [stream, 0, 0, 0, size uint32 BE], body until
the connection closes) / inspect, archive GET / HEAD / PUT (tar bodies, the
X-Docker-Container-Path-Stat header), and start / stop / restart / kill. A "container" is a
name and a running flag; its filesystem is the test process's own filesystem (paths are not
translated) and exec runs argv as a local process. Extraction mimics the engine's: an entry
whose name exists is unlinked first, then created (or hard-linked).
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import selectors
import socketserver
import subprocess
import tarfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_PREFIX = "/v1.41"


@dataclass
class StandInContainer:
    name: str
    running: bool = True
    id: str = field(default_factory=lambda: uuid.uuid4().hex * 2)


@dataclass
class _Exec:
    container: StandInContainer
    cmd: list[str]
    running: bool = False
    exit_code: int = 0
    pid: int = 0


class StandInEngine:
    """Serves on `socket_path` from a thread until stop()."""

    def __init__(self, socket_path: Path, containers: list[str]) -> None:
        self.socket_path = socket_path
        self.containers = {name: StandInContainer(name) for name in containers}
        self.execs: dict[str, _Exec] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query
        self.answer_non_json = False  # pretend to be some other HTTP server on the socket
        self._lock = threading.Lock()
        engine = self

        class Handler(_Handler):
            stand_in = engine

        self._server = _UnixHTTPServer(str(socket_path), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StandInEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    stand_in: StandInEngine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return None

    # The unix socket has no peer address; the base class logs and formats it.
    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # --- plumbing ----------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def _message(self, status: int, message: str) -> None:
        self._json(status, {"message": message})

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body()
        engine = self.stand_in
        engine.requests.append((method, url.path, query))
        if engine.answer_non_json:
            self._send(502, b"<html>Bad Gateway</html>", "text/html")
            return
        if not url.path.startswith(API_PREFIX + "/"):
            self._message(404, "page not found")
            return
        parts = [unquote(p) for p in url.path[len(API_PREFIX) + 1 :].split("/")]
        if parts[0] == "exec" and len(parts) == 3:
            self._exec_endpoint(method, parts[1], parts[2], body)
            return
        if parts[0] != "containers" or len(parts) != 3:
            self._message(404, "page not found")
            return
        container = engine.containers.get(parts[1].removeprefix("/"))
        if container is None:
            self._message(404, f"No such container: {parts[1]}")
            return
        action = parts[2]
        if (method, action) == ("GET", "json"):
            state = {"Running": container.running, "Status": self._status(container)}
            self._json(200, {"Id": container.id, "Name": "/" + container.name, "State": state})
        elif method == "POST" and action in ("start", "stop", "restart", "kill"):
            self._lifecycle(container, action)
        elif (method, action) == ("POST", "exec"):
            self._create_exec(container, json.loads(body))
        elif action == "archive" and method in ("GET", "HEAD"):
            self._get_archive(container, query.get("path", ""))
        elif (method, action) == ("PUT", "archive"):
            self._put_archive(container, query.get("path", ""), body)
        else:
            self._message(404, "page not found")

    @staticmethod
    def _status(container: StandInContainer) -> str:
        return "running" if container.running else "exited"

    # --- lifecycle -----------------------------------------------------------------------

    def _lifecycle(self, container: StandInContainer, action: str) -> None:
        if action == "kill":
            if not container.running:
                self._message(409, f"Container {container.id} is not running")
                return
            container.running = False
            self._send(204)
            return
        wanted = action != "stop"
        if action != "restart" and container.running == wanted:
            self._send(304)
            return
        container.running = wanted
        self._send(204)

    # --- exec ----------------------------------------------------------------------------

    def _create_exec(self, container: StandInContainer, spec: dict[str, Any]) -> None:
        if not container.running:
            self._message(409, f"Container {container.id} is not running")
            return
        cmd = spec.get("Cmd")
        if not isinstance(cmd, list) or not cmd:
            self._message(400, "No exec command specified")
            return
        exec_id = uuid.uuid4().hex
        self.stand_in.execs[exec_id] = _Exec(container, [str(a) for a in cmd])
        self._json(201, {"Id": exec_id})

    def _exec_endpoint(self, method: str, exec_id: str, action: str, body: bytes) -> None:
        record = self.stand_in.execs.get(exec_id)
        if record is None:
            self._message(404, f"No such exec instance: {exec_id}")
        elif (method, action) == ("GET", "json"):
            self._json(
                200,
                {
                    "ID": exec_id,
                    "Running": record.running,
                    "ExitCode": record.exit_code,
                    "Pid": record.pid,
                },
            )
        elif (method, action) == ("POST", "start"):
            self._start_exec(record, json.loads(body or b"{}"))
        else:
            self._message(404, "page not found")

    def _start_exec(self, record: _Exec, spec: dict[str, Any]) -> None:
        try:
            proc = subprocess.Popen(
                record.cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # as the engine's exec: its own session
            )
        except OSError as exc:
            self._message(500, f"OCI runtime exec failed: {exc}")
            return
        record.running, record.pid = True, proc.pid
        if spec.get("Detach"):
            threading.Thread(target=self._reap, args=(record, proc), daemon=True).start()
            self._send(200, b"", "application/json")
            return
        # The engine's answer has no length: the stream ends when the connection closes.
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
        self.end_headers()
        selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        selector.register(proc.stdout, selectors.EVENT_READ, 1)
        selector.register(proc.stderr, selectors.EVENT_READ, 2)
        try:
            while selector.get_map():
                for key, _ in selector.select():
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    header = bytes([key.data, 0, 0, 0]) + len(chunk).to_bytes(4, "big")
                    self.wfile.write(header + chunk)
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; the command runs on, as under a real engine
        finally:
            selector.close()
            self._reap(record, proc)

    @staticmethod
    def _reap(record: _Exec, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        record.exit_code = code if code >= 0 else 128 - code
        record.running = False

    # --- archive -------------------------------------------------------------------------

    def _not_found(self, container: StandInContainer, path: str) -> None:
        self._message(404, f"Could not find the file {path} in container {container.name}")

    def _get_archive(self, container: StandInContainer, path: str) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            self._not_found(container, path)
            return
        target = os.readlink(path) if os.path.islink(path) else ""
        stat = {
            "name": os.path.basename(path),
            "size": info.st_size,
            "mode": info.st_mode & 0o7777,
            "mtime": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(),
            "linkTarget": target,
        }
        header = base64.b64encode(json.dumps(stat).encode()).decode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=os.path.basename(path), recursive=os.path.isdir(path))
        self._send(
            200,
            buffer.getvalue(),
            "application/x-tar",
            {"X-Docker-Container-Path-Stat": header},
        )

    def _put_archive(self, container: StandInContainer, path: str, body: bytes) -> None:
        if not os.path.isdir(path):
            self._not_found(container, path)
            return
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
                for member in tar:
                    self._extract(tar, member, Path(path))
        except (tarfile.TarError, OSError) as exc:
            self._message(500, f"extraction failed: {exc}")
            return
        self._send(200, b"", "application/json")

    @staticmethod
    def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, directory: Path) -> None:
        target = directory / member.name
        if directory.resolve() not in target.resolve().parents:
            raise OSError(f"{member.name} breaks out of {directory}")
        if target.is_symlink() or target.exists():
            target.unlink()  # as the engine: unlink, then create
        if member.islnk():
            os.link(directory / member.linkname, target)
        elif member.isreg():
            source = tar.extractfile(member)
            assert source is not None
            with open(target, "wb") as out:
                out.write(source.read())
            os.chmod(target, member.mode)
        else:
            raise OSError(f"{member.name}: only files and hard links are modelled")
        os.chown(target, member.uid, member.gid)
