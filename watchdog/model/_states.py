"""The states a broker group can be in, as exported in metrics and written in logs."""

from __future__ import annotations

import enum

__all__ = ["GroupState"]


class GroupState(enum.StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"  # master fine, a slave down
    MASTER_SDOWN = "MASTER_SDOWN"  # the watchdog's own probes fail, not yet confirmed
    MASTER_ODOWN = "MASTER_ODOWN"  # confirmed: no vantage point sees it alive, quorum sees it down
    # objectively down, but not promoting until the old master is fenced (no fence, no promotion)
    AWAITING_FENCE = "AWAITING_FENCE"
    FAILOVER_RUNNING = "FAILOVER_RUNNING"
    FAILOVER_BLOCKED = "FAILOVER_BLOCKED"
    ISOLATED = "ISOLATED"  # the watchdog reaches neither a nameserver majority nor any slave
