"""Several watchdog instances, one actor: leadership, shared views and fenced state in etcd.

The only part of the package that speaks to etcd (a transport, beside hosts/ and remoting/).
The daemon calls it once per cycle and gets a value; detect and decide stay pure:

    async with Coordinator.from_config(config) as coord:        # needs [etcd]
        while True:
            ...probe, detect...
            view = await coord.cycle({name: GroupView(master, down, alive, reason), ...})
            extra = instance_observations(config.instance_name, view.instances,
                                          now_wall=time.time(), max_age_seconds=lease_ttl)
            ...detect again with snapshot.secondary + extra; act only if view.is_leader,
            each step committed first with `await coord.fenced_write({...})`...

The etcd client: etcd3aio
-------------------------
Compared (PyPI, 2026): what a leader lease needs is asyncio, lease grant and keep-alive,
transactions comparing a key's lease and create revision, several endpoints, TLS and auth.

    client                     released  asyncio   TLS  endpoints  typed  notes
    etcd3aio 0.3               2026-03   grpc.aio  yes  several    yes    lease, txn, watch,
                                                                          auth token refresh
    aetcd 1.0                  2026-06   grpc.aio  no   one        no     insecure channel only
    etcd-client-py 0.5 (Rust)  2026-01   tokio     no   several    stubs  lease_grant returns
                                                                          nothing, puts take
                                                                          no lease
    etcd3 0.12 (python-etcd3)  2020-03   no        yes  one        no     unmaintained
    etcd3gw 2.7 (OpenStack)    2026-06   no        yes  one        no     HTTP gateway

etcd3aio is the only one that is asyncio, maintained and complete: mutual TLS, user/password
with a token, the whole KV/lease/watch API, and type hints (its protobuf messages are untyped:
`_etcd.py` turns them into our values). Its risk is youth (one maintainer, 0.x): everything it
is used for sits in `_etcd.py`, so a change of client is one module. We use its services
(KV, lease, auth) over our own gRPC channels, one per member, rather than its single
round-robin channel: that one takes IPv4 literals only, checks TLS names against one common
name, and keeps sending a share of the requests to a hung member; ours pins one member and
moves on when it fails, as etcd's Go client does. Importing it puts its generated protobuf
modules (`etcd`, `google.api`) first on sys.path.
"""

from __future__ import annotations

from ._coordinator import Coordinator
from ._errors import CoordError, EtcdUnavailable, FenceRefused, LeaseGone
from ._read import GroupRead, read_group, read_group_of
from ._requests import ForwardedRequest, ask_leader
from ._values import CoordView, GroupView, InstanceView, LeaderRecord
from ._views import INSTANCE_CHECK_PREFIX, instance_observations

__all__ = [
    "CoordError",
    "CoordView",
    "Coordinator",
    "EtcdUnavailable",
    "FenceRefused",
    "ForwardedRequest",
    "GroupRead",
    "GroupView",
    "INSTANCE_CHECK_PREFIX",
    "InstanceView",
    "LeaderRecord",
    "LeaseGone",
    "ask_leader",
    "instance_observations",
    "read_group",
    "read_group_of",
]
