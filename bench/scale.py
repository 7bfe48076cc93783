"""Benchmark: how many brokers one watchdog daemon probes at 1 Hz, in CPU of one core and RSS.

For each N, a stand-in cluster (`watchdog.remoting.standin`, asyncio) plays N brokers (N/2 groups
of master + slave) registered in two stand-in nameservers, in a process of its own, so its CPU
is not counted. The real daemon (`watchdog.daemon.Daemon`, as `rmq-watchdog run` builds it,
dry_run = true, metrics server off, JSON log at info to a file) watches them in another process,
instrumented only to record each cycle's duration, CPU time and overrun flag. After a warm-up
the script reads the daemon's CPU from /proc/<pid>/stat and its RSS from /proc/<pid>/status.

Two phases per N, against the same stand-in:
- 1 Hz: the shipped probe settings (interval 1 s, timeout 0.8 s, connect timeout 0.5 s) for a
  window: CPU % of one core, RSS, cycle wall time p50/p99, overruns, skipped cycles;
- capacity: interval and timeouts of 8 s, so every cycle completes however long it takes: the CPU
  time of one complete cycle, i.e. the share of a core a 1 Hz cadence needs.

    .venv/bin/python bench/scale.py [--sizes 250 500 1000 2000 4000] [--window 30] [--profile 2000]

The stand-in listens on 127.0.0.1:31200-31201 (nameservers) and 127.0.0.2-127.0.0.N:31200-31999
(brokers, 800 per loopback address), so that 4000 brokers fit in this helper's port range.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    REPO_ROOT,
    RESULTS_DIR,
    load_average,
    machine_facts,
    markdown_table,
    publish,
    terminate,
)

NAME = "scale"
CLUSTER = "ScaleCluster"
NAMESRV_HOST = "127.0.0.1"
FIRST_PORT = 31200
LAST_PORT = 31999
NAMESRV_PORTS = (FIRST_PORT, FIRST_PORT + 1)
AIM_BROKERS = 2000
AIM_CPU_PERCENT = 50.0
AIM_RSS_MB = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def layout(brokers: int) -> list[tuple[str, int, str, int]]:
    """(brokerName, brokerId, host, port) of each stand-in broker: group i is master id 0 and
    slave id 1, on 127.0.0.2:31200 upwards, 800 ports per loopback address."""
    per_host = LAST_PORT - FIRST_PORT + 1
    out = []
    for index in range(brokers):
        host = f"127.0.0.{2 + index // per_host}"
        port = FIRST_PORT + index % per_host
        out.append((f"scale-{index // 2:05d}", index % 2, host, port))
    return out


def namesrv_addrs() -> list[str]:
    return [f"{NAMESRV_HOST}:{p}" for p in NAMESRV_PORTS]


# --------------------------------------------------------------------------- child: stand-in


def standin_child(brokers: int, ready_path: Path) -> int:
    from watchdog.remoting.standin import StandinServer

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        ns_server = StandinServer(host=NAMESRV_HOST)
        nameservers = [ns_server.add_namesrv(port=p) for p in NAMESRV_PORTS]
        servers: dict[str, StandinServer] = {}
        for name, broker_id, host, port in layout(brokers):
            server = servers.setdefault(host, StandinServer(host=host))
            node = server.add_broker(
                name, broker_id, cluster=CLUSTER, port=port, register_with=nameservers
            )
            node.commitlog_max_offset = 1_000_000  # master and slave equal: no lag
        await ns_server.start()
        for server in servers.values():
            await server.start()
        ready_path.write_text(json.dumps({"pid": os.getpid(), "brokers": brokers}))
        await stop.wait()
        for server in [ns_server, *servers.values()]:
            await server.stop()

    asyncio.run(serve())
    return 0


# --------------------------------------------------------------------------- child: daemon


def daemon_child(
    config_path: Path, cycles_path: Path, log_path: Path, warmup: int, profile: Path | None
) -> int:
    """The daemon as `rmq-watchdog run --log-format json` builds it; each cycle's start, wall
    and CPU time, overrun flag and brokers not answering are appended to `cycles_path`. With
    `profile`, cProfile runs from the end of cycle `warmup` until the daemon stops."""
    import cProfile

    from watchdog.config import load_config
    from watchdog.daemon import Daemon
    from watchdog.observe import configure_logging

    log = log_path.open("w")
    configure_logging("json", "info", stream=log)
    config = load_config(config_path)
    daemon = Daemon(str(config_path), config)
    out = cycles_path.open("w", buffering=1)
    profiler = cProfile.Profile() if profile is not None else None
    last: dict[str, Any] = {}
    run_cycle = daemon.run_cycle
    record_cycle = daemon.metrics.record_cycle

    async def timed_cycle() -> Any:
        started = time.monotonic()
        cpu_started = time.process_time()
        previous = daemon.cycle.number
        cycle = await run_cycle()
        last.clear()
        # CPU time as well as wall time: on a loaded machine the wall time of a cycle includes
        # waiting for a core, its CPU time does not.
        last.update(
            start=started,
            seconds=time.monotonic() - started,
            cpu_seconds=time.process_time() - cpu_started,
        )
        if cycle.number == previous or cycle.snapshot is None:
            last["skipped"] = True  # "probe did not finish in time; cycle skipped"
        else:
            last["down"] = sum(1 for b in cycle.snapshot.brokers if not b.is_up)
            last["probe_seconds"] = cycle.snapshot.duration_seconds
        return cycle

    written = 0

    def record(finished_at: float, is_overrun: bool = False) -> None:
        nonlocal written
        record_cycle(finished_at, is_overrun=is_overrun)
        out.write(json.dumps({**last, "overrun": is_overrun}) + "\n")
        written += 1
        # The parent's window starts once it sees `warmup` lines: profile from there on.
        if profiler is not None and written == warmup:
            profiler.enable()

    daemon.run_cycle = timed_cycle  # type: ignore[method-assign]
    daemon.metrics.record_cycle = record  # type: ignore[method-assign]
    try:
        return asyncio.run(daemon.run())
    finally:
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        log.close()
        out.close()


@dataclass(frozen=True)
class Phase:
    name: str
    interval: str
    timeout: str
    connect_timeout: str
    warmup_cycles: int


RATE = Phase("1 Hz", "1s", "0.8s", "0.5s", 5)  # the shipped defaults
CAPACITY = Phase("capacity", "8s", "8s", "8s", 2)
CAPACITY_CYCLES = 3


def config_text(brokers: int, state_dir: Path, phase: Phase) -> str:
    def q(value: str) -> str:
        return json.dumps(value)

    lines = [
        "dry_run = true",
        f"cluster_name = {q(CLUSTER)}",
        f"nameservers = {json.dumps(namesrv_addrs())}",
        f"state_dir = {q(str(state_dir))}",
        "",
        "[probe]",
        f"interval = {q(phase.interval)}",
        f"timeout = {q(phase.timeout)}",
        f"connect_timeout = {q(phase.connect_timeout)}",
        "",
        "[metrics]",
        "enabled = false",
    ]
    for name, broker_id, host, port in layout(brokers):
        lines += [
            "",
            "[[brokers]]",
            f"broker_name = {q(name)}",
            f"broker_id = {broker_id}",
            f'addr = "{host}:{port}"',
            f'properties = "/nonexistent/{name}-{broker_id}.properties"',
            'start = ["true"]',
            'stop = ["true"]',
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- parent


def cpu_seconds(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class PhaseRun:
    """One daemon run against the stand-in: its cycles in the window and its resources."""

    cycles: tuple[dict[str, Any], ...]
    wall_seconds: float
    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float
    standin_cpu_seconds: float
    load_1min: float

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [c for c in self.cycles if not c.get("skipped")]

    def wall_ms(self, fraction: float, *, complete_only: bool = False) -> float | None:
        cycles = self.complete if complete_only else self.cycles
        return percentile([c["seconds"] * 1000 for c in cycles], fraction)

    def cpu_ms(self, fraction: float, *, complete_only: bool = False) -> float | None:
        cycles = self.complete if complete_only else self.cycles
        return percentile([c["cpu_seconds"] * 1000 for c in cycles], fraction)

    @property
    def cpu_percent(self) -> float:
        return self.cpu_seconds / self.wall_seconds * 100

    @property
    def standin_cpu_percent(self) -> float:
        return self.standin_cpu_seconds / self.wall_seconds * 100

    @property
    def overruns(self) -> int:
        return sum(1 for c in self.cycles if c.get("overrun"))

    @property
    def max_down(self) -> int | None:
        return max((int(c["down"]) for c in self.complete), default=None)


@dataclass(frozen=True)
class SizeResult:
    brokers: int
    rate: PhaseRun
    capacity: PhaseRun

    @property
    def needed_percent(self) -> float | None:
        """% of one core a 1 Hz cadence needs: the CPU ms of a complete cycle / 10."""
        cpu = self.capacity.cpu_ms(0.5, complete_only=True)
        return cpu / 10 if cpu is not None else None

    @property
    def peak_rss_mb(self) -> float:
        return max(self.rate.peak_rss_mb, self.capacity.peak_rss_mb)


def _wait_file(
    path: Path, proc: subprocess.Popen[bytes], timeout_seconds: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not path.exists() or path.stat().st_size == 0:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the child exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: nothing after {timeout_seconds:.0f} s")
        time.sleep(0.2)


def _read_cycles(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def _niceness(nice: int) -> Callable[[], None] | None:
    """A preexec_fn giving the child (and the threads it starts) this nice value."""
    if nice == 0:
        return None

    def renice() -> None:
        os.nice(nice)

    return renice


HERE = str(Path(__file__).resolve())


class Standin:
    """The stand-in child for N brokers, started and stopped with `with`."""

    def __init__(self, brokers: int, work: Path, nice: int) -> None:
        self.brokers = brokers
        self.work = work
        self.nice = nice
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Standin:
        ready = self.work / f"standin-{self.brokers}.json"
        ready.unlink(missing_ok=True)
        with (self.work / f"standin-{self.brokers}.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, HERE, "--standin-child", str(self.brokers), str(ready)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_niceness(self.nice),
            )
        try:
            _wait_file(ready, self.proc, 120, f"stand-in with {self.brokers} brokers")
        except BaseException:
            terminate(self.proc, 60.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            terminate(self.proc, 60.0)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def run_phase(
    standin: Standin,
    phase: Phase,
    *,
    window_seconds: float | None,
    cycles_wanted: int | None,
    profile: Path | None = None,
) -> PhaseRun:
    """Start the daemon on the stand-in, wait `phase.warmup_cycles` cycles, then measure for
    `window_seconds`, or until `cycles_wanted` more cycles have ended."""
    brokers, work = standin.brokers, standin.work
    slug = f"{brokers}-{phase.name.replace(' ', '')}" + ("-profile" if profile else "")
    config = work / f"watchdog-{slug}.toml"
    config.write_text(config_text(brokers, work / f"state-{slug}", phase))
    cycles_path = work / f"cycles-{slug}.jsonl"
    argv = [sys.executable, HERE, "--daemon-child", str(config), str(cycles_path),
            str(work / f"daemon-{slug}.log"), str(phase.warmup_cycles)]  # fmt: skip
    if profile is not None:
        argv.append(str(profile))
    with (work / f"daemon-{slug}.out").open("wb") as out:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_niceness(standin.nice),
        )
    try:
        deadline = time.monotonic() + 300
        while len(_read_cycles(cycles_path)) < phase.warmup_cycles:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}) during warm-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {phase.warmup_cycles} cycles in 300 s")
            time.sleep(0.1)
        warm = len(_read_cycles(cycles_path))
        started = time.monotonic()
        cpu0, standin0 = cpu_seconds(daemon.pid), cpu_seconds(standin.pid)
        load = load_average()[0]
        rss: list[int] = []
        peak = 0
        while True:
            elapsed = time.monotonic() - started
            if window_seconds is not None and elapsed >= window_seconds:
                break
            if cycles_wanted is not None and len(_read_cycles(cycles_path)) >= warm + cycles_wanted:
                break
            if elapsed > 600 or daemon.poll() is not None:
                raise RuntimeError(f"{phase.name} phase with {brokers} brokers did not finish")
            mem = memory_kb(daemon.pid)
            rss.append(mem["VmRSS"])
            peak = max(peak, mem["VmHWM"])
            time.sleep(0.25 if cycles_wanted is not None else 1.0)
        ended = time.monotonic()
        cpu1, standin1 = cpu_seconds(daemon.pid), cpu_seconds(standin.pid)
        mem = memory_kb(daemon.pid)
        rss.append(mem["VmRSS"])
        peak = max(peak, mem["VmHWM"])
    finally:
        terminate(daemon, 60.0)
    all_cycles = _read_cycles(cycles_path)
    if cycles_wanted is not None:
        cycles = all_cycles[warm : warm + cycles_wanted]
    else:
        cycles = [c for c in all_cycles if started <= c["start"] <= ended]
    return PhaseRun(
        cycles=tuple(cycles),
        wall_seconds=ended - started,
        cpu_seconds=cpu1 - cpu0,
        rss_mb=rss[-1] / 1024,
        peak_rss_mb=peak / 1024,
        standin_cpu_seconds=standin1 - standin0,
        load_1min=load,
    )


def profile_tables(path: Path, limit: int = 25) -> tuple[str, str]:
    """(the top functions by own time, the top watchdog/structlog functions by cumulative
    time), as pstats prints them, with the repository and site-packages prefixes cut."""

    def render(sort: str, restriction: str | None) -> str:
        buffer = io.StringIO()
        stats = pstats.Stats(str(path), stream=buffer)
        if restriction is None:
            stats.strip_dirs()
        stats.sort_stats(sort)
        if restriction is None:
            stats.print_stats(limit)
        else:
            stats.print_stats(restriction, limit)
        text = buffer.getvalue()
        for prefix in sorted({str(REPO_ROOT) + "/", *_site_prefixes()}, key=len, reverse=True):
            text = text.replace(prefix, "")
        start = text.find("   ncalls")
        return text[start:].rstrip() if start >= 0 else text.rstrip()

    return render("tottime", None), render("cumulative", r"watchdog/|structlog/")


def _site_prefixes() -> list[str]:
    import site
    import sysconfig

    paths = [*site.getsitepackages(), sysconfig.get_paths()["stdlib"]]
    return [p.rstrip("/") + "/" for p in paths]


def raise_open_files(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise SystemExit(f"the open-file limit ({target}) is below the {needed} needed")
    return target


def _ms(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def tables(results: Sequence[SizeResult]) -> tuple[str, str]:
    rate_rows = []
    capacity_rows = []
    for r in results:
        a, c = r.rate, r.capacity
        skipped = len(a.cycles) - len(a.complete)
        rate_rows.append(
            [
                str(r.brokers),
                str(r.brokers // 2),
                f"{a.cpu_percent:.1f}",
                f"{a.rss_mb:.1f} ({a.peak_rss_mb:.1f})",
                f"{len(a.cycles)} in {a.wall_seconds:.0f} s",
                _ms(a.wall_ms(0.5)),
                _ms(a.wall_ms(0.99)),
                f"{_ms(a.cpu_ms(0.5))} / {_ms(a.cpu_ms(0.99))}",
                f"{a.overruns}/{len(a.cycles)}",
                f"{skipped}/{len(a.cycles)}",
                str(a.max_down) if a.max_down is not None else "-",
                f"{a.standin_cpu_percent:.1f}",
                f"{a.load_1min:.1f}",
            ]
        )
        needed = r.needed_percent
        capacity_rows.append(
            [
                str(r.brokers),
                f"{len(c.complete)}/{len(c.cycles)}",
                f"{_ms(c.cpu_ms(0.5, complete_only=True))} / "
                f"{_ms(c.cpu_ms(0.99, complete_only=True))}",
                _ms(c.wall_ms(0.5, complete_only=True)),
                f"{needed:.0f}" if needed is not None else "-",
                str(c.max_down) if c.max_down is not None else "-",
                f"{c.rss_mb:.1f} ({c.peak_rss_mb:.1f})",
                f"{c.load_1min:.1f}",
            ]
        )
    rate = markdown_table(
        ["brokers", "groups", "daemon CPU % of one core", "RSS MB (peak)", "cycles",
         "cycle p50 ms", "cycle p99 ms", "cycle CPU p50 / p99 ms", "overruns", "skipped",
         "max brokers not answering", "stand-in CPU %", "load (1 min)"],
        rate_rows,
    )  # fmt: skip
    capacity = markdown_table(
        ["brokers", "complete cycles", "CPU ms per complete cycle p50 / p99",
         "wall ms per complete cycle p50", "=> % of one core needed at 1 Hz",
         "max brokers not answering", "RSS MB (peak)", "load (1 min)"],
        capacity_rows,
    )  # fmt: skip
    return rate, capacity


def verdict(results: Sequence[SizeResult]) -> str:
    aim = next((r for r in results if r.brokers == AIM_BROKERS), None)
    if aim is None:
        return f"The aim ({AIM_BROKERS} brokers) was not measured in this run."
    needed = aim.needed_percent
    kept_up = aim.rate.overruns == 0 and len(aim.rate.complete) == len(aim.rate.cycles)
    checks = [
        (
            needed is not None and needed < AIM_CPU_PERCENT,
            f"CPU: a complete cycle costs {_ms(aim.capacity.cpu_ms(0.5, complete_only=True))} "
            f"ms of CPU, so 1 Hz needs {needed:.0f} % of one core"
            if needed is not None
            else "CPU: no complete cycle was measured",
        ),
        (
            aim.peak_rss_mb < AIM_RSS_MB,
            f"RSS: peak {aim.peak_rss_mb:.1f} MB",
        ),
        (
            kept_up,
            f"1 Hz: {aim.rate.overruns} of {len(aim.rate.cycles)} cycles overran, "
            f"{len(aim.rate.cycles) - len(aim.rate.complete)} were skipped",
        ),
    ]
    parts = [f"{text} ({'ok' if ok else 'not ok'})" for ok, text in checks]
    met = all(ok for ok, _ in checks)
    return (
        f"Aim: {AIM_BROKERS} brokers at 1 Hz under {AIM_CPU_PERCENT:.0f} % of one core, RSS "
        f"under {AIM_RSS_MB:.0f} MB. With {AIM_BROKERS}: "
        + "; ".join(parts)
        + ". "
        + ("Met." if met else "**Not met.**")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--standin-child"]:
        return standin_child(int(args_in[1]), Path(args_in[2]))
    if args_in[:1] == ["--daemon-child"]:
        profile = Path(args_in[5]) if len(args_in) > 5 else None
        return daemon_child(
            Path(args_in[1]), Path(args_in[2]), Path(args_in[3]), int(args_in[4]), profile
        )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000], help="brokers"
    )
    parser.add_argument("--window", type=float, default=30.0, help="seconds of the 1 Hz phase")
    parser.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="afterwards, run the capacity phase with N brokers under cProfile",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value of the daemon and the stand-in (e.g. -10 on a shared machine)",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(args_in)
    if args.nice < 0 and os.geteuid() != 0:
        print("not root: --nice below 0 is not allowed, using 0", file=sys.stderr)
        args.nice = 0
    per_host = LAST_PORT - FIRST_PORT + 1
    for n in args.sizes + ([args.profile] if args.profile else []):
        if not 2 <= n <= per_host * 250 or n % 2:
            parser.error(f"{n}: brokers must be an even number between 2 and {per_host * 250}")
    # Each stand-in broker holds its listening socket and the daemon's connection.
    limit = raise_open_files(2 * max(args.sizes + [args.profile or 0]) + 200)
    facts = machine_facts("stand-in (no RocketMQ)")
    results: list[SizeResult] = []
    work = Path(tempfile.mkdtemp(prefix="rmq-bench-scale-", dir=args.work_dir))
    profile_text = cumulative = ""
    profiled: PhaseRun | None = None
    try:
        for brokers in args.sizes:
            with Standin(brokers, work, args.nice) as standin:
                rate = run_phase(standin, RATE, window_seconds=args.window, cycles_wanted=None)
                capacity = run_phase(
                    standin, CAPACITY, window_seconds=None, cycles_wanted=CAPACITY_CYCLES
                )
            result = SizeResult(brokers, rate, capacity)
            results.append(result)
            needed = result.needed_percent
            print(
                f"{brokers} brokers: 1 Hz: CPU {rate.cpu_percent:.1f} % of one core, RSS "
                f"{rate.rss_mb:.1f} MB, cycle p50 {_ms(rate.wall_ms(0.5))} ms, "
                f"{rate.overruns} overruns / {len(rate.cycles)}; a complete cycle needs "
                f"{needed if needed is not None else float('nan'):.0f} % of a core at 1 Hz",
                file=sys.stderr,
            )
        if args.profile:
            path = work / f"profile-{args.profile}.pstats"
            with Standin(args.profile, work, args.nice) as standin:
                profiled = run_phase(
                    standin, CAPACITY, window_seconds=None, cycles_wanted=CAPACITY_CYCLES,
                    profile=path,
                )  # fmt: skip
            try:
                profile_text, cumulative = profile_tables(path)
            except (OSError, TypeError) as exc:  # TypeError: pstats found no data
                profile_text = f"no profile data: {exc}"
            print(profile_text, file=sys.stderr)
            print(cumulative, file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    rate_table, capacity_table = tables(results)
    summary = verdict(results)
    print(summary)
    print(rate_table)
    print(capacity_table)
    parts = [
        summary,
        "1 Hz phase (the shipped probe settings: interval 1 s, timeout 0.8 s, connect timeout "
        f"0.5 s; {args.window:g} s after {RATE.warmup_cycles} warm-up cycles):\n\n" + rate_table,
        f"Capacity phase (interval, timeout and connect timeout 8 s, so that every cycle "
        f"completes; {CAPACITY_CYCLES} cycles after {CAPACITY.warmup_cycles} warm-up "
        "cycles):\n\n" + capacity_table,
    ]
    if profiled is not None:
        parts.append(
            f"cProfile of the daemon with {args.profile} brokers in the capacity phase "
            f"({len(profiled.complete)} complete cycles after the warm-up; a complete cycle "
            f"took {_ms(profiled.cpu_ms(0.5, complete_only=True))} ms of CPU under the "
            f"profiler). Top functions by own time (epoll's poll is the event loop waiting, "
            f"mostly idle between cycles):\n\n```\n{profile_text}\n```\n\n"
            f"watchdog and structlog functions by cumulative time:\n\n```\n{cumulative}\n```"
        )
    notes = [
        "The daemon: `watchdog.daemon.Daemon` built as `rmq-watchdog run` builds it, run in a "
        "child process with dry_run = true, [metrics] enabled = false (the metrics are still "
        "updated every cycle; only the HTTP server is off), JSON logging at info to a file "
        "(one line per group per cycle, as shipped), no secondary checks. The only "
        "instrumentation: run_cycle and metrics.record_cycle are wrapped to append each "
        "cycle's start, wall time, CPU time and overrun flag to a file.",
        "daemon CPU % = (utime + stime of the daemon process, from /proc/<pid>/stat) / wall "
        "time of the window x 100; 100 % is one core. RSS = VmRSS at the end of the window, "
        "peak = VmHWM (includes the warm-up).",
        "cycle = the daemon's run_cycle (probe all nameservers and brokers concurrently, "
        "detect, decide, log, metrics), wall time; cycle CPU = CPU time of the daemon process "
        "during run_cycle, which does not include waiting for a core. overrun = the daemon's "
        "own flag (the cycle ended after the next one was due); skipped = the probe did not "
        "finish within interval + timeout, the daemon logs 'cycle skipped' and judges nothing. "
        "In the capacity phase the CPU of a complete cycle / 1 s is the share of a core a 1 Hz "
        "cadence needs (10 ms per cycle = 1 %).",
        "The stand-in (`watchdog.remoting.standin.StandinServer`, asyncio, one process, its "
        "CPU not counted in the daemon's) answers GET_BROKER_RUNTIME_INFO and "
        "GET_BROKER_CONFIG for every broker and GET_BROKER_CLUSTER_INFO for both nameservers "
        "(the body for N brokers is built once and cached). The daemon asks every broker for "
        "its runtime info every cycle, and for its config only when the broker is new, "
        "restarted (bootTimestamp), failed its last probe, or was last asked 15-30 cycles ago "
        "(watchdog.probe.Prober). 'max brokers not answering' > 0 "
        "means some probes timed out (the stand-in or the daemon did not get a core soon "
        "enough, or connects took over 0.5 s).",
        "Shared 2-core machine; other helpers ran JVM tests at the same time (load column: "
        "a load of 10 means about 5 runnable tasks per core), so wall times include waiting for "
        f"a core; the CPU times are the robust numbers. The daemon and the stand-in ran at "
        f"nice {args.nice}. The open-file limit was raised to {limit}.",
    ]
    publish(
        NAME,
        "Scale: brokers probed at 1 Hz by one daemon, CPU and memory",
        parts,
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
