"""Benchmark: how long the daemon takes to call a master down (MASTER_ODOWN), kill -9 vs SIGSTOP.

A dry-run daemon (it decides and logs, never acts) watches a sandbox. Each run waits for
HEALTHY, notes the wall-clock time, sends the fault to the master, and reads the daemon's JSON
log for the first line of the group in state MASTER_ODOWN; then the master is brought back
(`sandbox start` after kill -9, SIGCONT after SIGSTOP) and the next run waits for HEALTHY again.

    .venv/bin/python bench/detection.py [--runs 5] [--base-port 29100]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    DaemonChild,
    add_common_arguments,
    bench_dir,
    dry_run_copy,
    event_time,
    fmt_s,
    machine_facts,
    markdown_table,
    median,
    publish,
    running_sandbox,
    signal_process,
)
from watchdog.config import load_config
from watchdog.tools.sandbox import Sandbox

NAME = "detection"
GROUP = "broker-a"
MASTER = "broker-a:0"
# SIGSTOP freezes the JVM: a hung master that keeps its TCP connections, so the nameservers
# keep it registered.
FAULTS = {"kill -9": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}
HEALTHY_CYCLES = 3
# Ten times down_after: a fault not confirmed by then is reported as not detected.
DETECT_TIMEOUT_SECONDS = 30.0
RECOVER_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Detection:
    fault: str
    run: int
    sdown_seconds: float | None  # first MASTER_SDOWN line, if the group passed through it
    odown_seconds: float | None  # None: no MASTER_ODOWN within DETECT_TIMEOUT_SECONDS
    event: str  # the ODOWN line's event, or the last line's when it never came


def is_group_line(event: dict[str, Any]) -> bool:
    return "cycle" in event and "state" in event and event.get("broker_name") == GROUP


def wait_healthy(daemon: DaemonChild, after: float, cycles: int) -> None:
    """Return once the group's last `cycles` lines logged after `after` all say HEALTHY."""
    deadline = time.monotonic() + RECOVER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        lines = [e for e in daemon.events() if is_group_line(e) and event_time(e) > after]
        if len(lines) >= cycles and all(e["state"] == "HEALTHY" for e in lines[-cycles:]):
            return
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.tail()}")
        time.sleep(0.2)
    raise TimeoutError(
        f"{GROUP} not HEALTHY for {cycles} cycles within {RECOVER_TIMEOUT_SECONDS} s:\n"
        + daemon.tail()
    )


def one_run(box: Sandbox, daemon: DaemonChild, fault: str, run: int) -> Detection:
    fault_at = signal_process(box, MASTER, FAULTS[fault])
    odown: dict[str, Any] | None = None
    try:
        odown = daemon.wait_for(
            lambda e: is_group_line(e)
            and event_time(e) >= fault_at
            and e["state"] == "MASTER_ODOWN",
            timeout_seconds=DETECT_TIMEOUT_SECONDS,
            what=f"MASTER_ODOWN after {fault}",
        )
    except TimeoutError:
        pass  # reported as not detected, with the daemon's last reason
    finally:
        if FAULTS[fault] == signal.SIGSTOP:
            box.kill(MASTER, "CONT")
        else:
            box.start(MASTER, wait_registered=True)
    lines = [e for e in daemon.events() if is_group_line(e) and event_time(e) >= fault_at]
    end = event_time(odown) if odown is not None else float("inf")
    sdown = [event_time(e) for e in lines if event_time(e) <= end and e["state"] == "MASTER_SDOWN"]
    if odown is None:
        before_recovery = [e for e in lines if event_time(e) <= fault_at + DETECT_TIMEOUT_SECONDS]
        last = before_recovery[-1] if before_recovery else {"event": "no log line"}
        return Detection(
            fault, run, (sdown[0] - fault_at) if sdown else None, None, str(last.get("event"))
        )
    return Detection(
        fault=fault,
        run=run,
        sdown_seconds=(sdown[0] - fault_at) if sdown else None,
        odown_seconds=end - fault_at,
        event=str(odown.get("event", "")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29100)
    parser.add_argument("--runs", type=int, default=5, help="runs per fault")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    facts = machine_facts(args.version)
    results: list[Detection] = []

    with bench_dir(NAME, args.work_dir, args.keep) as work, running_sandbox(
        work / "sandbox", base_port=args.base_port, version=args.version
    ) as box:
        config_path = dry_run_copy(box.config_path, work / "watchdog-dry.toml")
        config = load_config(config_path)
        if not config.dry_run:
            raise RuntimeError(f"{config_path} is not a dry-run config")
        with DaemonChild(config_path, work / "daemon.log") as daemon:
            recovered_at = 0.0
            for fault in FAULTS:
                for run in range(1, args.runs + 1):
                    wait_healthy(daemon, recovered_at, HEALTHY_CYCLES)
                    result = one_run(box, daemon, fault, run)
                    recovered_at = time.time()
                    results.append(result)
                    seen = (
                        f"MASTER_ODOWN after {result.odown_seconds:.2f} s"
                        if result.odown_seconds is not None
                        else f"no MASTER_ODOWN within {DETECT_TIMEOUT_SECONDS:g} s"
                    )
                    print(f"{fault} run {run}: {seen}", file=sys.stderr)

    down_after = config.detect.down_after_seconds
    interval = config.probe.interval_seconds
    headers = [
        "fault",
        "runs",
        "detected",
        "ODOWN median s",
        "min s",
        "max s",
        "first SDOWN median s",
        "down_after",
        "interval",
        "probe timeout",
    ]
    rows = []
    for fault in FAULTS:
        mine = [r for r in results if r.fault == fault]
        times = [r.odown_seconds for r in mine if r.odown_seconds is not None]
        sdowns = [r.sdown_seconds for r in mine if r.sdown_seconds is not None]
        missing = f"not within {DETECT_TIMEOUT_SECONDS:g} s"
        rows.append(
            [
                fault,
                str(len(mine)),
                f"{len(times)}/{len(mine)}",
                fmt_s(median(times)) if times else missing,
                fmt_s(min(times)) if times else "-",
                fmt_s(max(times)) if times else "-",
                f"{fmt_s(median(sdowns))} ({len(sdowns)}/{len(mine)} runs)" if sdowns else "-",
                f"{down_after:g} s",
                f"{interval:g} s",
                f"{config.probe.timeout_seconds:g} s",
            ]
        )
    table = markdown_table(headers, rows)
    per_run = markdown_table(
        ["fault", "run", "MASTER_SDOWN s", "MASTER_ODOWN s", "the ODOWN line (else the last)"],
        [
            [
                r.fault,
                str(r.run),
                fmt_s(r.sdown_seconds) if r.sdown_seconds is not None else "-",
                fmt_s(r.odown_seconds) if r.odown_seconds is not None else "none",
                r.event.replace("|", "/"),
            ]
            for r in results
        ],
    )
    print(table)
    print()
    print(per_run)
    checks = "; ".join(
        f"{c.name}: `{' '.join(c.command)}`, timeout {c.timeout_seconds:g} s"
        for c in config.secondary_checks
    )
    notes = [
        "Detection time = timestamp of the daemon's first log line for the group in state "
        "MASTER_ODOWN minus the wall-clock time taken just before the signal. The line is "
        "written at the end of its cycle, so the time includes that cycle's probe. The "
        "detector counts silence from the last answered probe, which is up to one interval "
        "before the fault. A hang (SIGSTOP): expect down_after - interval .. down_after after "
        "the fault, plus one probe (up to the probe timeout). A crash (kill -9: refused, and "
        "dropped by every answering nameserver) is objectively down in the first cycle that "
        "sees both, without waiting down_after: expect up to one interval plus that probe.",
        "The daemon runs with dry_run = true (prepended to a copy of the sandbox's "
        "watchdog.toml), so it only decides (promote) and never acts; the cluster is unchanged "
        "between runs. The venv's bin is on its PATH, as for an installed `rmq-watchdog`.",
        f"Settings: down_after {down_after:g} s, probe interval {interval:g} s, probe timeout "
        f"{config.probe.timeout_seconds:g} s, quorum {config.detect.quorum}; secondary checks "
        f"(as the sandbox writes them): {checks or 'none'}.",
        "kill -9: the master's sockets close, so the nameservers drop it (2 down votes) and "
        "probes are refused at once. SIGSTOP: the JVM hangs with its sockets open, so the "
        "nameservers keep it registered (up to 120 s); then only the secondary check can give "
        "the second down vote the quorum of 2 needs.",
        f"Between runs: the killed master is restarted with `sandbox start` (waiting until "
        f"both nameservers list it), the stopped one gets SIGCONT; the next run starts after "
        f"{HEALTHY_CYCLES} HEALTHY cycles.",
    ]
    notes.append(
        "A hung master is confirmed only by a secondary check (a new process on the check's "
        "host, here the local one): its answer counts if it comes within the check's timeout "
        f"and is at most down_after ({down_after:g} s, counted from the check's start) old when "
        "a cycle reads it; a check that times out is unknown, which is no vote, and the group "
        "then stays MASTER_SDOWN. So the check's start-up plus the ping's own timeout must fit "
        "in down_after, also on a loaded host."
    )
    publish(
        NAME,
        "Detection time: fault on the master until the daemon logs MASTER_ODOWN",
        [table, "Per run:\n\n" + per_run],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
