"""Benchmark: how many brokers one watchdog daemon probes at 1 Hz, in CPU of one core and RSS.

For each N, a stand-in cluster (`watchdog.remoting.standin`, asyncio) plays N brokers (N/2 groups
of master + slave) registered in two stand-in nameservers, in a process of its own, so its CPU
is not counted. The real daemon (`watchdog.daemon.Daemon`, as `rmq-watchdog run` builds it,
dry_run = true, metrics server off, JSON log at info to a file) watches them in another process,
instrumented only to record each cycle's duration and overrun flag. After a warm-up the script
reads the daemon's CPU from /proc/<pid>/stat and its RSS from /proc/<pid>/status for a window.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    load_average,
    machine_facts,
    markdown_table,
    write_result,
)

NAME = "scale"
CLUSTER = "ScaleCluster"
NAMESRV_HOST = "127.0.0.1"
FIRST_PORT = 31200
LAST_PORT = 31999
NAMESRV_PORTS = (FIRST_PORT, FIRST_PORT + 1)
WARMUP_CYCLES = 5
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


def daemon_child(config_path: Path, cycles_path: Path, log_path: Path, profile: Path | None) -> int:
    """The daemon as `rmq-watchdog run --log-format json` builds it; each cycle's start,
    duration, overrun flag and brokers not answering are appended to `cycles_path`."""
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

    def record(finished_at: float, is_overrun: bool = False) -> None:
        record_cycle(finished_at, is_overrun=is_overrun)
        out.write(json.dumps({**last, "overrun": is_overrun}) + "\n")
        if profiler is not None and daemon.cycle.number == WARMUP_CYCLES:
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


def config_text(brokers: int, state_dir: Path) -> str:
    def q(value: str) -> str:
        return json.dumps(value)

    lines = [
        "dry_run = true",
        f"cluster_name = {q(CLUSTER)}",
        f"nameservers = {json.dumps(namesrv_addrs())}",
        f"state_dir = {q(str(state_dir))}",
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class SizeResult:
    brokers: int
    cycles: int
    cpu_percent: float
    rss_mb: float
    peak_rss_mb: float
    cycle_p50_ms: float
    cycle_p99_ms: float
    cycle_max_ms: float
    cycle_cpu_p50_ms: float
    cycle_cpu_p99_ms: float
    cpu_ms_per_cycle: float
    probe_p50_ms: float
    overruns: int
    skipped: int
    max_down: int
    standin_cpu_percent: float
    load_1min: float

    @property
    def meets_aim(self) -> bool:
        return self.cpu_percent < AIM_CPU_PERCENT and self.peak_rss_mb < AIM_RSS_MB


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
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def _stop(proc: subprocess.Popen[bytes], timeout_seconds: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def measure(brokers: int, window_seconds: float, work: Path, profile: Path | None) -> SizeResult:
    here = str(Path(__file__).resolve())
    ready = work / f"standin-{brokers}.json"
    cycles_path = work / f"cycles-{brokers}.jsonl"
    config = work / f"watchdog-{brokers}.toml"
    state = work / f"state-{brokers}"
    config.write_text(config_text(brokers, state))
    with (work / f"standin-{brokers}.out").open("wb") as standin_out:
        standin = subprocess.Popen(
            [sys.executable, here, "--standin-child", str(brokers), str(ready)],
            stdin=subprocess.DEVNULL,
            stdout=standin_out,
            stderr=subprocess.STDOUT,
        )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        _wait_file(ready, standin, 120, f"stand-in with {brokers} brokers")
        argv = [sys.executable, here, "--daemon-child", str(config), str(cycles_path),
                str(work / f"daemon-{brokers}.log")]  # fmt: skip
        if profile is not None:
            argv.append(str(profile))
        with (work / f"daemon-{brokers}.out").open("wb") as daemon_out:
            daemon = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=daemon_out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while len(_read_cycles(cycles_path) if cycles_path.exists() else []) < WARMUP_CYCLES:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}) during warm-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {WARMUP_CYCLES} cycles in 120 s")
            time.sleep(0.2)
        started = time.monotonic()
        cpu0, standin0 = cpu_seconds(daemon.pid), cpu_seconds(standin.pid)
        load = load_average()[0]
        rss: list[int] = []
        peak = 0
        while time.monotonic() - started < window_seconds:
            mem = memory_kb(daemon.pid)
            rss.append(mem["VmRSS"])
            peak = max(peak, mem["VmHWM"])
            time.sleep(1.0)
        ended = time.monotonic()
        cpu1, standin1 = cpu_seconds(daemon.pid), cpu_seconds(standin.pid)
        peak = max(peak, memory_kb(daemon.pid)["VmHWM"])
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(standin)
    wall = ended - started
    cycles = [c for c in _read_cycles(cycles_path) if started <= c["start"] <= ended]
    done = [c for c in cycles if not c.get("skipped")]
    durations = [c["seconds"] * 1000 for c in cycles] or [float("nan")]
    cycle_cpu = [c["cpu_seconds"] * 1000 for c in cycles] or [float("nan")]
    probes = [c["probe_seconds"] * 1000 for c in done] or [float("nan")]
    return SizeResult(
        brokers=brokers,
        cycles=len(cycles),
        cpu_percent=(cpu1 - cpu0) / wall * 100,
        rss_mb=rss[-1] / 1024,
        peak_rss_mb=peak / 1024,
        cycle_p50_ms=percentile(durations, 0.50),
        cycle_p99_ms=percentile(durations, 0.99),
        cycle_max_ms=max(durations),
        cycle_cpu_p50_ms=percentile(cycle_cpu, 0.50),
        cycle_cpu_p99_ms=percentile(cycle_cpu, 0.99),
        cpu_ms_per_cycle=(cpu1 - cpu0) * 1000 / max(1, len(cycles)),
        probe_p50_ms=percentile(probes, 0.50),
        overruns=sum(1 for c in cycles if c.get("overrun")),
        skipped=len(cycles) - len(done),
        max_down=max((c["down"] for c in done), default=-1),
        standin_cpu_percent=(standin1 - standin0) / wall * 100,
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


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--standin-child"]:
        return standin_child(int(args_in[1]), Path(args_in[2]))
    if args_in[:1] == ["--daemon-child"]:
        profile = Path(args_in[4]) if len(args_in) > 4 else None
        return daemon_child(Path(args_in[1]), Path(args_in[2]), Path(args_in[3]), profile)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000], help="brokers"
    )
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per size")
    parser.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="afterwards, run N brokers again under cProfile and report the hot spots",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(args_in)
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
    profiled: SizeResult | None = None
    try:
        for brokers in args.sizes:
            result = measure(brokers, args.window, work, None)
            results.append(result)
            print(
                f"{brokers} brokers: CPU {result.cpu_percent:.1f} % of one core, RSS "
                f"{result.rss_mb:.1f} MB, cycle p50 {result.cycle_p50_ms:.0f} ms p99 "
                f"{result.cycle_p99_ms:.0f} ms, {result.overruns} overruns / {result.cycles}",
                file=sys.stderr,
            )
        if args.profile:
            path = work / f"profile-{args.profile}.pstats"
            profiled = measure(args.profile, args.window, work, path)
            own, cumulative = profile_tables(path)
            profile_text = own
            print(own, file=sys.stderr)
            print(cumulative, file=sys.stderr)
            print(f"profiled run: CPU {profiled.cpu_percent:.1f} % under cProfile", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    headers = [
        "brokers", "groups", "daemon CPU % of one core", "CPU ms per cycle", "RSS MB (peak)",
        "cycle p50 ms", "cycle p99 ms", "cycle max ms", "cycle CPU p50 / p99 ms",
        "probe p50 ms", "overruns", "skipped", "max brokers not answering", "stand-in CPU %",
        "load (1 min)",
    ]  # fmt: skip
    rows = [
        [
            str(r.brokers),
            str(r.brokers // 2),
            f"{r.cpu_percent:.1f}",
            f"{r.cpu_ms_per_cycle:.0f}",
            f"{r.rss_mb:.1f} ({r.peak_rss_mb:.1f})",
            f"{r.cycle_p50_ms:.0f}",
            f"{r.cycle_p99_ms:.0f}",
            f"{r.cycle_max_ms:.0f}",
            f"{r.cycle_cpu_p50_ms:.0f} / {r.cycle_cpu_p99_ms:.0f}",
            f"{r.probe_p50_ms:.0f}",
            f"{r.overruns}/{r.cycles}",
            str(r.skipped),
            str(r.max_down),
            f"{r.standin_cpu_percent:.1f}",
            f"{r.load_1min:.1f}",
        ]
        for r in results
    ]
    table = markdown_table(headers, rows)
    print(table)
    aim = next((r for r in results if r.brokers == AIM_BROKERS), None)
    if aim is None:
        verdict = f"The aim ({AIM_BROKERS} brokers) was not measured in this run."
    else:
        verdict = (
            f"Aim: {AIM_BROKERS} brokers under {AIM_CPU_PERCENT:.0f} % of one core and RSS under "
            f"{AIM_RSS_MB:.0f} MB. Measured: {aim.cpu_percent:.1f} % and {aim.peak_rss_mb:.1f} MB "
            f"peak, {aim.overruns} overruns in {aim.cycles} cycles: "
            + ("met." if aim.meets_aim else "NOT met.")
        )
    tables = [verdict, table]
    if profile_text and profiled is not None:
        tables.append(
            f"cProfile of the daemon with {args.profile} brokers ({args.window:g} s after the "
            f"warm-up; {profiled.cycles} cycles; under cProfile the daemon used "
            f"{profiled.cpu_percent:.0f} % of a core). Top functions by own time:\n\n"
            f"```\n{profile_text}\n```\n\nwatchdog and structlog functions by cumulative "
            f"time:\n\n```\n{cumulative}\n```"
        )
    notes = [
        "The daemon: `watchdog.daemon.Daemon` built as `rmq-watchdog run` builds it, run in a "
        "child process with dry_run = true, [metrics] enabled = false (the metrics are still "
        "updated every cycle; only the HTTP server is off), JSON logging at info to a file "
        "(one line per group per cycle, as shipped), probe interval 1 s, timeout 0.8 s, no "
        "secondary checks. The only instrumentation: run_cycle and metrics.record_cycle are "
        "wrapped to append each cycle's start, duration and overrun flag to a file.",
        "CPU % = (utime + stime of the daemon process, from /proc/<pid>/stat) / wall time of "
        f"the window ({args.window:g} s after {WARMUP_CYCLES} warm-up cycles) x 100; 100 % is "
        "one core. RSS = VmRSS at the end of the window, peak = VmHWM (includes the warm-up).",
        "cycle = the daemon's run_cycle (probe all nameservers and brokers concurrently, "
        "detect, decide, log, metrics), wall time; cycle CPU = process CPU time (all threads) "
        "spent during run_cycle, which does not include waiting for a core on a loaded machine; "
        "CPU ms per cycle = the window's CPU / its cycles (at 1 Hz, 10 ms per cycle = 1 % of a "
        "core). probe = the snapshot alone (wall). overrun = the daemon's own "
        "flag (the cycle ended after its next start was due); skipped = the probe did not "
        "finish within interval + timeout.",
        "The stand-in (`watchdog.remoting.standin.StandinServer`, asyncio, one process, its "
        "CPU not counted in the daemon's) answers GET_BROKER_RUNTIME_INFO and "
        "GET_BROKER_CONFIG for every broker and GET_BROKER_CLUSTER_INFO for both nameservers "
        "(the body for N brokers is built once and cached). 'max brokers not answering' > 0 "
        "means the stand-in or the machine was too slow for the 0.8 s probe timeout.",
        "Shared 2-core machine; other helpers ran tests at the same time (load column). The "
        f"open-file limit was raised to {limit}.",
    ]
    path = write_result(
        NAME,
        "Scale: brokers probed at 1 Hz by one daemon, CPU and memory",
        tables,
        facts,
        notes,
        results_dir=args.results_dir,
    )
    print(f"\nwritten {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
