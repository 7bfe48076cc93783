"""Benchmark: a 4.9.7 broker's start, spawn -> registered on every nameserver, by JVM flags.

A sandbox with two nameservers and one broker (broker-a master, small store). The sandbox's own
broker is stopped, and the script starts the same java command line (from the sandbox's
records) with each variant's flags itself, in rounds (every variant once per round, so a change
in the machine's load touches them alike):

- permissive: RocketMQ's default tls.server.mode (two self-signed RSA-2048 key pairs per boot);
- disabled: -Dtls.server.mode=disabled (the sandbox's default);
- rsa1024: permissive with -Dio.netty.handler.ssl.util.selfSignedKeyStrength=1024;
- heap 1g / 4g, with and without -XX:+AlwaysPreTouch (TLS disabled);
- appcds: TLS disabled with -XX:SharedArchiveFile= of a dynamic AppCDS archive that one
  training run made with -XX:ArchiveClassesAtExit= (same flags otherwise).

Each run: spawn, then poll every 50 ms: the broker port accepting TCP (listening), and
GET_BROKER_CLUSTER_INFO on both nameservers listing it as broker-a id 0 (registered). Then
SIGTERM and wait for it to exit (a graceful stop, so every boot recovers a cleanly closed store)
and for both nameservers to drop it. The 1-minute load average is recorded beside each run.

    .venv/bin/python bench/broker_start.py [--runs 5] [--variants permissive disabled ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file (bench/_common.py)

from bench._common import (
    add_common_arguments,
    bench_dir,
    fmt_s,
    load_average,
    machine_facts,
    markdown_table,
    median,
    publish,
)
from watchdog.remoting import RemotingClient, get_cluster_info
from watchdog.tools.sandbox import Sandbox

NAME = "broker_start"
GROUP = "broker-a"
BROKER = "broker-a-0"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.05
KEY_STRENGTH = "-Dio.netty.handler.ssl.util.selfSignedKeyStrength=1024"
TLS_OFF = "-Dtls.server.mode=disabled"


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    heap: str
    flags: tuple[str, ...]
    appcds: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("permissive", "TLS permissive (RocketMQ's default), heap 256m", "256m", ()),
    Variant("disabled", "-Dtls.server.mode=disabled, heap 256m", "256m", (TLS_OFF,)),
    Variant("rsa1024", f"TLS permissive + {KEY_STRENGTH}, heap 256m", "256m", (KEY_STRENGTH,)),
    Variant("heap1g", "TLS disabled, heap 1g", "1g", (TLS_OFF,)),
    Variant(
        "heap1g-pretouch", "TLS disabled, heap 1g, -XX:+AlwaysPreTouch", "1g",
        (TLS_OFF, "-XX:+AlwaysPreTouch"),
    ),  # fmt: skip
    Variant("heap4g", "TLS disabled, heap 4g", "4g", (TLS_OFF,)),
    Variant(
        "heap4g-pretouch", "TLS disabled, heap 4g, -XX:+AlwaysPreTouch", "4g",
        (TLS_OFF, "-XX:+AlwaysPreTouch"),
    ),  # fmt: skip
    Variant(
        "appcds", "TLS disabled, heap 256m, -XX:SharedArchiveFile (dynamic AppCDS)", "256m",
        (TLS_OFF,), appcds=True,
    ),  # fmt: skip
)


@dataclass(frozen=True)
class Run:
    variant: str
    round: int
    listening_seconds: float
    registered_seconds: float
    load1: float


def variant_argv(base: Sequence[str], variant: Variant, archive: Path | None) -> list[str]:
    """The sandbox's java argv with this variant's heap and flags (before -cp)."""
    argv: list[str] = []
    for arg in base:
        if arg.startswith("-Dtls.server.mode="):
            continue
        if arg.startswith("-Xms"):
            arg = f"-Xms{variant.heap}"
        elif arg.startswith("-Xmx"):
            arg = f"-Xmx{variant.heap}"
        elif arg.startswith("-XX:MaxDirectMemorySize="):
            arg = f"-XX:MaxDirectMemorySize={variant.heap}"
        argv.append(arg)
    extra = list(variant.flags)
    if archive is not None:
        extra.append(f"-XX:SharedArchiveFile={archive}")
    at = argv.index("-cp")
    return [*argv[:at], *extra, *argv[at:]]


def _listening(addr: str) -> bool:
    import socket

    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


async def _listed(nameservers: Sequence[str], addr: str) -> list[bool]:
    async def one(ns: str) -> bool:
        client = RemotingClient(ns, connect_timeout_seconds=0.5)
        try:
            info = await get_cluster_info(client, timeout_seconds=1.0)
            return info.broker_addrs.get(GROUP, {}).get(0) == addr
        except Exception:  # noqa: BLE001 - a nameserver that does not answer lists nothing
            return False
        finally:
            await client.close()

    return list(await asyncio.gather(*(one(ns) for ns in nameservers)))


def registered_everywhere(nameservers: Sequence[str], addr: str) -> bool:
    return all(asyncio.run(_listed(nameservers, addr)))


def listed_nowhere(nameservers: Sequence[str], addr: str) -> bool:
    return not any(asyncio.run(_listed(nameservers, addr)))


class Broker:
    """One broker JVM that this script spawned (its own session), stopped by its pid."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> None:
        with log.open("ab") as out:
            out.write(f"--- broker_start.py starts: {' '.join(argv)}\n".encode())
            out.flush()
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def one_start(
    argv: Sequence[str], log: Path, env: dict[str, str], addr: str, nameservers: Sequence[str]
) -> tuple[float, float]:
    """(spawn -> listening, spawn -> registered on every nameserver) in seconds; stopped after."""
    broker = Broker(argv, log, env)
    try:
        listening: float | None = None
        deadline = broker.started + START_TIMEOUT_SECONDS
        while True:
            now = time.monotonic()
            if broker.proc.poll() is not None:
                raise RuntimeError(f"the broker exited ({broker.proc.returncode}); see {log}")
            if now > deadline:
                raise RuntimeError(f"not registered after {START_TIMEOUT_SECONDS:.0f} s; see {log}")
            if listening is None and _listening(addr):
                listening = time.monotonic() - broker.started
            if listening is not None and registered_everywhere(nameservers, addr):
                return listening, time.monotonic() - broker.started
            time.sleep(POLL_SECONDS)
    finally:
        broker.stop()
        deadline = time.monotonic() + 30
        while not listed_nowhere(nameservers, addr) and time.monotonic() < deadline:
            time.sleep(0.2)


def train_archive(
    argv: Sequence[str], archive: Path, log: Path, env: dict[str, str], addr: str,
    nameservers: Sequence[str],
) -> float:  # fmt: skip
    """One run with -XX:ArchiveClassesAtExit: the archive is written when the JVM exits (the
    SIGTERM path runs it too). Returns the archive's size in MiB."""
    at = list(argv).index("-cp")
    training = [*argv[:at], f"-XX:ArchiveClassesAtExit={archive}", *argv[at:]]
    one_start(training, log, env, addr, nameservers)
    if not archive.is_file():
        raise RuntimeError(f"the training run wrote no archive {archive}; see {log}")
    return archive.stat().st_size / 2**20


def summary_rows(runs: Sequence[Run], variants: Sequence[Variant]) -> list[list[str]]:
    rows = []
    for variant in variants:
        mine = [r for r in runs if r.variant == variant.name]
        if not mine:
            continue
        reg = [r.registered_seconds for r in mine]
        rows.append(
            [
                variant.name,
                variant.what,
                str(len(mine)),
                fmt_s(median([r.listening_seconds for r in mine])),
                fmt_s(median(reg)),
                fmt_s(min(reg)),
                fmt_s(max(reg)),
                f"{min(r.load1 for r in mine):.2f}-{max(r.load1 for r in mine):.2f}",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_base_port=29400)
    parser.add_argument("--runs", type=int, default=5, help="starts per variant (default 5)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[v.name for v in VARIANTS],
        default=[v.name for v in VARIANTS],
        help="which variants (default: all)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    variants = [v for v in VARIANTS if v.name in args.variants]
    facts = machine_facts(args.version)
    runs: list[Run] = []
    notes: list[str] = []
    with bench_dir(NAME, args.work_dir, args.keep) as work:
        box = Sandbox(work / "sandbox")
        try:
            box.up(version=args.version, base_port=args.base_port, slaves=0, tls="disabled")
            doc = box.info()
            nameservers = [n["addr"] for n in doc["nameservers"]]
            addr = doc["brokers"][0]["addr"]
            state = json.loads((box.dir / "sandbox.json").read_text())
            base = list(state["processes"][BROKER]["argv"])
            box.stop("broker-a:0")
            wait_gone = time.monotonic() + 30
            while not listed_nowhere(nameservers, addr) and time.monotonic() < wait_gone:
                time.sleep(0.2)
            env = {**os.environ, "ROCKETMQ_HOME": str(box.dir)}
            log = work / "broker.log"
            archive: Path | None = None
            if any(v.appcds for v in variants):
                archive = work / "broker-appcds.jsa"
                cds_base = next(v for v in variants if v.appcds)
                size = train_archive(
                    variant_argv(base, cds_base, None), archive, log, env, addr, nameservers
                )
                notes.append(
                    f"AppCDS: one training run with -XX:ArchiveClassesAtExit wrote a "
                    f"{size:.1f} MiB dynamic archive (on top of the JDK's default CDS archive); "
                    "the appcds runs map it with -XX:SharedArchiveFile."
                )
                print(f"AppCDS archive {archive}: {size:.1f} MiB", file=sys.stderr)
            for number in range(1, args.runs + 1):
                for variant in variants:
                    command = variant_argv(base, variant, archive if variant.appcds else None)
                    load1 = load_average()[0]
                    listening, registered = one_start(command, log, env, addr, nameservers)
                    runs.append(Run(variant.name, number, listening, registered, load1))
                    print(
                        f"round {number} {variant.name}: listening {fmt_s(listening)} s, "
                        f"registered {fmt_s(registered)} s (load {load1:.2f})",
                        file=sys.stderr,
                    )
            if archive is not None:
                # The JVM warns ([warning][cds]) when it cannot map an archive it was given
                # (another JDK, another class path): then the appcds runs measured nothing.
                warnings = sorted(
                    {
                        line.split("]", 2)[-1].strip()
                        for line in log.read_text(errors="replace").splitlines()
                        if "[cds" in line and "Pre JDK 6 class not supported" not in line
                    }
                )
                notes.append(
                    "The JVM's [cds] log lines over every run: "
                    + ("; ".join(warnings[:3]) if warnings else "none")
                    + ". 'Skipping ...' and 'Pre JDK 6 class not supported by CDS' (left out) "
                    "are the training run's, classes it could not archive; an appcds run that "
                    "could not map the archive would warn here too."
                )
        finally:
            if box.cluster_path.exists():
                box.down()

    cds = [r.registered_seconds for r in runs if r.variant == "appcds"]
    plain = [r.registered_seconds for r in runs if r.variant == "disabled"]
    if cds and plain:
        saved = median(plain) - median(cds)
        notes.append(
            f"Verdict: the dynamic AppCDS archive saved {saved:.2f} s (median "
            f"{median(plain):.2f} -> {median(cds):.2f} s), "
            + (
                "at least the 0.5 s that makes it worth a sandbox step."
                if saved >= 0.5
                else "under the 0.5 s that would make it worth a sandbox step: the sandbox "
                "offers none."
            )
        )
    summary = markdown_table(
        ["variant", "flags", "runs", "listening median s", "registered median s", "min s",
         "max s", "load (1 min) over its runs"],
        summary_rows(runs, variants),
    )  # fmt: skip
    per_run = markdown_table(
        ["round", "variant", "listening s", "registered s", "load (1 min) at spawn"],
        [
            [str(r.round), r.variant, fmt_s(r.listening_seconds), fmt_s(r.registered_seconds),
             f"{r.load1:.2f}"]
            for r in runs
        ],
    )  # fmt: skip
    notes[:0] = [
        "Times are from spawning the java process (the sandbox's own command line, so "
        "`-XX:-UsePerfData`, the JDK 17 --add-opens, MaxDirectMemorySize = heap) to the broker "
        "port accepting TCP (listening) and to GET_BROKER_CLUSTER_INFO on both nameservers "
        "listing it as broker-a id 0 (registered), polled every 50 ms.",
        "One broker, small store (a few KB), every stop graceful (SIGTERM), so each boot is a "
        "normal recovery. Rounds interleave the variants.",
        "Listening comes after the JVM's start, BrokerController.initialize (config and store "
        "load and recovery, the remoting servers' construction, where permissive TLS makes its "
        "self-signed keys) and the store's start; registered - listening is the rest of "
        "BrokerController.start, then registerBrokerAll to both nameservers.",
    ]
    publish(
        NAME,
        "Broker start: spawn -> registered on every nameserver, by JVM flags (RocketMQ "
        f"{args.version})",
        [summary, "Per run:", per_run],
        facts,
        notes,
        results_dir=args.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
