"""Where an operator's `failover`, `switchover` or `ack` goes with [etcd] (only the leader acts:
this host's daemon when it leads, else the leader through etcd), and how its answers print."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import WatchdogConfig
from ..coord import CoordError, ask_leader
from ..daemon import is_lock_held

__all__ = ["Route", "asking_verb", "forward", "route", "show_answers"]

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Route:
    """With [etcd]: ask the `leader` through etcd, or refuse (`refusal`); neither: this host's
    daemon leads, ask it over its control socket (or act here under the lock without [etcd])."""

    leader: str | None = None
    refusal: str | None = None


def asking_verb(noun: str) -> str:
    """What a daemon is asked to do, for "asking it to ...": fail over, run the switchover."""
    return "fail over" if noun == "failover" else f"run the {noun}"


async def route(config: WatchdogConfig) -> Route:
    """Who takes an operator's request: this host's daemon, the leader elsewhere, or nobody."""
    from ._status import leader_hint, read_etcd

    if config.etcd is None:
        return Route()
    read = await read_etcd(config, with_state=False)
    leader = read.leader_name
    if leader is None:
        return Route(refusal=f"with [etcd] only the leader acts; {leader_hint(read, '')}")
    if leader != config.instance_name:
        return Route(leader=leader)
    if not is_lock_held(config.state_dir):
        return Route(
            refusal=(
                f"etcd names this instance ({leader}) the leader, but no daemon runs here "
                f"(nothing holds {config.state_dir}/lock); its lead lapses within lease_ttl"
            )
        )
    return Route()


async def forward(
    config: WatchdogConfig,
    leader: str,
    request: Mapping[str, Any],
    as_json: bool,
    echo: Echo,
    *,
    noun: str,
    seen: list[dict[str, Any]] | None = None,
) -> int:
    """Put `request` in etcd for `leader` and print its answers as they come; the exit code."""
    assert config.etcd is not None
    prefix = config.etcd_prefix()
    assert prefix is not None
    if not as_json:
        echo(f"{leader} leads; asking it through etcd to {asking_verb(noun)}")
    answers = ask_leader(
        config.etcd,
        prefix,
        request,
        asked_by=f"{config.instance_name} ({socket.gethostname()})",
        take_timeout_seconds=max(10.0, 3 * config.etcd.lease_ttl_seconds),
    )
    try:
        return await show_answers(answers, as_json, echo, noun=noun, seen=seen, who=leader)
    except CoordError as exc:
        if as_json:
            echo(json.dumps({"error": str(exc)}))
        else:
            echo(f"error: {exc}")
        return 1


async def show_answers(
    answers: AsyncIterator[dict[str, Any]],
    as_json: bool,
    echo: Echo,
    *,
    noun: str,
    seen: list[dict[str, Any]] | None = None,
    who: str = "the daemon",
) -> int:
    """Print a daemon's answers to a request (as JSON lines, or a line each); the exit code:
    0 for an ack done or a run that succeeded, else 1."""
    code = 1
    async for message in answers:
        if seen is not None:
            seen.append(message)
        if message.get("event") == "result":
            code = 0 if message["outcome"] == "succeeded" else 1
        if message.get("ok"):
            code = 0
        if as_json:
            echo(json.dumps(message))
        elif "error" in message:
            echo(f"refused by {who}: {message['error']}")
        elif message.get("ok"):
            echo(str(message.get("message") or "done"))
        elif message.get("event") == "taken":
            echo(f"{message.get('leader')} took the request")
        elif message.get("event") == "accepted":
            echo(f"{noun} {message['failover_id']} accepted: {message['plan']['reason']}")
        elif message.get("event") in ("step_done", "step_skipped", "step_failed"):
            rec = message["record"]
            echo(
                f"  step {rec['index'] + 1} {rec['status']}: {message['step']['purpose']} — "
                f"{rec['detail']}"
            )
        elif message.get("event") == "fallback_started":
            echo(f"falling back to a restart: {message['reason']}")
        elif message.get("event") == "result":
            echo(f"{noun} {message['outcome']}: {message['detail']}")
    return code
