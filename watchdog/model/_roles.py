"""The broker roles RocketMQ 4.x knows, and which of them take writes."""

from __future__ import annotations

__all__ = ["DEFAULT_MASTER_ROLE", "MASTER_ROLES", "is_master_role"]

# brokerRole values of a broker that takes writes; SLAVE is the only other one.
MASTER_ROLES = ("ASYNC_MASTER", "SYNC_MASTER")
# The role a replacement master takes when nothing says otherwise (the broker's own default).
DEFAULT_MASTER_ROLE = "ASYNC_MASTER"


def is_master_role(role: str | None) -> bool:
    return role in MASTER_ROLES
