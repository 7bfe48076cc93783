"""Metric names the watchdog really exports, and the metric names a PromQL expression uses."""

from __future__ import annotations

import functools
import re

from prometheus_client import CollectorRegistry, generate_latest

from watchdog.model import (
    BrokerObservation,
    ClusterSnapshot,
    GroupState,
    NamesrvObservation,
    Registration,
)
from watchdog.observe import WatchdogMetrics

__all__ = ["exported_metric_names", "metric_names_in"]

# Series Prometheus adds to every target itself.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Sample names (with _total, _bucket, ...) of a real exposition after one tiny cycle."""
    master = BrokerObservation(
        "broker-a", 0, "127.0.0.1:10911", True, latency_seconds=0.002,
        role="ASYNC_MASTER", reported_broker_id=0, commitlog_max_offset=2048,
    )
    slave = BrokerObservation(
        "broker-a", 1, "127.0.0.1:10921", True, latency_seconds=0.003,
        role="SLAVE", reported_broker_id=1, commitlog_max_offset=1024,
    )
    namesrv = NamesrvObservation(
        "127.0.0.1:9876", True, latency_seconds=0.001,
        registrations=(Registration("broker-a", 0, master.addr),),
    )
    snapshot = ClusterSnapshot("C", 1.0, 1.7e9, (namesrv,), (master, slave))
    metrics = WatchdogMetrics(CollectorRegistry())
    metrics.update(snapshot, {"broker-a": GroupState.HEALTHY}, is_isolated=False)
    metrics.observe_probe("broker", 0.002)
    metrics.record_cycle(1.7e9)
    metrics.record_decision("broker-a", "no_action")
    metrics.record_failover("broker-a", "succeeded", duration_seconds=5.0, finished_at=1.7e9)
    metrics.record_switchover(
        "broker-a", "succeeded", duration_seconds=9.0, finished_at=1.7e9, write_pause_seconds=1.5
    )
    metrics.record_moved_aside("broker-a", bytes_past=4096, messages=3)
    metrics.record_fence("broker-a", "succeeded")
    metrics.set_blocked_until("broker-a", 1.7e9 + 3600)
    metrics.set_role_lowered("broker-a", True)
    disagreement = {"broker-a": {"w2": False}}
    metrics.update_coordination(
        is_leader=True, etcd_up=True, instances_seen=2, view_disagreement=disagreement
    )
    text = generate_latest(metrics.registry).decode()
    names = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert "rmq_watchdog_replication_lag_bytes" in names  # the tiny cycle filled every family
    return frozenset(names) | SCRAPE_SERIES


_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "offset", "bool", "inf", "nan"}
)


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers that are not functions,
    keywords, label names or template variables)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        word = match.group(0)
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function call or an operator keyword
        if re.fullmatch(r"\d+[smhdwy]", word) or re.match(r"^[eE]\d", word):
            continue
        names.add(word)
    return names
