"""The click CLI and its one-shot commands (failover, check, ack, ...)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._cli import BadInput, cli, main

if TYPE_CHECKING:
    from ._check import Finding, block_findings, can_fail_over, run_checks
    from ._failover import render_plan, run_ack, run_failover

__all__ = [
    "BadInput",
    "cli",
    "main",
    "run_failover",
    "run_ack",
    "render_plan",
    "Finding",
    "block_findings",
    "run_checks",
    "can_fail_over",
]

# The one-shot commands import most of the package (act, daemon, probe); the sandbox's start,
# stop and kill commands, which a failover runs once per step, need none of it. Loaded on first
# use, so `python -m watchdog sandbox stop` starts in a fraction of the time.
_LAZY = {
    "Finding": "._check",
    "block_findings": "._check",
    "can_fail_over": "._check",
    "run_checks": "._check",
    "render_plan": "._failover",
    "run_ack": "._failover",
    "run_failover": "._failover",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
