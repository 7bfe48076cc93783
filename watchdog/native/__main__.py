"""`python -m watchdog.native VERB ...`: the librocketmq child programs, one verb each."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import IO

from ..remoting import check_topic_name, parse_addr
from ._canary import canary_child
from ._credentials import CredentialsError, read_credentials
from ._spawn import exit_now, result_stream
from ._traffic import (
    DRILL_CONSUMER_GROUP,
    DRILL_SEND_INTERVAL_SECONDS,
    audit_child,
    consume_child,
    probe_child,
    produce_child,
)

Verb = Callable[[argparse.Namespace, IO[str]], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.native",
        description="The real RocketMQ client (librocketmq), in a process its parent can kill.",
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    canary = sub.add_parser("canary", help="send one message and read it back")
    canary.add_argument("--timeout-seconds", type=float, help="give up after this")
    canary.add_argument("--expect-broker-name", help="fail unless the message is on this group")
    canary.add_argument("--json", action="store_true", help="print the result as one JSON line")
    canary.add_argument(
        "--credentials-stdin",
        action="store_true",
        help="sign with the ACL account on stdin's first line (JSON: access_key, secret_key)",
    )
    probe = sub.add_parser("probe", help="send one message per interval, one JSON line each")
    probe.add_argument("--probe-duration-seconds", type=float, help="send for this long")
    probe.add_argument("--probe-interval-seconds", type=float, default=0.2)
    produce = sub.add_parser("produce", help="send one numbered message per interval")
    produce.add_argument("--interval-seconds", type=float, default=DRILL_SEND_INTERVAL_SECONDS)
    consume = sub.add_parser("consume", help="push-consume and print every delivery")
    consume.add_argument("--group", default=DRILL_CONSUMER_GROUP)
    audit = sub.add_parser("audit", help="pull every queue from its first offset")
    audit.add_argument("--timeout-seconds", type=float, default=60.0)
    for verb in (canary, probe):
        verb.add_argument("--namesrv", required=True, help="nameservers, 'host:port;host:port'")
        verb.add_argument("--topic", required=True)
    for verb in (produce, consume, audit):
        verb.add_argument("--namesrv", required=True)
        verb.add_argument("--topic", required=True)
        verb.add_argument("--run-id", required=True)
    return parser


def _problem(args: argparse.Namespace, *numbers: tuple[str, float | None]) -> str | None:
    """What is wrong with the canary's or the probe's arguments; None when nothing is."""
    addrs = [a for a in str(args.namesrv).split(";") if a]
    if not addrs:
        return "--namesrv is empty"
    for addr in addrs:
        try:
            parse_addr(addr)
        except ValueError as exc:
            return f"--namesrv: {exc}"
    try:
        check_topic_name(args.topic)
    except ValueError as exc:
        return f"--topic: {exc}"
    for flag, value in numbers:
        if value is None or not value > 0 or not math.isfinite(value):
            return f"{flag} must be a positive number, got {value}"
    return None


def _canary(args: argparse.Namespace, out: IO[str]) -> int:
    """One round trip, one result line (a bad argument is a failed result); exit 0 if ok."""
    problem = _problem(args, ("--timeout-seconds", args.timeout_seconds))
    credentials = None
    if args.credentials_stdin:
        try:
            credentials = read_credentials(sys.stdin)
        except CredentialsError as exc:
            problem = problem or f"--credentials-stdin: {exc}"
    return canary_child(
        args.namesrv,
        args.topic,
        timeout_seconds=args.timeout_seconds,
        expect_broker_name=args.expect_broker_name,
        as_json=args.json,
        problem=problem,
        out=out,
        credentials=credentials,
    )


def _probe(args: argparse.Namespace, out: IO[str]) -> int:
    """One line per send, exit 0; a bad argument is one {"fatal": ...} line, exit 1."""
    problem = _problem(
        args,
        ("--probe-duration-seconds", args.probe_duration_seconds),
        ("--probe-interval-seconds", args.probe_interval_seconds),
    )
    if problem is not None:
        out.write(json.dumps({"fatal": problem}) + "\n")
        return 1
    return probe_child(
        args.namesrv, args.topic, args.probe_duration_seconds, args.probe_interval_seconds, out
    )


def _drill_child(run: Verb) -> Verb:
    """A drill child: its records on stdout until SIGTERM; any failure is one stderr line."""

    def verb(args: argparse.Namespace, out: IO[str]) -> int:
        try:
            check_topic_name(args.topic)
            return run(args, out)
        except Exception as exc:  # noqa: BLE001 - one line, then out: the parent reads the log
            sys.stderr.write(f"drill {args.verb}: {type(exc).__name__}: {exc}\n")
            return 1

    return verb


_VERBS: dict[str, Verb] = {
    "canary": _canary,
    "probe": _probe,
    "produce": _drill_child(
        lambda a, out: produce_child(a.namesrv, a.topic, a.run_id, a.interval_seconds, out)
    ),
    "consume": _drill_child(
        lambda a, out: consume_child(a.namesrv, a.topic, a.run_id, a.group, out)
    ),
    "audit": _drill_child(
        lambda a, out: audit_child(a.namesrv, a.topic, a.run_id, a.timeout_seconds, out)
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = result_stream()
    exit_now(_VERBS[args.verb](args, out), out)


if __name__ == "__main__":
    sys.exit(main())
