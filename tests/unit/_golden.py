"""Real frames recorded from RocketMQ (tests/unit/golden) decoded, and a Requester replaying one
(or any reply a test makes up)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from watchdog.remoting import FrameDecoder, RemotingCommand

__all__ = ["GOLDEN", "Replay", "golden", "run"]

GOLDEN = Path(__file__).parent / "golden"  # 4.9.7's; other versions in subfolders


def golden(name: str, folder: Path = GOLDEN) -> RemotingCommand:
    """The one frame recorded in `folder`/`name`.bin."""
    (cmd,) = FrameDecoder().feed((folder / f"{name}.bin").read_bytes())
    return cmd


Handler = Callable[[int, dict[str, str]], "RemotingCommand | Exception"]


class Replay:
    """A Requester that answers with one reply (a recorded real one, or one a test made up) or
    from a handler given the request code and fields (an exception it returns is raised), and
    remembers what was asked."""

    def __init__(self, reply: RemotingCommand | Handler) -> None:
        self.reply = reply
        self.asked: list[tuple[int, dict[str, str], bytes]] = []

    @property
    def asked_fields(self) -> list[tuple[int, dict[str, str]]]:
        return [(code, fields) for code, fields, _ in self.asked]

    async def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout_seconds: float,
    ) -> RemotingCommand:
        self.asked.append((code, dict(ext_fields or {}), body))
        if isinstance(self.reply, RemotingCommand):
            return self.reply
        answer = self.reply(code, dict(ext_fields or {}))
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)
