"""What the benchmark scripts share: machine facts, Markdown tables and result files, children
measured by their rusage, a sandbox that always comes down, and the daemon as a child.

Each script is run as a file (`python bench/x.py`, sys.path[0] is then bench/) or as a module
(`python -m bench.x` from the repository root). For the file case its one line before the
imports, `sys.path.insert(0, ...parents[1])`, makes the `bench` package importable; it cannot
live here, since it is what lets a script import this module.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from watchdog.tools.daemon_child import DaemonChild
from watchdog.tools.sandbox import DEFAULT_VERSION, Promotion, Sandbox, find_java

__all__ = [
    "REPO_ROOT",
    "RESULTS_DIR",
    "ChildRun",
    "DaemonChild",
    "MachineFacts",
    "TlsMode",
    "add_common_arguments",
    "bench_dir",
    "command_line",
    "dry_run_copy",
    "event_time",
    "fmt_ms",
    "fmt_s",
    "load_average",
    "machine_facts",
    "markdown_table",
    "median",
    "publish",
    "run_child",
    "running_sandbox",
    "signal_process",
    "terminate",
    "write_result",
]

# The sandbox's --tls: RocketMQ's default (a self-signed key at each JVM start) or disabled.
TlsMode = Literal["permissive", "disabled"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"


# --------------------------------------------------------------------------- facts and tables


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (one, five, fifteen)


def _java_version() -> str:
    try:
        done = subprocess.run(
            [find_java(), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class MachineFacts:
    """The machine a result was measured on, taken when the benchmark starts."""

    nproc: int
    load_average_at_start: tuple[float, float, float]
    rocketmq_version: str
    python_version: str
    java_version: str
    cpu_model: str
    started_at: str  # ISO 8601, UTC

    def to_markdown(self, load_average_at_end: tuple[float, float, float]) -> str:
        def loads(values: tuple[float, float, float]) -> str:
            return " / ".join(f"{v:.2f}" for v in values)

        return "\n".join(
            [
                f"- started: {self.started_at}",
                f"- nproc: {self.nproc} ({self.cpu_model})",
                f"- load average (1/5/15 min) at start: {loads(self.load_average_at_start)}",
                f"- load average (1/5/15 min) at end: {loads(load_average_at_end)}",
                f"- RocketMQ: {self.rocketmq_version}",
                f"- Python: {self.python_version}",
                f"- Java: {self.java_version}",
            ]
        )


def machine_facts(rocketmq_version: str) -> MachineFacts:
    return MachineFacts(
        nproc=os.cpu_count() or 0,
        load_average_at_start=load_average(),
        rocketmq_version=rocketmq_version,
        python_version=platform.python_version(),
        java_version=_java_version(),
        cpu_model=_cpu_model(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def command_line() -> str:
    """The exact command that is running, as typed from the repository root."""
    argv = list(sys.orig_argv)
    cwd = Path.cwd()
    if argv and argv[0].startswith(str(cwd) + os.sep):
        argv[0] = os.path.relpath(argv[0])
    prefix = "" if cwd == REPO_ROOT else f"cd {shlex.quote(str(cwd))} && "
    return prefix + shlex.join(argv)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, columns padded so it also reads well as plain text."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, the table {len(headers)}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def write_result(
    name: str,
    title: str,
    tables: Sequence[str],
    facts: MachineFacts,
    notes: Sequence[str],
    *,
    results_dir: Path = RESULTS_DIR,
) -> Path:
    """Write bench/results/<name>.md: the tables, the machine, the command, and the notes."""
    results_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]
    for table in tables:
        parts += [table, ""]
    parts += ["## Machine", "", facts.to_markdown(load_average()), ""]
    parts += ["## Command", "", "```sh", command_line(), "```", ""]
    if notes:
        parts += ["## Notes", ""]
        parts += [f"- {note}" for note in notes]
        parts.append("")
    path = results_dir / f"{name}.md"
    path.write_text("\n".join(parts))
    return path


def publish(
    name: str,
    title: str,
    tables: Sequence[str],
    facts: MachineFacts,
    notes: Sequence[str],
    *,
    results_dir: Path = RESULTS_DIR,
) -> Path:
    """`write_result`, then say on stderr where the file went (the scripts' last words)."""
    path = write_result(name, title, tables, facts, notes, results_dir=results_dir)
    print(f"\nwritten {path}", file=sys.stderr)
    return path


def add_common_arguments(parser: argparse.ArgumentParser, *, default_base_port: int) -> None:
    parser.add_argument(
        "--base-port",
        type=int,
        default=default_base_port,
        help="first port of the sandbox (it uses about 35 from here); default %(default)s",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="RocketMQ version")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where sandboxes live (default: a temp dir)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (logs, stores) afterwards"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where <name>.md is written"
    )


@contextmanager
def bench_dir(name: str, parent: Path | None, keep: bool) -> Iterator[Path]:
    """A fresh folder for this run's sandboxes and logs; removed afterwards unless `keep`."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"rmq-bench-{name}-", dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ChildRun:
    """One child process, measured: wall time from spawn to reap, and its own CPU (rusage)."""

    wall_seconds: float
    user_seconds: float
    sys_seconds: float
    exit_code: int
    output: str
    timed_out: bool

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.sys_seconds


def run_child(
    argv: Sequence[str],
    *,
    output_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = 120.0,
) -> ChildRun:
    """Run argv to its end; its CPU comes from wait4's rusage of exactly this child (all of its
    threads, and any children it waited for), not from RUSAGE_CHILDREN of the whole script."""
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(output_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), dict(env or os.environ), file_actions=actions)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(timeout_seconds, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    return ChildRun(
        wall_seconds=wall,
        user_seconds=usage.ru_utime,
        sys_seconds=usage.ru_stime,
        exit_code=os.waitstatus_to_exitcode(status),
        output=output_path.read_text(errors="replace"),
        timed_out=timed_out.is_set(),
    )


@contextmanager
def running_sandbox(
    directory: Path,
    *,
    base_port: int,
    version: str,
    tls: TlsMode = "permissive",
    timeout_seconds: float = 240.0,
    replication: Literal["async", "sync"] = "async",
    promotion: Promotion = "restart",
) -> Iterator[Sandbox]:
    """`sandbox up` (one group, master + slave), and `sandbox down` whatever happens."""
    box = Sandbox(directory)
    try:
        box.up(
            version=version,
            base_port=base_port,
            tls=tls,
            timeout_seconds=timeout_seconds,
            replication=replication,
            promotion=promotion,
        )
        yield box
    finally:
        # up() cleans up after itself when it fails; down() stops nothing then and succeeds.
        if box.cluster_path.exists():
            box.down()


def signal_process(box: Sandbox, key: str, sig: signal.Signals) -> float:
    """Send `sig` to one sandbox process; return the wall-clock time just before the signal.

    Signals the pid directly (Sandbox.kill reads its files first, which can take tens of ms
    under load, and a send could slip through in between). After SIGKILL it waits until the
    process is gone, reaping it when it is our child.
    """
    pid = box.pid(key)
    if pid is None:
        raise RuntimeError(f"{key} is not running")
    sent_at = time.time()
    os.kill(pid, sig)
    if sig == signal.SIGKILL:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not our child: wait for /proc to drop it (or a zombie)
                stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
                if stat[stat.rindex(")") + 2 :].startswith("Z"):
                    break
            time.sleep(0.01)
    return sent_at


def dry_run_copy(config_path: Path, dest: Path) -> Path:
    """The config with `dry_run = true` (a top-level key: it must precede the first table)."""
    dest.write_text("dry_run = true\n" + config_path.read_text())
    return dest


def event_time(event: Mapping[str, Any]) -> float:
    """A daemon log line's timestamp (ISO 8601 UTC, from structlog) as a Unix time."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def terminate(proc: subprocess.Popen[Any], timeout_seconds: float) -> None:
    """SIGTERM a child still running, wait up to `timeout_seconds`, then SIGKILL it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
