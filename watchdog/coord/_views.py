"""Other instances' published views as extra vantage points for detect (pure: no I/O, no clock).

Sentinel's idea: another watchdog instance on another host is another host's view of the master.
Each other instance's per-group view becomes one `SecondaryObservation` of the master it judged,
which detect already counts (detect/_detect.py, the secondary checks):

    its view            observation               in detect
    down                is_alive=False            one more vantage point, one more down vote
    alive (answered)    is_alive=True             one more vantage point, alive evidence: no ODOWN
    neither             (none)                    nothing: it stopped answering, not yet for long
    down and alive      is_alive=True             contradictory: the failsafe reading wins

detect counts an observation only when its target is the master it judges, so a view of another
broker (an instance that has not yet seen a failover) counts for nothing. This instance's own view
is skipped (its probe is already in the snapshot), and so is a view older than `max_age_seconds`
or dated more than that in the future: a stalled instance whose lease lives on, or a host clock
that is off, must not vote.

`started_at` stays None: detect drops a check begun before the master went silent, but a view is
its instance's current judgement (republished at once when it changes), not a probe begun then.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import SecondaryObservation
from ._values import InstanceView

__all__ = ["INSTANCE_CHECK_PREFIX", "instance_observations"]

INSTANCE_CHECK_PREFIX = "instance "


def instance_observations(
    own_name: str,
    instances: Iterable[InstanceView],
    *,
    now_wall: float,
    max_age_seconds: float,
) -> tuple[SecondaryObservation, ...]:
    """The other instances' decisive views as secondary observations, in instance then group
    order (the daemon appends them to the snapshot's `secondary` before detect)."""
    found: list[SecondaryObservation] = []
    for instance in sorted(instances, key=lambda v: v.name):
        if instance.name == own_name:
            continue
        for group_name, view in sorted(instance.groups.items()):
            if view.master is None or not (view.down or view.alive):
                continue
            if abs(now_wall - view.at) > max_age_seconds:
                continue
            detail = f"{group_name}: {view.reason}" if view.reason else group_name
            found.append(
                SecondaryObservation(
                    name=f"{INSTANCE_CHECK_PREFIX}{instance.name}",
                    target_addr=view.master,
                    is_alive=view.alive,
                    detail=detail,
                )
            )
    return tuple(found)
