"""Prometheus metrics: state mirrored from the last snapshot, and the watchdog's own work."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .. import __version__
from ..model import BrokerObservation, ClusterSnapshot, GroupState

__all__ = [
    "DecisionKind",
    "ProbeTarget",
    "WatchdogMetrics",
    "MetricsServer",
    "parse_listen",
]

# The kinds of decide's Decision, as the decisions_total label has them.
DecisionKind = Literal["no_action", "promote", "fence"]
ProbeTarget = Literal["namesrv", "broker"]

_DECISIONS: tuple[str, ...] = get_args(DecisionKind)
_PROBE_TARGETS: tuple[str, ...] = get_args(ProbeTarget)

# Probes time out below one second (probe.timeout defaults to 0.8 s), so resolution is spent there.
_PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
# A failover stops, promotes, re-registers and verifies: seconds to a few minutes.
_FAILOVER_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A switchover's write pause: ~1 s in place, a few seconds by restart (bench/results/
# switchover.md), up to its catch-up bound (30 s by default) when it is refused.
_PAUSE_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

_BROKER_LABELS = ("broker_name", "broker_id", "addr")


@dataclass(frozen=True)
class _Mirrored:
    """What the last cycle saw; replaced as a whole so a scrape never sees half an update."""

    snapshot: ClusterSnapshot
    group_states: Mapping[str, GroupState] = field(default_factory=dict)
    is_isolated: bool = False


@dataclass(frozen=True)
class _Coordination:
    """This instance among several (or alone): replaced as a whole, like `_Mirrored`."""

    is_leader: bool
    etcd_up: bool | None = None  # None: no [etcd], one instance alone
    instances_seen: int | None = None
    # Computed by the leader only: group -> other instance -> its view differs from the leader's
    view_disagreement: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)


class _CoordinationCollector:
    """The coordination families, fresh on every scrape from the last `_Coordination`."""

    def __init__(self, owner: WatchdogMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._owner.coordination)

    def _families(self, c: _Coordination | None) -> list[Metric]:
        leader = GaugeMetricFamily(
            "rmq_watchdog_leader",
            "1 on the instance that acts (the etcd leader, once it has taken over the state; "
            "a watchdog without [etcd] is always its own), 0 on every other instance.",
        )
        etcd_up = GaugeMetricFamily(
            "rmq_watchdog_etcd_up",
            "1 if this instance's last cycle reached etcd (a quorum answered), else 0; absent "
            "without [etcd]. While 0 this instance starts no failover.",
        )
        seen = GaugeMetricFamily(
            "rmq_watchdog_instances_seen",
            "Watchdog instances (this one included) whose published view this instance read "
            "from etcd in its last cycle; absent without [etcd], 0 while etcd is unreachable.",
        )
        disagreement = GaugeMetricFamily(
            "rmq_watchdog_view_disagreement",
            "On the leader only: 1 when the instance `peer` publishes another view of the "
            "group's master (address, down, alive) than the leader's own, 0 when the same.",
            labels=["broker_name", "peer"],
        )
        families: list[Metric] = [leader, etcd_up, seen, disagreement]
        if c is None:
            return families
        leader.add_metric([], 1.0 if c.is_leader else 0.0)
        if c.etcd_up is not None:
            etcd_up.add_metric([], 1.0 if c.etcd_up else 0.0)
        if c.instances_seen is not None:
            seen.add_metric([], float(c.instances_seen))
        for name, peers in sorted(c.view_disagreement.items()):
            for peer, differs in sorted(peers.items()):
                disagreement.add_metric([name, peer], 1.0 if differs else 0.0)
        return families


def _broker_labels(b: BrokerObservation) -> list[str]:
    return [b.broker_name, str(b.broker_id), b.addr]


def _replication_lags(snapshot: ClusterSnapshot) -> Iterator[tuple[BrokerObservation, int]]:
    """(slave, bytes behind its master) by the snapshot's one lag rule (none in a split brain)."""
    for b in snapshot.brokers:
        lag = snapshot.replication_lag(b)
        if lag is not None:
            yield b, lag


class _SnapshotCollector:
    """Builds the mirrored-state families fresh on every scrape from the last `_Mirrored`."""

    def __init__(self, owner: WatchdogMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        # Lets the registry detect a name clash at registration, before any snapshot exists.
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._owner.mirrored)

    def _families(self, m: _Mirrored | None) -> list[Metric]:
        broker_up = GaugeMetricFamily(
            "rmq_watchdog_broker_up",
            "1 if the broker answered the watchdog's runtime-info probe in the last cycle, "
            "0 if it did not (refused, timed out, or answered garbage). TCP alone is not up.",
            labels=_BROKER_LABELS,
        )
        namesrv_up = GaugeMetricFamily(
            "rmq_watchdog_namesrv_up",
            "1 if the nameserver answered the watchdog's route query in the last cycle, else 0.",
            labels=["addr"],
        )
        offset = GaugeMetricFamily(
            "rmq_watchdog_commitlog_max_offset_bytes",
            "The broker's commit log max physical offset (bytes written) as it reported it in "
            "the last cycle; absent while the broker does not answer.",
            labels=_BROKER_LABELS,
        )
        lag = GaugeMetricFamily(
            "rmq_watchdog_replication_lag_bytes",
            "Per slave: the group master's commit log max offset minus this slave's, both read "
            "in the last cycle. Absent unless both are known and the group has exactly one "
            "broker in a master role. Negative means the slave reported more than the master.",
            labels=_BROKER_LABELS,
        )
        role = GaugeMetricFamily(
            "rmq_watchdog_broker_role",
            "Always 1; the role label is the brokerRole the broker reported in the last cycle "
            "(ASYNC_MASTER, SYNC_MASTER or SLAVE). Absent while the broker does not answer.",
            labels=[*_BROKER_LABELS, "role"],
        )
        latency = GaugeMetricFamily(
            "rmq_watchdog_probe_latency_seconds",
            "Round-trip time of the last successful probe of this nameserver or broker address.",
            labels=["addr"],
        )
        group_state = GaugeMetricFamily(
            "rmq_watchdog_group_state",
            "1 for the broker group's current state as the watchdog judged it in the last cycle, "
            "0 for every other state (HEALTHY, DEGRADED, MASTER_SDOWN, MASTER_ODOWN, "
            "AWAITING_FENCE, FAILOVER_RUNNING, FAILOVER_BLOCKED, ISOLATED).",
            labels=["broker_name", "state"],
        )
        isolated = GaugeMetricFamily(
            "rmq_watchdog_isolated",
            "1 if in the last cycle the watchdog reached neither a nameserver majority nor any "
            "slave, so it trusts none of its own observations and will not fail over; else 0.",
        )
        families: list[Metric] = [
            broker_up,
            namesrv_up,
            offset,
            lag,
            role,
            latency,
            group_state,
            isolated,
        ]
        if m is None:
            return families

        snap = m.snapshot
        for n in snap.nameservers:
            namesrv_up.add_metric([n.addr], 1.0 if n.is_up else 0.0)
            if n.is_up and n.latency_seconds is not None:
                latency.add_metric([n.addr], n.latency_seconds)
        for b in snap.brokers:
            labels = _broker_labels(b)
            broker_up.add_metric(labels, 1.0 if b.is_up else 0.0)
            if b.commitlog_max_offset is not None:
                offset.add_metric(labels, float(b.commitlog_max_offset))
            if b.role is not None:
                role.add_metric([*labels, b.role], 1.0)
            if b.is_up and b.latency_seconds is not None:
                latency.add_metric([b.addr], b.latency_seconds)
        for slave, lag_bytes in _replication_lags(snap):
            lag.add_metric(_broker_labels(slave), float(lag_bytes))
        for name, current in m.group_states.items():
            for state in GroupState:
                group_state.add_metric([name, state.value], 1.0 if state is current else 0.0)
        isolated.add_metric([], 1.0 if m.is_isolated else 0.0)
        return families


class WatchdogMetrics:
    """All of the watchdog's metrics, registered in one `CollectorRegistry`.

    Mirrored cluster state (up, role, offsets, lag, group states, isolation) is read from the
    last `update()` on each scrape; the watchdog's own work (probes, cycles, decisions,
    failovers, switchovers) is counted as it happens through the `observe_*`/`record_*` methods:

        metrics = WatchdogMetrics(CollectorRegistry())
        metrics.observe_probe("broker", 0.004)
        metrics.update(snapshot, {"broker-a": GroupState.HEALTHY}, is_isolated=False)
        metrics.record_decision("broker-a", "no_action")
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        version: str = __version__,
        include_process_metrics: bool = True,
    ) -> None:
        self.registry = registry
        self._mirrored: _Mirrored | None = None
        self._coordination: _Coordination | None = None

        self.build_info = Info(
            "rmq_watchdog_build",
            "Always 1; the version label is the running rmq-watchdog version.",
            registry=registry,
        )
        self.build_info.info({"version": version})
        self.probe_duration_seconds = Histogram(
            "rmq_watchdog_probe_duration_seconds",
            "Time one probe took, successful or not, by what was probed (namesrv or broker). "
            "Failed probes end at their timeout, so a tail at probe.timeout means failures.",
            ["target"],
            buckets=_PROBE_BUCKETS,
            registry=registry,
        )
        self.cycles_total = Counter(
            "rmq_watchdog_cycles_total",
            "Probe-detect-decide cycles completed.",
            registry=registry,
        )
        self.cycle_overruns_total = Counter(
            "rmq_watchdog_cycle_overruns_total",
            "Cycles that took longer than probe.interval, so the next one started late.",
            registry=registry,
        )
        self.last_cycle_timestamp_seconds = Gauge(
            "rmq_watchdog_last_cycle_timestamp_seconds",
            "Unix time the last cycle completed; if it stops advancing the loop is stuck and "
            "every mirrored-state metric is stale.",
            registry=registry,
        )
        self.decisions_total = Counter(
            "rmq_watchdog_decisions_total",
            "Decisions taken per broker group, one per group per cycle: no_action, promote "
            "(start a failover to a slave) or fence (stop a broker that must not serve).",
            ["broker_name", "decision"],
            registry=registry,
        )
        self.failovers_total = Counter(
            "rmq_watchdog_failovers_total",
            "Failovers that ended, per broker group, by outcome as the failover reported it; "
            "planned switchovers are counted in rmq_watchdog_switchovers_total instead.",
            ["broker_name", "outcome"],
            registry=registry,
        )
        self.failover_blocked_until_timestamp_seconds = Gauge(
            "rmq_watchdog_failover_blocked_until_timestamp_seconds",
            "Unix time until which automatic failovers of the broker group are blocked after "
            "one (anti-flap; `rmq-watchdog ack` lifts it); 0 when not blocked.",
            ["broker_name"],
            registry=registry,
        )
        self.master_role_lowered = Gauge(
            "rmq_watchdog_master_role_lowered",
            "1 while a failover's lowering of the group's master role (SYNC_MASTER promoted as "
            "ASYNC_MASTER, no slave left) is not undone; 0 otherwise.",
            ["broker_name"],
            registry=registry,
        )
        self.fences_total = Counter(
            "rmq_watchdog_fences_total",
            "Fences of a second master (a returning old master, a split brain) that ended, per "
            "broker group, by outcome; promotions are counted in rmq_watchdog_failovers_total "
            "and rmq_watchdog_switchovers_total.",
            ["broker_name", "outcome"],
            registry=registry,
        )
        self.inplace_promotions_total = Counter(
            "rmq_watchdog_inplace_promotions_total",
            "In-place promotions tried (promotion = inplace, a plug-in on the candidate), per "
            "broker group, by result: done (promoted without a restart), refused (the plug-in "
            "said no: the restart path ran instead) or fallback (the request or the watchdog's "
            "own checks failed: the restart path ran instead).",
            ["broker_name", "result"],
            registry=registry,
        )
        self.failover_duration_seconds = Histogram(
            "rmq_watchdog_failover_duration_seconds",
            "Wall time from the start of a failover to its end, whatever the outcome.",
            buckets=_FAILOVER_BUCKETS,
            registry=registry,
        )
        self.last_failover_timestamp_seconds = Gauge(
            "rmq_watchdog_last_failover_timestamp_seconds",
            "Unix time the last failover of this broker group ended.",
            ["broker_name"],
            registry=registry,
        )
        self.switchovers_total = Counter(
            "rmq_watchdog_switchovers_total",
            "Planned switchovers (`rmq-watchdog switchover`: a live master's role moved to a "
            "slave) that ended, per broker group, by outcome: succeeded; refused (nothing "
            "changed in the end, the old master takes writes again); rolled_back; failed; "
            "vetoed. Not counted in rmq_watchdog_failovers_total.",
            ["broker_name", "outcome"],
            registry=registry,
        )
        self.switchover_duration_seconds = Histogram(
            "rmq_watchdog_switchover_duration_seconds",
            "Wall time from the start of a planned switchover to its end, whatever the outcome "
            "(the catch-up wait and the old master's rejoin included).",
            buckets=_FAILOVER_BUCKETS,
            registry=registry,
        )
        self.switchover_write_pause_seconds = Histogram(
            "rmq_watchdog_switchover_write_pause_seconds",
            "Per switchover that stopped the old master's writes: from the write stop until the "
            "new master was listed as id 0 on the nameservers, or the old master took writes "
            "again (refused, rolled back).",
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        self.last_switchover_timestamp_seconds = Gauge(
            "rmq_watchdog_last_switchover_timestamp_seconds",
            "Unix time the last planned switchover of this broker group ended.",
            ["broker_name"],
            registry=registry,
        )
        self.moved_aside_bytes_total = Counter(
            "rmq_watchdog_moved_aside_bytes_total",
            "Bytes of commit log past the promotion point that a deposed master held when its "
            "store was moved aside: acknowledged writes the group no longer serves.",
            ["broker_name"],
            registry=registry,
        )
        self.moved_aside_messages_total = Counter(
            "rmq_watchdog_moved_aside_messages_total",
            "Messages past the promotion point in stores moved aside (counted from the log).",
            ["broker_name"],
            registry=registry,
        )
        # Pre-created so rate() and histogram_quantile() work before the first probe, and kept:
        # labels() costs a lock and a tuple per call, thousands of times a cycle.
        self._probe_children = {
            target: self.probe_duration_seconds.labels(target=target) for target in _PROBE_TARGETS
        }
        self._decision_children: dict[tuple[str, str], Counter] = {}
        registry.register(_SnapshotCollector(self))
        registry.register(_CoordinationCollector(self))
        if include_process_metrics:
            # CPU, memory and open fds of the daemon itself (process_* from /proc).
            ProcessCollector(registry=registry)

    @property
    def mirrored(self) -> _Mirrored | None:
        return self._mirrored

    @property
    def coordination(self) -> _Coordination | None:
        return self._coordination

    def update_coordination(
        self,
        *,
        is_leader: bool,
        etcd_up: bool | None = None,
        instances_seen: int | None = None,
        view_disagreement: Mapping[str, Mapping[str, bool]] | None = None,
    ) -> None:
        """Whether this instance acts, reaches etcd, sees how many instances, and (leader
        only) which other instance's view of which group differs; etcd_up and instances_seen
        None: no [etcd] (their series are absent)."""
        self._coordination = _Coordination(
            bool(is_leader),
            etcd_up,
            instances_seen,
            MappingProxyType(
                {k: MappingProxyType(dict(v)) for k, v in (view_disagreement or {}).items()}
            ),
        )

    def update(
        self,
        snapshot: ClusterSnapshot,
        group_states: Mapping[str, GroupState],
        is_isolated: bool,
    ) -> None:
        """Replace the mirrored state with what this cycle saw; the next scrape shows it."""
        states = MappingProxyType(dict(group_states))
        for name, state in states.items():
            if not isinstance(state, GroupState):
                raise TypeError(f"group {name!r}: state must be a GroupState, not {state!r}")
        for name in states:
            # Zero-valued series from the first cycle, so increase() sees the first decision.
            for decision in _DECISIONS:
                self._decision_child(name, decision)
        # One reference assignment: a scrape in the server thread sees the old or the new state.
        self._mirrored = _Mirrored(snapshot, states, bool(is_isolated))

    def observe_probe(self, target: ProbeTarget, duration_seconds: float) -> None:
        child = self._probe_children.get(target)
        if child is None:
            raise ValueError(f"probe target must be one of {_PROBE_TARGETS}, not {target!r}")
        child.observe(duration_seconds)

    def record_cycle(self, finished_at: float, is_overrun: bool = False) -> None:
        """Count a completed cycle; `finished_at` is Unix time (time.time())."""
        self.cycles_total.inc()
        if is_overrun:
            self.cycle_overruns_total.inc()
        self.last_cycle_timestamp_seconds.set(finished_at)

    def record_decision(self, broker_name: str, decision: DecisionKind) -> None:
        if decision not in _DECISIONS:
            raise ValueError(f"decision must be one of {_DECISIONS}, not {decision!r}")
        self._decision_child(broker_name, decision).inc()

    def _decision_child(self, broker_name: str, decision: str) -> Counter:
        key = (broker_name, decision)
        child = self._decision_children.get(key)
        if child is None:
            child = self.decisions_total.labels(broker_name=broker_name, decision=decision)
            self._decision_children[key] = child
        return child

    def record_failover(
        self, broker_name: str, outcome: str, duration_seconds: float, finished_at: float
    ) -> None:
        """Count a finished failover; `outcome` is a short fixed word such as "succeeded"."""
        if not outcome:
            raise ValueError("failover outcome must be a non-empty word")
        self.failovers_total.labels(broker_name=broker_name, outcome=outcome).inc()
        self.failover_duration_seconds.observe(duration_seconds)
        self.last_failover_timestamp_seconds.labels(broker_name=broker_name).set(finished_at)

    def record_switchover(
        self,
        broker_name: str,
        outcome: str,
        duration_seconds: float,
        finished_at: float,
        write_pause_seconds: float | None = None,
    ) -> None:
        """Count a finished planned switchover (not a failover); `write_pause_seconds` None:
        the writes were never stopped (refused before), or the journal cannot say."""
        if not outcome:
            raise ValueError("switchover outcome must be a non-empty word")
        self.switchovers_total.labels(broker_name=broker_name, outcome=outcome).inc()
        self.switchover_duration_seconds.observe(duration_seconds)
        if write_pause_seconds is not None:
            self.switchover_write_pause_seconds.observe(write_pause_seconds)
        self.last_switchover_timestamp_seconds.labels(broker_name=broker_name).set(finished_at)

    def set_blocked_until(self, broker_name: str, until: float | None) -> None:
        self.failover_blocked_until_timestamp_seconds.labels(broker_name=broker_name).set(
            until or 0.0
        )

    def set_role_lowered(self, broker_name: str, is_lowered: bool) -> None:
        self.master_role_lowered.labels(broker_name=broker_name).set(1 if is_lowered else 0)

    def record_inplace_promotion(self, broker_name: str, result: str) -> None:
        """Count an in-place promotion tried: done, refused or fallback."""
        if result not in ("done", "refused", "fallback"):
            raise ValueError(f"in-place promotion result must be done|refused|fallback: {result!r}")
        self.inplace_promotions_total.labels(broker_name=broker_name, result=result).inc()

    def record_fence(self, broker_name: str, outcome: str) -> None:
        """Count a finished fence of a second master (not a failover)."""
        if not outcome:
            raise ValueError("fence outcome must be a non-empty word")
        self.fences_total.labels(broker_name=broker_name, outcome=outcome).inc()

    def record_moved_aside(
        self, broker_name: str, bytes_past: int | None, messages: int | None
    ) -> None:
        """Count a store moved aside with what it held past the promotion point."""
        if bytes_past:
            self.moved_aside_bytes_total.labels(broker_name=broker_name).inc(bytes_past)
        if messages:
            self.moved_aside_messages_total.labels(broker_name=broker_name).inc(messages)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port") into host and port; port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics listen address {listen!r} is not host:port")
    return host, int(port)


class MetricsServer:
    """Serves a registry at http://host:port/metrics from a background thread.

    The HTTP server runs in its own daemon thread (prometheus_client's WSGI server), so a slow
    scrape never delays the asyncio loop; `stop()` shuts it down and closes the listening socket.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.host: str | None = None
        self.port: int | None = None

    @property
    def is_running(self) -> bool:
        return self._server is not None

    def start(self, listen: str) -> None:
        """Bind `listen` ("host:port") and start serving; OSError if the port is taken."""
        if self._server is not None:
            raise RuntimeError(f"metrics server already listening on {self.host}:{self.port}")
        host, port = parse_listen(listen)
        server, thread = start_http_server(port, addr=host, registry=self._registry)
        self._server, self._thread = server, thread
        self.host = host
        self.port = int(server.server_address[1])

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice or before start()."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
