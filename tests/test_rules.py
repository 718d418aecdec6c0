"""Static checks of the alert rules and the dashboards' queries.

promtool validates and unit-tests the rules (prometheus/alerts_test.yml); the checks here
make sure every alert is documented and tested both ways, and that rules and dashboards
only use metrics the exporter exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.rules import (
    CONTRACT,
    HISTOGRAMS,
    METRIC_TOKEN,
    dashboard_queries,
    documented_metrics,
)

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "prometheus" / "alerts_test.yml"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
METRICS_DOC = REPO / "docs" / "metrics.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's 'prometheus' package (.ci/run does)",
)

# Series Prometheus itself makes: per target, and for the alerts it evaluates.
PROMETHEUS_SERIES = {"up", "ALERTS"}
# Alerts about a whole availability zone rather than one server.
ZONE_ALERTS = {"CphAvailabilityZoneDegraded"}
SEVERITIES = {"critical", "warning", "info"}
IDENTITY = ("server_name", "server_id", "availability_zone")


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in load_rules() if "alert" in r}


def allowed_metrics() -> set[str]:
    names = documented_metrics() or CONTRACT
    names = names | {f"{h}_{s}" for h in HISTOGRAMS & names for s in ("bucket", "sum", "count")}
    return names | PROMETHEUS_SERIES


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = run(str(PROMTOOL), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = run(str(PROMTOOL), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_summary_and_description() -> None:
    rules = alerts()
    assert rules, "no alerts found"
    for name, rule in rules.items():
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert annotations.get(key, "").strip(), f"{name} lacks a {key}"


def test_per_server_alerts_name_the_server() -> None:
    per_server = {
        n: r for n, r in alerts().items() if "cph_server_" in r["expr"] and n not in ZONE_ALERTS
    }
    assert len(per_server) >= 5
    for name, rule in per_server.items():
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        for label in IDENTITY:
            assert f"$labels.{label}" in text, f"{name} does not name the {label}"
    for name in ZONE_ALERTS:
        text = alerts()[name]["annotations"]["summary"]
        assert "$labels.availability_zone" in text, name


def test_the_server_and_exporter_alerts_exist() -> None:
    rules = alerts()
    expected = {
        "CphServerAbnormal": ("critical", "5m"),
        "CphServerFrozen": ("warning", "5m"),
        "CphServerStuckCreating": (None, "1h"),
    }
    for name, (severity, duration) in expected.items():
        assert rules[name]["for"] == duration, name
        if severity:
            assert rules[name]["labels"]["severity"] == severity, name
    for name in (
        "CphServerStopFailed",
        "CphServerUnknownStatus",
        "CphApiDown",
        "CphExporterDataStale",
        "CphDetailFetchFailing",
        "CphApiThrottled",
    ):
        assert name in rules
    assert rules["CphApiDown"]["expr"].strip() == "cph_up == 0"


def test_the_phone_alerts_exist() -> None:
    """Abnormal, failed and stuck phones per server, and a failing phone listing."""
    rules = alerts()
    expected = {
        "CphServerPhonesAbnormal": ("10m", {"abnormal"}),
        "CphServerPhonesFailed": (
            "10m",
            {"reset_failed", "restart_failed", "create_failed", "stop_failed"},
        ),
        "CphServerPhonesStuck": ("30m", {"creating", "resetting", "restarting", "stopping"}),
    }
    for name, (duration, states) in expected.items():
        rule = rules[name]
        assert rule["for"] == duration and rule["labels"]["severity"] == "warning", name
        assert "cph_server_phones" in rule["expr"], name
        (matcher,) = re.findall(r'state=~?"([^"]+)"', rule["expr"])
        assert set(matcher.split("|")) == states, name
        # one alert per server and state: the state label is kept
        assert "sum" not in rule["expr"] and " by " not in rule["expr"], name
    # a failed scrape (stale series) must not restart the 30 minutes
    assert rules["CphServerPhonesStuck"]["expr"].startswith("min_over_time(")
    listing = rules["CphPhonesListingDown"]
    assert listing["expr"].strip() == "cph_phones_up == 0" and listing["for"] == "15m"
    assert listing["labels"]["severity"] == "warning"


def test_the_maintenance_and_encode_server_alerts_exist() -> None:
    """Per event and per encode server, each keeping the labels that say which one."""
    rules = alerts()
    expected = {
        "CphMaintenanceNeedsAuthorisation": ("warning", 'state="inquiring"'),
        "CphMaintenanceImminent": ("info", 'state="scheduled"'),
        "CphMaintenanceFailed": ("critical", 'state="failed"'),
        "CphEncodeServerAbnormal": ("critical", 'state="abnormal"'),
        "CphEncodeServerStuckCreating": ("warning", 'state="creating"'),
    }
    for name, (severity, matcher) in expected.items():
        rule = rules[name]
        assert rule["labels"]["severity"] == severity and rule["for"] != "0m", name
        assert matcher in rule["expr"] and "sum" not in rule["expr"], name
    deadline = rules["CphMaintenanceNeedsAuthorisation"]
    assert "not_before_deadline_timestamp_seconds" in deadline["expr"]
    assert deadline["expr"].rstrip().endswith("< time() + 259200")  # 72 h
    imminent = rules["CphMaintenanceImminent"]["expr"]
    assert "event_not_before_timestamp_seconds" in imminent
    assert imminent.rstrip().endswith("< time() + 86400")  # 24 h
    for name in ("CphMaintenanceNeedsAuthorisation", "CphMaintenanceImminent"):
        # the event's kind joins in, and the description says which server, what and when
        assert "group_left (event_type, authorization_type, state)" in rules[name]["expr"]
        text = rules[name]["annotations"]["description"]
        for piece in ("$labels.event_type", "$labels.server_name", "humanizeTimestamp"):
            assert piece in text, (name, piece)
    assert "console" in deadline["annotations"]["description"]
    for name in ("CphEncodeServerAbnormal", "CphEncodeServerStuckCreating"):
        text = rules[name]["annotations"]["description"]
        for label in ("encode_server_name", "encode_server_id", "server_id"):
            assert f"$labels.{label}" in text, (name, label)
    for metric, name in (
        ("cph_scheduled_events_up", "CphScheduledEventsListingDown"),
        ("cph_encode_servers_up", "CphEncodeServersListingDown"),
        ("cph_phone_models_up", "CphPhoneModelsListingDown"),
    ):
        assert rules[name]["expr"].strip() == f"{metric} == 0", name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_per_phone_panels_say_they_need_phone_details(path: Path) -> None:
    """cph_phone_* only exist with --collector.phone-details: the panel says so when empty."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(json.loads(path.read_text())["panels"]):
        exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []))
        if re.search(r"\bcph_phone_(state|info)\b", exprs):
            assert "--collector.phone-details" in panel["description"], panel["title"]
            assert panel["fieldConfig"]["defaults"].get("noValue"), panel["title"]


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    spec = yaml.safe_load(ALERTS_TEST.read_text())
    assert spec["rule_files"] == [ALERTS.name]
    firing: dict[str, int] = {}
    silent: dict[str, int] = {}
    for test in spec["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            if case.get("exp_alerts"):
                for alert in case["exp_alerts"]:
                    # exact expectations: severity and both annotations spelled out
                    assert "severity" in alert.get("exp_labels", {}), name
                    assert {"summary", "description"} <= set(alert.get("exp_annotations", {}))
                firing[name] = firing.get(name, 0) + 1
            else:
                silent[name] = silent.get(name, 0) + 1
    names = set(alerts())
    assert set(firing) | set(silent) <= names, "tests name alerts that do not exist"
    assert names - set(firing) == set(), "alerts never tested firing"
    # silent before `for` elapses and after recovery: at least two cases each
    assert {n for n in names if silent.get(n, 0) < 2} == set(), "alerts not tested silent"


def test_rule_metrics_are_in_the_contract() -> None:
    allowed = allowed_metrics()
    for rule in load_rules():
        text = rule["expr"] + " ".join(rule.get("annotations", {}).values())
        unknown = set(METRIC_TOKEN.findall(text)) - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"
    assert "up" in " ".join(r["expr"] for r in load_rules())  # the only non-cph series


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_metrics_are_in_the_contract(path: Path) -> None:
    queries = dashboard_queries(json.loads(path.read_text()))
    assert queries
    allowed = allowed_metrics()
    for query in queries:
        names = set(METRIC_TOKEN.findall(query))
        if re.match(r"ALERTS\{", query):  # the alerts panel reads Prometheus' own series
            assert 'alertname=~"Cph.*"' in query, query
            continue
        assert names, f"query uses no exporter metric: {query}"
        assert names <= allowed, f"{path.name}: {names - allowed} in {query}"


def test_contract_matches_the_documented_metrics_table() -> None:
    documented = documented_metrics()
    if not documented:
        pytest.skip("docs/metrics.md has no metrics table; rules are checked against CONTRACT")
    assert documented >= CONTRACT, f"missing from docs/metrics.md: {sorted(CONTRACT - documented)}"
