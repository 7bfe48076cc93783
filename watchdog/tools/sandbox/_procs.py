"""The sandbox's processes: spawn in a session of their own, recognise by pid and start time,
signal, stop (TERM, then KILL), reap, and wait until they listen or are registered."""

from __future__ import annotations

import asyncio
import os
import signal as signals
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from ...model import AclCredentials
from ._runtime import SandboxError

__all__ = [
    "SIGNALS",
    "Expectation",
    "Proc",
    "ProcessStatus",
    "State",
    "cmdline",
    "has_exited",
    "log_tail",
    "proc_stat",
    "reap",
    "send_signal",
    "spawn",
    "terminate",
    "wait_until_gone",
    "wait_until_listening",
    "wait_until_registered",
]

_POLL_SECONDS = 0.2

T = TypeVar("T")
State = Literal["alive", "paused", "zombie", "stopped"]
SIGNALS: Mapping[str, signals.Signals] = {
    "KILL": signals.SIGKILL,
    "TERM": signals.SIGTERM,
    "STOP": signals.SIGSTOP,
    "CONT": signals.SIGCONT,
}


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if there is no such pid."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def reap(pid: int) -> None:
    # Our own child (the Python API started it) stays a zombie until we wait for it.
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class Proc:
    """One JVM of the sandbox as recorded: what it runs and how to recognise it."""

    kind: Literal["nameserver", "broker"]
    name: str  # file-name stem: namesrv-0, broker-a-0
    key: str  # what users type: 127.0.0.1:22000, broker-a:0
    addr: str
    main_class: str
    properties: Path
    log: Path
    argv: tuple[str, ...]
    pid: int | None
    start_ticks: int | None

    def state(self) -> State:
        if self.pid is None:
            return "stopped"
        stat = proc_stat(self.pid)
        if stat is None or (self.start_ticks is not None and stat[1] != self.start_ticks):
            return "stopped"  # gone, or the pid now belongs to someone else
        letter = stat[0]
        if letter in "ZX":
            if self.start_ticks is None:
                return "stopped"
            return "zombie"
        argv = cmdline(self.pid)
        if self.main_class not in argv or str(self.properties) not in argv:
            return "stopped"  # a reused pid: not our java process
        return "paused" if letter in "Tt" else "alive"

    def is_running(self) -> bool:
        return self.state() in ("alive", "paused")


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    key: str
    kind: str
    addr: str
    pid: int | None
    state: State
    role: str
    properties: str
    log: str


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> tuple[int, int | None]:
    """Start argv in its own session, stdout+stderr appended to `log`; (pid, start ticks)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"--- {stamp} rmq-watchdog sandbox starts: {' '.join(argv)}\n")
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # Python's own descriptors are close-on-exec; close any inheritable one a C library left.
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass
    try:
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    stat = proc_stat(pid)
    return pid, (stat[1] if stat else None)


def _is_listening(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def send_signal(proc: Proc, sig: signals.Signals) -> None:
    if proc.pid is None:
        return
    with suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def wait_until_gone(procs: Sequence[Proc], timeout_seconds: float) -> list[Proc]:
    """Wait until every process is gone (reaping our own children); return the ones still there."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = []
        for proc in procs:
            state = proc.state()
            if state == "zombie" and proc.pid is not None:
                reap(proc.pid)
            elif state != "stopped":
                left.append(proc)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_SECONDS)


def terminate(procs: Sequence[Proc], timeout_seconds: float) -> None:
    """TERM (and CONT, so a paused JVM can act on it), wait, then KILL what is left."""
    running = [p for p in procs if p.is_running()]
    for proc in running:
        send_signal(proc, signals.SIGTERM)
        send_signal(proc, signals.SIGCONT)
    left = wait_until_gone(running, timeout_seconds)
    for proc in left:
        send_signal(proc, signals.SIGKILL)
    still = wait_until_gone(left, 10.0)
    if still:
        names = ", ".join(f"{p.key} (pid {p.pid})" for p in still)
        raise SandboxError(f"could not stop {names}, not even with SIGKILL")


async def _registrations(
    nameservers: Sequence[str],
) -> dict[str, Mapping[str, Mapping[int, str]] | str]:
    """Each nameserver's brokerName -> brokerId -> addr table, or why it could not be read."""
    from ...remoting import RemotingClient, get_cluster_info

    async def one(addr: str) -> Mapping[str, Mapping[int, str]] | str:
        client = RemotingClient(addr, connect_timeout_seconds=1.0)
        try:
            info = await get_cluster_info(client, timeout_seconds=2.0)
            return info.broker_addrs
        except Exception as exc:  # any failure is "not yet": the caller retries until its deadline
            return f"{type(exc).__name__}: {exc}"
        finally:
            await client.close()

    results = await asyncio.gather(*(one(a) for a in nameservers))
    return dict(zip(nameservers, results, strict=True))


async def _not_answering(
    addrs: Sequence[str], credentials: AclCredentials | None = None
) -> set[str]:
    """The brokers among `addrs` that do not answer GET_BROKER_RUNTIME_INFO yet (asked with
    `credentials` on brokers with ACL)."""
    from ...remoting import RemotingClient, get_broker_runtime_info

    async def one(addr: str) -> str | None:
        client = RemotingClient(addr, connect_timeout_seconds=1.0, credentials=credentials)
        try:
            await get_broker_runtime_info(client, timeout_seconds=2.0)
            return None
        except Exception:  # any failure is "not yet": the caller retries until its deadline
            return addr
        finally:
            await client.close()

    return {a for a in await asyncio.gather(*(one(a) for a in addrs)) if a is not None}


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run, also from code that already runs an event loop (in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class Runs(Protocol):
    def is_running(self) -> bool: ...


def has_exited(proc: Runs, *, recheck_seconds: float = 0.3) -> bool:
    """Whether a JVM we started has exited, seen twice: on a loaded machine one read of its
    /proc entries has reported a running broker as gone (the bench then left it running,
    believing it dead, and its ports blocked every later run)."""
    if proc.is_running():
        return False
    time.sleep(recheck_seconds)
    return not proc.is_running()


@dataclass(frozen=True)
class Expectation:
    proc: Proc
    broker_name: str
    broker_id: int


def wait_until_registered(
    expected: Sequence[Expectation],
    nameservers: Sequence[str],
    timeout_seconds: float,
    credentials: AclCredentials | None = None,
) -> None:
    """Return once every expected broker is registered under its name and id on every
    nameserver and answers runtime info (asked with `credentials` on brokers with ACL); fail
    early, with its log, if one of them exits."""
    deadline = time.monotonic() + timeout_seconds
    missing: list[str] = []
    while True:
        for item in expected:
            if has_exited(item.proc):
                raise SandboxError(
                    f"broker {item.proc.key} ({item.proc.addr}) exited while starting; "
                    f"the end of {item.proc.log}:\n{log_tail(item.proc.log)}"
                )
        tables = _run_coroutine(lambda: _registrations(nameservers))
        missing = []
        for item in expected:
            for ns, table in tables.items():
                if isinstance(table, str):
                    missing.append(f"{item.proc.key} on {ns} ({table})")
                elif table.get(item.broker_name, {}).get(item.broker_id) != item.proc.addr:
                    missing.append(f"{item.proc.key} on {ns}")
        if not missing:
            # A 4.9.7 broker answers runtime info with NoSuchElementException for a moment after
            # it registers (its TPS samples are still empty): a probe then counts it as down.
            silent = _run_coroutine(
                lambda: _not_answering([i.proc.addr for i in expected], credentials)
            )
            missing = [
                f"{i.proc.key} answering runtime info" for i in expected if i.proc.addr in silent
            ]
        if not missing:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    first = next(i for i in expected if missing[0].startswith(i.proc.key + " "))
    raise SandboxError(
        f"not registered after {timeout_seconds:.0f} s: {', '.join(missing)}; "
        f"the end of {first.proc.log}:\n{log_tail(first.proc.log)}"
    )


def wait_until_listening(
    procs: Sequence[Proc], addr_of: Callable[[Proc], str], timeout_seconds: float
) -> None:
    deadline = time.monotonic() + timeout_seconds
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            if has_exited(proc):
                raise SandboxError(
                    f"{proc.kind} {proc.key} exited while starting; "
                    f"the end of {proc.log}:\n{log_tail(proc.log)}"
                )
            if _is_listening(addr_of(proc)):
                waiting.remove(proc)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            proc = waiting[0]
            raise SandboxError(
                f"{proc.kind} {proc.key} does not listen on {proc.addr} after "
                f"{timeout_seconds:.0f} s; the end of {proc.log}:\n{log_tail(proc.log)}"
            )
        time.sleep(_POLL_SECONDS)
