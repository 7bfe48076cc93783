"""The Grafana dashboard: a valid model whose every query parses and names exported metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.unit._exported_metrics import exported_metric_names, metric_names_in

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "rmq-watchdog.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# What Grafana substitutes before sending a query, for checking the queries with promtool.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "6h",
    "$broker_name": "broker-a",
    "$instance": "w1:9108",
}


def _model() -> dict[str, Any]:
    model = json.loads(DASHBOARD.read_text())
    assert isinstance(model, dict)
    return model


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs(model: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(model["panels"])
        for target in panel.get("targets", [])
    ]


def test_dashboard_model_basics() -> None:
    model = _model()
    assert 36 <= model["schemaVersion"] <= 41
    assert model["uid"] == "rmq-watchdog" and model["title"]
    assert model["id"] is None  # importable into any Grafana without clashing with a local id
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["broker_name"]["type"] == "query"
    assert variables["broker_name"]["datasource"] == DATASOURCE
    assert "broker_name" in variables["broker_name"]["definition"]


def test_every_panel_has_a_title_unique_id_and_a_place() -> None:
    panels = list(_panels(_model()["panels"]))
    assert len(panels) >= 10
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]


def test_panels_with_queries_use_the_datasource_variable() -> None:
    for panel in _panels(_model()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_the_asked_for_panels_exist() -> None:
    exprs = " ".join(expr for _, expr in _exprs(_model()))
    for metric in (
        "rmq_watchdog_group_state",
        "rmq_watchdog_broker_role",
        "rmq_watchdog_broker_up",
        "rmq_watchdog_replication_lag_bytes",
        "rmq_watchdog_commitlog_max_offset_bytes",
        "rmq_watchdog_probe_duration_seconds_bucket",
        "rmq_watchdog_decisions_total",
        "rmq_watchdog_failovers_total",
        "rmq_watchdog_isolated",
        "rmq_watchdog_failover_blocked_until_timestamp_seconds",
        "rmq_watchdog_master_role_lowered",
        # planned switchovers, apart from failovers
        "rmq_watchdog_switchovers_total",
        "rmq_watchdog_last_switchover_timestamp_seconds",
        "rmq_watchdog_switchover_write_pause_seconds_bucket",
        "rmq_watchdog_switchover_duration_seconds_sum",
        # several instances on etcd
        "rmq_watchdog_leader",
        "rmq_watchdog_etcd_up",
        "rmq_watchdog_instances_seen",
        "rmq_watchdog_view_disagreement",
    ):
        assert metric in exprs, f"no panel shows {metric}"
    assert "histogram_quantile(" in exprs


def test_every_expr_names_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for title, expr in _exprs(_model()):
        used = metric_names_in(expr)
        assert used, f"{title}: no metric in {expr!r}"
        assert used <= exported, f"{title}: {used - exported} are not exported"


def test_broker_group_queries_honour_the_broker_name_variable() -> None:
    """A query over a metric that has a broker_name label filters by $broker_name."""
    per_group = re.compile(
        r"rmq_watchdog_(group_state|broker_role|broker_up|replication_lag_bytes|"
        r"commitlog_max_offset_bytes|decisions_total|failovers_total|last_failover_timestamp|"
        r"switchovers_total|last_switchover_timestamp|view_disagreement)"
    )
    for title, expr in _exprs(_model()):
        if per_group.search(expr):
            assert 'broker_name=~"$broker_name"' in expr, title


def test_every_expr_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as a recording rule's expr."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package: prometheus)"
    rules = []
    for i, (title, expr) in enumerate(_exprs(_model())):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: unknown variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    # JSON is YAML, so promtool reads this file without a YAML writer here.
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
