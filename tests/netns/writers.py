"""Real producers that write until stopped, recording every send, and the accounting of acks.

Run as `python -m tests.netns.writers --namesrv ... --topic ... --prefix ... --mode MODE --out F`
in the clients host: `long` keeps one librocketmq Producer for the whole run (its route is
refreshed every 30 s, as a long-lived application's), `per-send` starts a new Producer for each
message (it reads the route on every send). Each send is one JSON line in `--out`:
{"key", "ok", "status", "at"}; `ok` is SEND_OK only (SLAVE_NOT_AVAILABLE and FLUSH_*_TIMEOUT
are stored on the broker but are no acknowledgement).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Accounting", "Writer", "account", "read_sends", "writing"]

_BODY = "x" * 200


@dataclass(frozen=True)
class Accounting:
    """Every acknowledged message, against what the cluster stores after the run."""

    acked: int
    not_acked: int
    stored: int
    lost: tuple[str, ...]  # acknowledged, not stored anywhere the cluster serves
    duplicated: int  # stored more than once (a retry after a lost answer)
    unacked_stored: int  # not acknowledged but stored (e.g. a timeout after the write)

    def line(self) -> str:
        return (
            f"acked {self.acked}, not acked {self.not_acked}, stored {self.stored}, "
            f"lost {len(self.lost)}, duplicated {self.duplicated}, "
            f"stored without ack {self.unacked_stored}"
        )


def read_sends(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    sends = []
    for line in out.read_text().splitlines():
        with contextlib.suppress(ValueError):
            sends.append(json.loads(line))
    return sends


def account(sends: Sequence[dict[str, Any]], stored_keys: Sequence[str]) -> Accounting:
    acked = {s["key"] for s in sends if s.get("ok")}
    tried = {s["key"] for s in sends}
    counts = collections.Counter(stored_keys)
    ours = {k: n for k, n in counts.items() if k in tried}
    return Accounting(
        acked=len(acked),
        not_acked=len(tried - acked),
        stored=len(ours),
        lost=tuple(sorted(acked - set(ours))),
        duplicated=sum(n - 1 for n in ours.values() if n > 1),
        unacked_stored=len(set(ours) - acked),
    )


@dataclass
class Writer:
    proc: subprocess.Popen[str]
    out: Path

    def stop(self, timeout_seconds: float = 30.0) -> list[dict[str, Any]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return read_sends(self.out)

    def sends(self) -> list[dict[str, Any]]:
        return read_sends(self.out)


@contextlib.contextmanager
def writing(
    exec_prefix: Sequence[str],
    namesrv: str,
    topic: str,
    prefix: str,
    out: Path,
    *,
    mode: str = "long",
    interval_seconds: float = 0.1,
) -> Iterator[Writer]:
    """A writer child in a host (`exec_prefix` enters its namespace); stopped on exit."""
    argv = [
        *exec_prefix, sys.executable, "-m", "tests.netns.writers", "--namesrv", namesrv,
        "--topic", topic, "--prefix", prefix, "--mode", mode, "--out", str(out),
        "--interval", str(interval_seconds),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    writer = Writer(proc, out)
    try:
        yield writer
    finally:
        writer.stop()


# --------------------------------------------------------------------------- the child


def _send_one(producer: Any, topic: str, key: str) -> tuple[bool, str]:
    from rocketmq.client import Message

    msg = Message(topic)
    msg.set_keys(key)
    msg.set_body(f"{key} {_BODY}")
    try:
        result = producer.send_sync(msg)
    except Exception as exc:  # the ctypes client raises its own exception types
        return False, f"{type(exc).__name__}: {str(exc)[:120]}"
    return int(result.status) == 0, str(result.status)


def _producer(group: str, namesrv: str) -> Any:
    from rocketmq.client import Producer

    producer = Producer(group)
    producer.set_namesrv_addr(namesrv)
    producer.set_timeout(3000)
    producer.start()
    return producer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="writers")
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--mode", choices=("long", "per-send"), default="long")
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    group = f"PartitionPG_{args.mode.replace('-', '_')}_{os.getpid()}"
    producer = _producer(group, args.namesrv) if args.mode == "long" else None
    n = 0
    with open(args.out, "a") as out:
        while not stop:
            key = f"{args.prefix}-{n}"
            n += 1
            if producer is None:
                one = _producer(group, args.namesrv)
                try:
                    ok, status = _send_one(one, args.topic, key)
                finally:
                    one.shutdown()
            else:
                ok, status = _send_one(producer, args.topic, key)
            out.write(json.dumps({"key": key, "ok": ok, "status": status, "at": time.time()}))
            out.write("\n")
            out.flush()
            time.sleep(args.interval)
    if producer is not None:
        producer.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
