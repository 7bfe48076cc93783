"""One watchdog instance among several: its lease, the leader key, its published view, and the
fenced writes only the leader can commit. The daemon calls `cycle` once per cycle.

Keys under the prefix (default /rmq-watchdog/<cluster_name>):

    <prefix>/leader                 {"instance", "started_at", "since"}; the leader's lease
    <prefix>/instances/<name>       {"instance", "started_at", "at", "groups": {...}}; its lease
    <prefix>/state/<key>            records only the leader writes (fenced), no lease
    <prefix>/requests/, replies/    operators' requests to the leader and its answers
                                    (_requests.py)

Leadership is Patroni's and etcd's election recipe: the leader key is created only where it is
absent (create_revision == 0) and attached to the instance's lease, so it vanishes when the
leader stops renewing; its create revision is the fencing token. A fenced write is a
transaction that commits only while the leader key still exists with this instance's lease and
that revision: a deposed leader's write fails in etcd itself, whatever its own clock says.

Failsafe: the lease is known to live until the send time of the last answered renewal plus the
TTL etcd granted (etcd's own expiry can only come later). `is_leader` is False from that moment
on, after any cycle whose request failed, and until a cycle confirms the key again; so a leader
cut off from etcd, or left without a quorum, stops within lease_ttl, before any other instance
can take the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import EtcdSettings, WatchdogConfig
from ..model import format_seconds
from ._errors import EtcdUnavailable, FenceRefused, LeaseGone
from ._etcd import Delete, EtcdSession, Get, KeyCreated, KeyLease, KeyValue, Op, Put
from ._requests import ForwardedRequest, decode_request, reply_key, requests_prefix
from ._values import (
    CoordView,
    GroupView,
    InstanceView,
    LeaderRecord,
    decode_instance,
    decode_leader,
    encode_instance,
    encode_leader,
)

__all__ = ["Coordinator"]


@dataclass(frozen=True)
class _Lease:
    id: int
    ttl_seconds: int


class Coordinator:
    """This instance's part in the group. Use as `async with Coordinator.from_config(c) as co:`
    and call `await co.cycle(views)` once per daemon cycle; `fenced_write` commits state only
    while leading. None of its calls raise for an unreachable etcd except `fenced_write`
    (FenceRefused) and `read_state` (EtcdUnavailable)."""

    def __init__(
        self,
        settings: EtcdSettings,
        *,
        instance_name: str,
        prefix: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self.instance_name = instance_name
        self.prefix = prefix.rstrip("/")
        self._clock = clock
        self._wall = wall
        self._ttl = int(settings.lease_ttl_seconds)
        self._session = EtcdSession(settings)
        self._started_at = wall()
        self._lease: _Lease | None = None
        self._expires_at = -math.inf  # monotonic: the lease is known to live until then
        self._holds_key = False  # the last cycle or campaign confirmed the leader key is ours
        self._token: int | None = None  # the leader key's create revision while we hold it
        self._published: dict[str, GroupView] | None = None  # as etcd has it; None: republish
        self._published_at = -math.inf  # wall clock
        # Operators' requests waiting in etcd, as the last cycle read them (take_requests).
        self._waiting: tuple[KeyValue, ...] = ()
        self._keeper: asyncio.Task[None] | None = None
        self._lease_changed = asyncio.Event()

    @classmethod
    def from_config(cls, config: WatchdogConfig) -> Coordinator:
        if config.etcd is None:
            raise ValueError("the config has no [etcd] table")
        prefix = config.etcd_prefix()
        assert prefix is not None
        return cls(config.etcd, instance_name=config.instance_name, prefix=prefix)

    # --- keys -------------------------------------------------------------------------------

    @property
    def leader_key(self) -> str:
        return f"{self.prefix}/leader"

    @property
    def instances_prefix(self) -> str:
        return f"{self.prefix}/instances/"

    @property
    def instance_key(self) -> str:
        return f"{self.instances_prefix}{self.instance_name}"

    @property
    def state_prefix(self) -> str:
        return f"{self.prefix}/state/"

    def state_key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"{key!r} is not a state key (relative, like 'epoch/broker-a')")
        return f"{self.state_prefix}{key}"

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the channel and start renewing; an unreachable etcd is not an error here (the
        cycles say so), but a TLS file that cannot be read is (OSError)."""
        await self._session.open()
        with contextlib.suppress(EtcdUnavailable):
            await self._session.authenticate()
        self._keeper = asyncio.create_task(self._keep_alive(), name="etcd-lease-keep-alive")

    async def close(self, *, resign: bool = True) -> None:
        """Stop. With resign (a clean stop) the leader key is handed back and the lease revoked,
        so another instance leads at once and this one's view vanishes; without, the lease
        simply lapses within lease_ttl, as if the process had died."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if resign:
            with contextlib.suppress(EtcdUnavailable):
                await self.resign()
            lease = self._lease
            if lease is not None:
                with contextlib.suppress(EtcdUnavailable):
                    await self._session.revoke(lease.id)
        self._lease = None
        self._holds_key = False
        await self._session.close()

    async def __aenter__(self) -> Coordinator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the lease --------------------------------------------------------------------------

    @property
    def lease_left_seconds(self) -> float:
        if self._lease is None:
            return 0.0
        return max(self._expires_at - self._clock(), 0.0)

    @property
    def is_leader(self) -> bool:
        """Leading now: the last cycle confirmed the key and the lease is known to live."""
        return self._holds_key and self._lease is not None and self._clock() < self._expires_at

    def _lease_lost(self, lease: _Lease) -> None:
        if self._lease == lease:
            self._lease = None
            self._expires_at = -math.inf
            self._holds_key = False
            self._token = None
            self._published = None  # its instance key went with it

    async def _grant(self) -> _Lease:
        sent = self._clock()
        lease_id, ttl = await self._session.grant(self._ttl)
        lease = _Lease(lease_id, ttl)
        self._lease = lease
        self._expires_at = sent + ttl
        self._published = None
        self._lease_changed.set()
        return lease

    async def _keep_alive(self) -> None:
        """Renew the lease every TTL/3 (sooner again after a failure), in the background so a
        long await in the daemon's cycle does not let it lapse."""
        while True:
            lease = self._lease
            if lease is None:
                self._lease_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._ttl / 3):
                        await self._lease_changed.wait()
                continue
            sent = self._clock()
            try:
                ttl = await self._session.keep_alive(lease.id)
            except EtcdUnavailable:
                await asyncio.sleep(min(self._ttl / 6, 1.0))
                continue
            if ttl <= 0:
                self._lease_lost(lease)
                continue
            if self._lease == lease:
                self._expires_at = max(self._expires_at, sent + ttl)
            await asyncio.sleep(max(sent + ttl / 3 - self._clock(), 0.0))

    # --- the cycle --------------------------------------------------------------------------

    async def cycle(self, groups: Mapping[str, GroupView]) -> CoordView:
        """Campaign if nobody leads, confirm the lead if we have it, publish this instance's
        views (when they changed, or every lease_ttl / 2), read every instance's. Never raises
        for etcd: an unreachable etcd is a view with is_reachable and is_leader False."""
        try:
            return await self._cycle(groups)
        except LeaseGone as exc:
            # The lease expired in etcd (a long cut): take a new one and try once more.
            if self._lease is not None:
                self._lease_lost(self._lease)
            try:
                return await self._cycle(groups)
            except EtcdUnavailable as again:
                return self._unreachable(str(again) or str(exc))
        except EtcdUnavailable as exc:
            return self._unreachable(str(exc))

    def _unreachable(self, error: str) -> CoordView:
        self._holds_key = False
        left = self.lease_left_seconds
        return CoordView(
            instance=self.instance_name,
            is_reachable=False,
            is_leader=False,
            leader=None,
            instances=(),
            lease_left_seconds=left,
            fencing_token=None,
            reason=f"not leader: etcd unreachable: {error}",
        )

    async def _cycle(self, groups: Mapping[str, GroupView]) -> CoordView:
        lease = self._lease or await self._grant()
        now_wall = self._wall()
        can_campaign = self._clock() < self._expires_at
        stamped = {name: replace(g, at=now_wall) for name, g in groups.items()}
        publish = self._due(stamped, now_wall)
        common: list[Op] = []
        if publish:
            view = InstanceView(self.instance_name, self._started_at, now_wall, stamped)
            common.append(Put(self.instance_key, encode_instance(view), lease=lease.id))
        common += [
            Get(self.instances_prefix, prefix=True),
            Get(self.leader_key),
            Get(requests_prefix(self.prefix), prefix=True),
        ]
        if can_campaign:
            record = LeaderRecord(self.instance_name, self._started_at, now_wall)
            take = Put(self.leader_key, encode_leader(record), lease=lease.id)
            result = await self._session.txn(
                [KeyCreated(self.leader_key, 0)], [take, *common], common
            )
        else:
            result = await self._session.txn([], common)
        if publish:
            self._published = stamped
            self._published_at = now_wall
        instances_kvs, leader_kvs, self._waiting = result.reads[-3:]
        leader_kv = leader_kvs[0] if leader_kvs else None
        self._confirm(lease, leader_kv)
        return self._view(result.revision, lease, leader_kv, instances_kvs)

    def _due(self, groups: Mapping[str, GroupView], now_wall: float) -> bool:
        before = self._published
        if before is None or set(before) != set(groups):
            return True
        if any(not g.same_judgement(before.get(name)) for name, g in groups.items()):
            return True
        # Republished now and then so readers can tell a live instance from a stalled one.
        return now_wall - self._published_at >= self._ttl / 2

    def _confirm(self, lease: _Lease, leader_kv: KeyValue | None) -> None:
        ours = leader_kv is not None and leader_kv.lease == lease.id and self._lease == lease
        if ours and leader_kv is not None:
            self._holds_key = True
            self._token = leader_kv.create_revision
        else:
            self._holds_key = False
            self._token = None

    def _view(
        self,
        revision: int,
        lease: _Lease,
        leader_kv: KeyValue | None,
        instances_kvs: tuple[KeyValue, ...],
    ) -> CoordView:
        instances: list[InstanceView] = []
        for kv in instances_kvs:
            try:
                instances.append(decode_instance(kv.value))
            except ValueError:
                continue  # not ours to read (a newer format, or garbage): not a vantage point
        leader: LeaderRecord | None = None
        if leader_kv is not None:
            try:
                leader = decode_leader(leader_kv.value)
            except ValueError:
                leader = LeaderRecord(f"<unreadable {self.leader_key}>", 0.0, 0.0)
        is_leader = self.is_leader
        left = self.lease_left_seconds
        seen = f"{len(instances)} instance{'s' if len(instances) != 1 else ''} seen"
        if is_leader:
            reason = (
                f"leader: {self.instance_name} holds the leader key "
                f"(lease {format_seconds(left)} left), {seen}"
            )
        elif self._holds_key:
            reason = f"not leader: lease not renewed for {format_seconds(self._ttl)}, {seen}"
        elif leader is not None and leader.instance == self.instance_name:
            reason = (
                f"not leader: the leader key names {self.instance_name} but another lease holds "
                f"it (an earlier run of this instance, or a second instance with this name), {seen}"
            )
        elif leader is not None:
            reason = f"not leader: {leader.instance} leads, {seen}"
        else:
            reason = f"not leader: nobody leads (my lease is not known to live), {seen}"
        return CoordView(
            instance=self.instance_name,
            is_reachable=True,
            is_leader=is_leader,
            leader=leader,
            instances=tuple(sorted(instances, key=lambda v: v.name)),
            lease_left_seconds=left,
            fencing_token=self._token if is_leader else None,
            reason=reason,
            revision=revision,
        )

    # --- leadership -------------------------------------------------------------------------

    async def resign(self) -> None:
        """Hand the leader key back now (only if it is still ours); keep the lease and the
        published view. The next `cycle` campaigns again like any instance's: a clean stop is
        `close()`, which also revokes the lease. Raises EtcdUnavailable."""
        lease = self._lease
        self._holds_key = False
        self._token = None
        if lease is None:
            return
        await self._session.txn([KeyLease(self.leader_key, lease.id)], [Delete(self.leader_key)])

    async def fenced_write(self, puts: Mapping[str, bytes], deletes: tuple[str, ...] = ()) -> int:
        """Commit state records (keys relative to <prefix>/state/) in one transaction that holds
        only while this instance's lease still holds the leader key it took; the revision
        committed. FenceRefused when not leading, not sure (etcd unreachable), or deposed.

        A refusal for a lost reply (etcd unreachable mid-request) does not prove the write was
        not committed, as with any commit whose answer is lost: do not act on it, and read the
        state back (`read_state`) before going on, as the next leader does."""
        lease, token = self._lease, self._token
        if not self.is_leader or lease is None or token is None:
            raise FenceRefused(f"{self.instance_name} is not the leader")
        ops: list[Op] = [Put(self.state_key(k), v) for k, v in puts.items()]
        ops += [Delete(self.state_key(k)) for k in deletes]
        try:
            result = await self._session.txn(
                [KeyLease(self.leader_key, lease.id), KeyCreated(self.leader_key, token)],
                ops,
                [Get(self.leader_key)],
            )
        except EtcdUnavailable as exc:
            raise FenceRefused(f"{self.instance_name} cannot reach etcd: {exc}") from None
        if not result.succeeded:
            self._holds_key = False
            self._token = None
            holder = "nobody"
            if result.reads and result.reads[0]:
                try:
                    holder = decode_leader(result.reads[0][0].value).instance
                except ValueError:
                    holder = "an unreadable record"
            raise FenceRefused(
                f"{self.instance_name} no longer holds the leader key (now: {holder})"
            )
        return result.revision

    async def read_state(self, prefix: str = "") -> dict[str, bytes]:
        """The state records under <prefix>/state/<prefix> (a linearizable read), keyed
        relative to <prefix>/state/. Raises EtcdUnavailable."""
        full = self.state_prefix + prefix
        kvs, _ = await self._session.get(full, prefix=True)
        return {kv.key[len(self.state_prefix) :]: kv.value for kv in kvs}

    # --- operators' requests through etcd (_requests.py) ------------------------------------

    async def take_requests(self) -> list[ForwardedRequest]:
        """The requests the last cycle read (in its one transaction, no extra read), each taken
        in a fenced transaction that deletes it and writes its first answer (this leader and
        its fencing token); none when not leading. A request gone since (withdrawn, or its
        asking command with its lease) is left alone. Raises EtcdUnavailable."""
        lease, token = self._lease, self._token
        waiting, self._waiting = self._waiting, ()
        if not self.is_leader or lease is None or token is None:
            return []
        taken: list[ForwardedRequest] = []
        for kv in waiting:
            request = decode_request(kv, self.prefix)
            first = {"event": "taken", "leader": self.instance_name, "term": token}
            try:
                result = await self._session.txn(
                    [
                        KeyLease(self.leader_key, lease.id),
                        KeyCreated(self.leader_key, token),
                        KeyLease(kv.key, kv.lease),
                    ],
                    [
                        Delete(kv.key),
                        Put(
                            reply_key(self.prefix, request.request_id, 0),
                            json.dumps(first).encode(),
                            lease=kv.lease,
                        ),
                    ],
                )
            except LeaseGone:
                continue
            if result.succeeded:
                taken.append(request)
        return taken

    async def reply(self, request: ForwardedRequest, seq: int, message: Mapping[str, Any]) -> None:
        """Answer number `seq` (from 1) to a taken request, under the asking command's lease.
        Raises LeaseGone when that command has gone, EtcdUnavailable."""
        key = reply_key(self.prefix, request.request_id, seq)
        value = json.dumps(message, default=str).encode()
        await self._session.txn([], [Put(key, value, lease=request.lease)])
