"""The control socket: how `rmq-watchdog failover` and `ack` ask a running daemon (one actor).
With [etcd] the leader also answers the same requests taken from etcd (coord/_requests.py).

The wire format, which a newer CLI must keep speaking to an older daemon: a client writes one
JSON object on one line and reads JSON lines until the daemon closes the connection.

    {"op": "ack", "broker_name": N}
        -> {"ok": true, "message": ...} or {"error": ...}
    {"op": "failover", "broker_name": N, "to_key": K|null, "force": b, "fenced_by_operator": b}
        -> {"error": ...}, or
           {"event": "accepted", "failover_id": ..., "plan": {...}},
           the executor's events as {"event": name, ...fields},
           {"event": "result", "outcome": ..., "detail": ...}
    {"op": "switchover", "broker_name": N, "to_key": K|null, "catch_up_timeout_seconds": s}
        -> as "failover" (a planned switch of a live master: decide/_switchover.py)
    {"op": "status"}
        -> {"ok": true, "pid": ..., "cycle": ..., "groups": {N: {"state": ..., "reason": ...}}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from ..act import FailoverResult, StateStore
from ..config import WatchdogConfig

__all__ = [
    "ControlConnection",
    "FailoverRequest",
    "Send",
    "SwitchoverRequest",
    "acknowledge",
    "answer_request",
    "ask_status",
    "control_socket_path",
    "event_message",
    "relay_failover",
    "start_control_server",
    "wire_json",
]

# Writes one answer to the client that asked.
Send = Callable[[Mapping[str, Any]], None]
FailoverHandler = Callable[["FailoverRequest", Send], Awaitable[None]]
SwitchoverHandler = Callable[["SwitchoverRequest", Send], Awaitable[None]]
AckHandler = Callable[[str], Mapping[str, Any]]
StatusHandler = Callable[[], Mapping[str, Any]]

# How long the daemon waits for a connected client's request line.
_REQUEST_TIMEOUT_SECONDS = 10


def control_socket_path(config: WatchdogConfig) -> Path:
    return Path(config.state_dir) / "control.sock"


def wire_json(message: Mapping[str, Any]) -> str:
    """One message as the socket carries it (without the line end)."""
    return json.dumps(message, default=str)


def event_message(event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """An executor event as a JSON object: plans and records by their JSON form."""
    out: dict[str, Any] = {"event": event}
    for key, value in fields.items():
        if hasattr(value, "to_json"):
            out[key] = value.to_json()
        elif is_dataclass(value) and not isinstance(value, type):
            out[key] = asdict(value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class FailoverRequest:
    broker_name: str
    to_key: str | None = None
    force: bool = False
    fenced_by_operator: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "op": "failover",
            "broker_name": self.broker_name,
            "to_key": self.to_key,
            "force": self.force,
            "fenced_by_operator": self.fenced_by_operator,
        }

    @classmethod
    def from_json(cls, request: Mapping[str, Any]) -> FailoverRequest:
        to_key = request.get("to_key")
        return cls(
            broker_name=str(request.get("broker_name", "")),
            to_key=None if to_key is None else str(to_key),
            force=bool(request.get("force")),
            fenced_by_operator=bool(request.get("fenced_by_operator")),
        )


@dataclass(frozen=True)
class SwitchoverRequest:
    broker_name: str
    to_key: str | None = None
    catch_up_timeout_seconds: float = 30.0

    def to_json(self) -> dict[str, Any]:
        return {
            "op": "switchover",
            "broker_name": self.broker_name,
            "to_key": self.to_key,
            "catch_up_timeout_seconds": self.catch_up_timeout_seconds,
        }

    @classmethod
    def from_json(cls, request: Mapping[str, Any]) -> SwitchoverRequest:
        to_key = request.get("to_key")
        return cls(
            broker_name=str(request.get("broker_name", "")),
            to_key=None if to_key is None else str(to_key),
            catch_up_timeout_seconds=float(request.get("catch_up_timeout_seconds", 30.0)),
        )


def acknowledge(config: WatchdogConfig, store: StateStore, broker_name: str) -> dict[str, Any]:
    """`ack`: lift the anti-flap block on a group's failovers; the answer as the wire has it.
    Whoever holds the lock writes it: the daemon for a client, else the CLI itself."""
    if broker_name not in config.group_names():
        return {"error": f"unknown broker group {broker_name!r}"}
    state = store.load()
    record = replace(state.group(broker_name), blocked_until=None, block_reason="")
    store.save(state.with_group(broker_name, record))
    return {"ok": True, "message": f"automatic failover of {broker_name} re-enabled"}


# -- the daemon's side ---------------------------------------------------------------------


async def start_control_server(
    path: Path,
    failover: FailoverHandler,
    ack: AckHandler,
    status: StatusHandler,
    switchover: SwitchoverHandler | None = None,
) -> asyncio.AbstractServer:
    """Listen on `path` (owner only); each connection is one request."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(message: Mapping[str, Any]) -> None:
            writer.write((wire_json(message) + "\n").encode())

        try:
            line = await asyncio.wait_for(reader.readline(), _REQUEST_TIMEOUT_SECONDS)
            request = json.loads(line or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            await answer_request(request, send, failover, ack, status, switchover)
            await writer.drain()
        except (ValueError, TimeoutError, ConnectionError) as exc:
            with contextlib.suppress(ConnectionError):
                send({"error": f"bad request: {exc}"})
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = await asyncio.start_unix_server(serve, path=str(path))
    os.chmod(path, 0o600)
    return server


async def answer_request(
    request: Mapping[str, Any],
    send: Send,
    failover: FailoverHandler,
    ack: AckHandler,
    status: StatusHandler,
    switchover: SwitchoverHandler | None = None,
) -> None:
    """Run one request (from the socket, or from etcd on the leader) and send its answers;
    a field of the wrong type or value is one "bad request" answer."""
    op = request.get("op")
    try:
        if op == "failover":
            await failover(FailoverRequest.from_json(request), send)
        elif op == "switchover" and switchover is not None:
            await switchover(SwitchoverRequest.from_json(request), send)
        elif op == "ack":
            send(ack(str(request.get("broker_name", ""))))
        elif op == "status":
            send(status())
        else:
            send({"error": f"unknown op {op!r}"})
    except (ValueError, TypeError) as exc:
        send({"error": f"bad request: {exc}"})


async def relay_failover(
    events: asyncio.Queue[Mapping[str, Any]], task: asyncio.Task[FailoverResult], send: Send
) -> None:
    """Send a failover's events as they come, then its result once the task has ended."""
    while True:
        get = asyncio.ensure_future(events.get())
        done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            send(get.result())
            continue
        get.cancel()
        while not events.empty():
            send(events.get_nowait())
        break
    result = task.result()
    send({"event": "result", "outcome": result.outcome, "detail": result.detail})


# -- the CLI's side ------------------------------------------------------------------------


class ControlConnection:
    """A client's connection to the daemon's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, config: WatchdogConfig) -> ControlConnection:
        """Connect; OSError when nothing listens on the socket."""
        reader, writer = await asyncio.open_unix_connection(str(control_socket_path(config)))
        return cls(reader, writer)

    async def send(self, request: Mapping[str, Any]) -> None:
        self._writer.write((wire_json(request) + "\n").encode())
        await self._writer.drain()

    async def answer(self) -> dict[str, Any] | None:
        """The daemon's next answer; None once it has closed the connection."""
        line = await self._reader.readline()
        if not line:
            return None
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def answers(self) -> AsyncIterator[dict[str, Any]]:
        while (answer := await self.answer()) is not None:
            yield answer

    def close(self) -> None:
        self._writer.close()


async def ask_status(config: WatchdogConfig, timeout_seconds: float = 2.0) -> dict[str, Any] | None:
    """The running daemon's own view (group states and their sentences), or None when no
    daemon answers on the control socket within `timeout_seconds`."""
    try:
        async with asyncio.timeout(timeout_seconds):
            daemon = await ControlConnection.open(config)
            try:
                await daemon.send({"op": "status"})
                answer = await daemon.answer()
            finally:
                daemon.close()
    except (OSError, TimeoutError, ValueError):
        return None
    return answer if answer is not None and answer.get("ok") else None
