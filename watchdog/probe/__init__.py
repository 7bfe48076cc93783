"""Room 1 (I/O): the cluster as one immutable ClusterSnapshot per cycle, and secondary checks."""

from __future__ import annotations

from ._prober import Prober, SecondaryRunner, client_pool
from ._secondary import BackgroundSecondaryChecks

__all__ = [
    "BackgroundSecondaryChecks",
    "Prober",
    "SecondaryRunner",
    "client_pool",
]
