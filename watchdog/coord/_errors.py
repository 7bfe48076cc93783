"""What the coordination layer raises: etcd unreachable or refusing, a fenced write refused."""

# WatchdogError
#  └── CoordError                   coord: anything the etcd coordination layer raises
#       ├── EtcdUnavailable         no answer from etcd in time (down, no quorum, partitioned)
#       │    └── LeaseGone          the lease named in a request no longer exists in etcd
#       └── FenceRefused            a fenced write not committed: not the leader, or not sure

from __future__ import annotations

from ..model import WatchdogError

__all__ = ["CoordError", "EtcdUnavailable", "FenceRefused", "LeaseGone"]


class CoordError(WatchdogError):
    """Anything the etcd coordination layer raises on purpose."""


class EtcdUnavailable(CoordError):
    """etcd did not answer in time, or answered with an error: treat as unreachable."""


class LeaseGone(EtcdUnavailable):
    """The lease a request named has expired or was revoked in etcd."""


class FenceRefused(CoordError):
    """A fenced write was not committed: this instance is not (or not surely) the leader."""
