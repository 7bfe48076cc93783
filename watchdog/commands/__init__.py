"""The click CLI and its one-shot commands (failover, check, ack, ...)."""

from __future__ import annotations

from ._check import Finding, block_findings, can_fail_over, run_checks
from ._cli import BadInput, cli, main
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
