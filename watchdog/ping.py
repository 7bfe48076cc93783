"""Secondary-check probe: does one broker answer its runtime info? Exit 0 yes, 1 no, 2 bad use.

Kept to the standard library and the remoting package: it is started once per check, often on
another host over SSH, and must not spend seconds importing the daemon's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .model import parse_duration
from .remoting import (
    AclRefused,
    ClientPool,
    RemotingError,
    describe_error,
    get_broker_runtime_info,
)

__all__ = ["ping", "main"]


async def ping(addr: str, *, timeout_seconds: float) -> tuple[bool, str]:
    """(answered, detail). A TCP connect alone is not an answer; a refusal by the broker's ACL
    (aclEnable=true: this check signs nothing) is one, from the broker's request thread."""
    pool = ClientPool(connect_timeout_seconds=timeout_seconds)
    try:
        info = await get_broker_runtime_info(pool.get(addr), timeout_seconds=timeout_seconds)
    except AclRefused as exc:
        return True, f"answered, its ACL refusing the unsigned request ({exc.reason})"
    except RemotingError as exc:
        return False, describe_error(exc)
    finally:
        await pool.close_all()
    return True, f"commitLogMaxOffset={info.get('commitLogMaxOffset', '?')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rmq-watchdog-ping",
        description="Ask the broker at ADDR (host:port) for its runtime info: exit 0 when it "
        "answered, 1 when it did not (a TCP connect alone does not count).",
    )
    parser.add_argument("addr", help="broker address, host:port")
    parser.add_argument("--timeout", default="1s", help="answer within this (default 1s)")
    args = parser.parse_args(argv)
    try:
        timeout_seconds = parse_duration(args.timeout)
        host, _, port = args.addr.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{args.addr!r} is not host:port")
    except ValueError as exc:
        print(f"rmq-watchdog-ping: {exc}", file=sys.stderr)
        return 2
    alive, detail = asyncio.run(ping(args.addr, timeout_seconds=timeout_seconds))
    print(f"{args.addr} {'alive' if alive else 'down'}: {detail}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
