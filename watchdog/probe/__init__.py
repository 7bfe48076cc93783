"""Room 1 (I/O): the cluster as one immutable ClusterSnapshot per cycle, and secondary checks."""

from __future__ import annotations

from ._probe import BackgroundSecondaryChecks, Prober, SecondaryRunner, client_pool, describe_error

__all__ = [
    "BackgroundSecondaryChecks",
    "Prober",
    "client_pool",
    "SecondaryRunner",
    "describe_error",
]
