"""Coverage-guided fuzzing of the harnesses in fuzz/targets.py with atheris (libFuzzer).

    .venv/bin/python -m fuzz.run all --seconds 60          every target, 60 s each, in turn
    .venv/bin/python -m fuzz.run frame config --seconds 300
    .venv/bin/python -m fuzz.run frame -- -jobs=2          extra libFuzzer flags after --

Each target runs in a process of its own (atheris.Fuzz() never returns) reading its committed
seeds from fuzz/corpus/<target>/ and keeping what it learns in fuzz/work/<target>/corpus
(not committed). A finding stops that target: the input is saved as
fuzz/work/<target>/crash-<sha1>; the traceback is in fuzz/work/<target>/log.txt. Add it to the
committed corpus as fuzz/corpus/<target>/regress-<name> once the parser is fixed.

The summary (executions, coverage, findings per target) is printed and written to
fuzz/work/summary.json; the numbers in fuzz/README.md come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"

# libFuzzer: a single input taking this long is a hang (a finding, saved as timeout-*).
_TIMEOUT_SECONDS = 10
_MAX_LEN = 16384  # the largest seed is ~5 KB; leave room to grow
_RSS_LIMIT_MB = 2048


def _target_names() -> list[str]:
    from fuzz.targets import TARGETS

    return list(TARGETS)


def _child(target: str, libfuzzer_args: list[str]) -> None:
    """Runs in the per-target process: instrument the project, then hand over to libFuzzer."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["watchdog", "fuzz", "tomllib"]):
        from fuzz.targets import TARGETS

    harness = TARGETS[target]
    atheris.Setup([sys.argv[0], *libfuzzer_args], harness)
    atheris.Fuzz()


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_PROGRESS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def run_target(target: str, seconds: int, extra: list[str]) -> dict[str, Any]:
    work = WORK / target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = HERE / "corpus" / target
    args = [
        str(corpus),
        str(seeds),
        f"-max_total_time={seconds}",
        f"-timeout={_TIMEOUT_SECONDS}",
        f"-max_len={_MAX_LEN}",
        f"-rss_limit_mb={_RSS_LIMIT_MB}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--child", target, "--", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
    )
    elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    (work / "log.txt").write_text(log)
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    progress = _PROGRESS.findall(log)
    last = progress[-1] if progress else None
    artifacts = _ARTIFACT.findall(log)
    return {
        "target": target,
        "seconds": round(elapsed, 1),
        "executions": stats.get("number_of_executed_units", int(last[0]) if last else 0),
        "exec_per_second": stats.get("average_exec_per_sec", 0),
        "coverage": int(last[2]) if last else 0,
        "features": int(last[3]) if last else 0,
        "corpus": int(last[4]) if last else 0,
        "peak_rss_mb": stats.get("peak_rss_mb", 0),
        "exit_code": proc.returncode,
        "findings": artifacts,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    if argv[:1] == ["--child"]:
        _child(argv[1], extra)
        return 0
    names = _target_names()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", choices=["all", *names])
    parser.add_argument("--seconds", type=int, default=60, help="time budget per target")
    parser.add_argument("--summary", type=Path, default=WORK / "summary.json")
    args = parser.parse_args(argv)
    targets = names if "all" in args.targets else args.targets
    results = []
    for target in targets:
        print(f"fuzz {target}: {args.seconds} s ...", flush=True)
        result = run_target(target, args.seconds, extra)
        results.append(result)
        found = ", ".join(result["findings"]) or "none"
        print(
            f"  {result['executions']:,} executions in {result['seconds']} s "
            f"({result['exec_per_second']}/s), cov {result['coverage']} ft {result['features']}, "
            f"corpus {result['corpus']}, findings: {found}",
            flush=True,
        )
    WORK.mkdir(exist_ok=True)
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "results": results,
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    failed = [r["target"] for r in results if r["findings"] or r["exit_code"] != 0]
    if failed:
        print(f"findings or failures in: {', '.join(failed)} (see fuzz/work/<target>/log.txt)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
