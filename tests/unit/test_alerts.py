"""The Prometheus alerting rules: valid for promtool, unit-tested, and only on exported metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.unit._exported_metrics import exported_metric_names, metric_names_in

PROM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = PROM_DIR / "alerts_test.yml"
SEVERITIES = {"critical", "warning", "info"}


def _promtool() -> str:
    path = shutil.which("promtool")
    # Never skip: `make system-deps` installs it (Debian package: prometheus).
    assert path, "promtool is not installed (Debian package: prometheus)"
    return path


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    proc = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROM_DIR,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    fires: set[str] = set()
    stays_quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else stays_quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - stays_quiet == set(), "alerts never shown staying quiet"
    assert (fires | stays_quiet) - alerts == set(), "tests for alerts that do not exist"


def test_alerts_name_the_alerts_the_brief_asks_for() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    assert {
        "RmqWatchdogDown",
        "RmqWatchdogStuck",
        "RmqWatchdogIsolated",
        "RmqMasterDown",
        "RmqFailoverSucceeded",
        "RmqFailoverFailed",
        "RmqFailoverBlocked",
        "RmqReplicationLagHigh",
        "RmqBrokerGroupWithoutSlave",
    } <= alerts


def test_every_alert_has_severity_and_annotations() -> None:
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"


def test_expressions_use_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for rule in _rules():
        used = metric_names_in(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= exported, f"{rule['alert']} uses unknown metrics {used - exported}"


def test_metric_name_extraction_sees_a_typo() -> None:
    """The check above can fail: a misspelt metric is found and is not exported."""
    used = metric_names_in('increase(rmq_watchdog_failover_total{outcome="x"}[5m]) > 0')
    assert used == {"rmq_watchdog_failover_total"}
    assert not used <= exported_metric_names()
