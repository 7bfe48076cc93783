"""Real frames recorded from RocketMQ (tests/unit/golden) decoded, and a Requester replaying one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from watchdog.remoting import FrameDecoder, RemotingCommand

__all__ = ["GOLDEN", "Replay", "golden", "run"]

GOLDEN = Path(__file__).parent / "golden"  # 4.9.7's; other versions in subfolders


def golden(name: str, folder: Path = GOLDEN) -> RemotingCommand:
    """The one frame recorded in `folder`/`name`.bin."""
    (cmd,) = FrameDecoder().feed((folder / f"{name}.bin").read_bytes())
    return cmd


class Replay:
    """A Requester that answers with a recorded real reply and remembers what was asked."""

    def __init__(self, reply: RemotingCommand) -> None:
        self.reply = reply
        self.asked: list[tuple[int, dict[str, str], bytes]] = []

    async def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout_seconds: float,
    ) -> RemotingCommand:
        self.asked.append((code, dict(ext_fields or {}), body))
        return self.reply


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)
