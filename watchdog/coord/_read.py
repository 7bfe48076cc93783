"""The group as etcd holds it, read once without a lease: who leads, every instance's published
view, the leader's state records. For the CLI (`status`, `history`, `failover`, `ack`), which
takes part in nothing: it campaigns for nothing and publishes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import EtcdSettings, WatchdogConfig
from ._etcd import EtcdSession, Get
from ._values import InstanceView, LeaderRecord, decode_instance, decode_leader

__all__ = ["GroupRead", "read_group", "read_group_of"]


@dataclass(frozen=True)
class GroupRead:
    """One linearizable read of the group's keys (the layout is _coordinator.py's)."""

    prefix: str
    leader: LeaderRecord | None  # None: nobody leads
    instances: tuple[InstanceView, ...]  # by name; only the live ones (their keys have leases)
    unreadable: tuple[str, ...]  # keys under instances/ (or the leader key) not ours to read
    state: dict[str, bytes]  # <prefix>/state/<key> -> value, keyed relative (when asked for)
    revision: int

    @property
    def leader_name(self) -> str | None:
        return None if self.leader is None else self.leader.instance


async def read_group(
    settings: EtcdSettings, prefix: str, *, state_prefix: str | None = None
) -> GroupRead:
    """Read the leader key and the instances' keys, and with `state_prefix` the state records
    under <prefix>/state/<state_prefix> ("" for all), in one transaction (one revision).
    Raises EtcdUnavailable (etcd down, without a quorum, refusing our credentials) and
    OSError (a TLS file that cannot be read)."""
    prefix = prefix.rstrip("/")
    leader_key = f"{prefix}/leader"
    instances_prefix = f"{prefix}/instances/"
    state_root = f"{prefix}/state/"
    reads = [Get(leader_key), Get(instances_prefix, prefix=True)]
    if state_prefix is not None:
        reads.append(Get(state_root + state_prefix, prefix=True))
    session = EtcdSession(settings)
    await session.open()
    try:
        result = await session.txn([], reads)
    finally:
        await session.close()
    unreadable: list[str] = []
    leader = None
    for kv in result.reads[0]:
        try:
            leader = decode_leader(kv.value)
        except ValueError:
            unreadable.append(kv.key)
    instances = []
    for kv in result.reads[1]:
        try:
            instances.append(decode_instance(kv.value))
        except ValueError:
            unreadable.append(kv.key)
    state = {}
    if state_prefix is not None:
        state = {kv.key[len(state_root) :]: kv.value for kv in result.reads[2]}
    return GroupRead(
        prefix=prefix,
        leader=leader,
        instances=tuple(sorted(instances, key=lambda v: v.name)),
        unreadable=tuple(unreadable),
        state=state,
        revision=result.revision,
    )


async def read_group_of(config: WatchdogConfig, *, state_prefix: str | None = None) -> GroupRead:
    """`read_group` with a config's [etcd] and prefix; ValueError without [etcd]."""
    prefix = config.etcd_prefix()
    if config.etcd is None or prefix is None:
        raise ValueError("the config has no [etcd] table")
    return await read_group(config.etcd, prefix, state_prefix=state_prefix)
