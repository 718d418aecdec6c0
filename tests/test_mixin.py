"""The mixin: rules, PrometheusRule and dashboards generated from one config.

The committed files are its output for the default config; a second config (a `job`
selector, other severities and thresholds) must give rules that promtool accepts with every
lint and whose unit tests pass, and dashboards whose every query is scoped to the job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cph_exporter.mixin import ConfigError, MixinConfig, outputs, parse_config
from cph_exporter.mixin.dashboards import PER_PROJECT
from cph_exporter.mixin.promql import add_matchers, matchers_labels
from cph_exporter.mixin.rules import alert_names
from cph_exporter.mixin.settings import ALERT_DEFAULTS, load_config
from tests.helpers.rules import METRIC_TOKEN, dashboard_queries

REPO = Path(__file__).resolve().parents[1]
ALERTS_TEST = REPO / "prometheus" / "alerts_test.yml"
JOB_CONFIG = REPO / "tests" / "fixtures" / "mixin-job.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found")


def generate(config: Path | None, out: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "cph_exporter.mixin", "--out", str(out)]
    args += ["--config", str(config)] if config else []
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def job_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixin-job")
    result = generate(JOB_CONFIG, out)
    assert result.returncode == 0, result.stderr
    return out


def derived_unit_tests(config: MixinConfig, alerts: Path) -> Path:
    """prometheus/alerts_test.yml with the expectations that `config` changes rewritten:
    severities, runbook URLs, and the labels absent() takes from the selector."""
    spec = yaml.safe_load(ALERTS_TEST.read_text())
    spec["rule_files"] = [alerts.name]
    fixed = matchers_labels(config.selector)
    for test in spec["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            for alert in case.get("exp_alerts") or []:
                alert["exp_labels"]["severity"] = config.severity(name)
                alert["exp_annotations"]["runbook_url"] = f"{config.runbook_url}#{name.lower()}"
                if name == "CphExporterAbsent":
                    alert["exp_labels"] |= fixed
    target = alerts.parent / "alerts_test.yml"
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def test_committed_files_are_the_default_output(tmp_path: Path) -> None:
    for relative, text in outputs().items():
        assert (REPO / relative).read_text(encoding="utf-8") == text, (
            f"{relative} is out of date: run python -m cph_exporter.mixin"
        )
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "kubernetes" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_check_notices_drift_and_a_run_repairs_it(tmp_path: Path) -> None:
    assert generate(None, tmp_path).returncode == 0
    alerts = tmp_path / "prometheus" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 5m", "for: 7m", 1))
    check = subprocess.run(
        [sys.executable, "-m", "cph_exporter.mixin", "--out", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert check.returncode == 1 and "prometheus/alerts.yml" in check.stderr
    assert generate(None, tmp_path).returncode == 0
    assert alerts.read_text() == outputs()["prometheus/alerts.yml"]


def test_defaults_are_the_shipped_severities_and_durations() -> None:
    groups = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(rules) == set(ALERT_DEFAULTS)
    for name, (severity, duration) in ALERT_DEFAULTS.items():
        assert (rules[name]["labels"]["severity"], rules[name]["for"]) == (severity, duration)
    assert rules["CphApiDown"]["expr"] == "cph_up == 0"  # no selector by default


def test_the_second_config_changes_what_it_says(job_output: Path) -> None:
    config = load_config(JOB_CONFIG)
    groups = yaml.safe_load((job_output / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["CphServerFrozen"]["labels"]["severity"] == "critical"
    assert rules["CphServerPhonesAbnormal"]["labels"]["severity"] == "info"
    assert rules["CphMaintenanceImminent"]["labels"]["severity"] == "warning"
    assert rules["CphEncodeServerAbnormal"]["labels"]["severity"] == "warning"
    for name, rule in rules.items():
        selectors = re.findall(r"\b(?:cph_[a-z0-9_]+|up)\b(\{[^}]*\})?", rule["expr"])
        assert selectors and all(s.startswith('{job="cph"') for s in selectors), name
        assert rule["annotations"]["runbook_url"] == f"{config.runbook_url}#{name.lower()}"
    rule = yaml.safe_load(
        (job_output / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text()
    )
    assert rule["spec"]["groups"] == groups
    for path in (job_output / "grafana" / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["editable"] is False and board["refresh"] == "5m"
        for query in dashboard_queries(board):
            for selector in re.findall(r"\bcph_[a-z0-9_]+(\{[^}]*\})?", query):
                assert selector.startswith('{job="cph"'), (path.name, query)


@needs_promtool
@pytest.mark.parametrize("which", ["default", "job-config"])
def test_promtool_lints_and_unit_tests_the_rules(
    which: str, job_output: Path, tmp_path: Path
) -> None:
    if which == "default":
        alerts, config = REPO / "prometheus" / "alerts.yml", MixinConfig()
        alerts = Path(shutil.copy(alerts, tmp_path / "alerts.yml"))
    else:
        alerts, config = job_output / "prometheus" / "alerts.yml", load_config(JOB_CONFIG)
    lint = subprocess.run(
        [str(PROMTOOL), "check", "rules", "--lint=all", "--lint-fatal", str(alerts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    unit = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(derived_unit_tests(config, alerts))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_dashboards_have_the_target_and_project_variables() -> None:
    for relative, text in outputs().items():
        if not relative.endswith(".json"):
            continue
        board = json.loads(text)
        assert board["editable"] is False
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:5] == ["datasource", "job", "instance", "region", "project_id"]
        own = {"job", "instance", "region", "project_id"}  # the variables' own queries
        board["templating"]["list"] = [
            v for v in board["templating"]["list"] if v["name"] not in own
        ]
        for query in dashboard_queries(board):
            for name, selector in re.findall(r"\b(cph_[a-z0-9_]+)(\{[^}]*\})?", query):
                assert 'job=~"$job",instance=~"$instance"' in selector, (relative, query)
                if name in PER_PROJECT:
                    assert 'region=~"$region",project_id=~"$project_id"' in selector


def test_fleet_overview_has_the_operator_panels() -> None:
    board = json.loads(outputs()["grafana/dashboards/cph-fleet-overview.json"])
    titles = {p["title"] for p in board["panels"]}
    for title in (
        "Top servers by problem time",
        "Status changes over the range (flapping)",
        "Time in the current state",
        "Capacity by server and phone flavour",
        "Servers created over the range",
        "Servers gone over the range",
        "CPH alerts firing now",
        "Maintenance",
        "Waiting for authorisation",
        "Upcoming maintenance",
        "Finished in the last 24 hours",
        "Encoding",
        "Encode servers by state",
        "Encode servers not running",
    ):
        assert title in titles
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows.index("Cloud phones") < rows.index("Maintenance") < rows.index("Encoding")
    (upcoming,) = [p for p in board["panels"] if p["title"] == "Upcoming maintenance"]
    exprs = [t["expr"] for t in upcoming["targets"]]
    for time in ("not_before", "not_before_deadline"):  # countdowns, of the open events only
        (countdown,) = [e for e in exprs if f"event_{time}_timestamp_seconds" in e]
        assert "- time()" in countdown and "inquiring|scheduled|executing" in countdown
    assert upcoming["fieldConfig"]["defaults"]["unit"] == "s"
    assert_no_overlap([q for p in board["panels"] for q in [p, *p.get("panels", [])]])
    ids = [p["id"] for p in board["panels"]] + [
        q["id"] for p in board["panels"] for q in p.get("panels", [])
    ]
    assert len(ids) == len(set(ids))


def test_server_detail_shows_events_and_phones_against_capacity() -> None:
    board = json.loads(outputs()["grafana/dashboards/cph-server-detail.json"])
    panels = {p["title"]: p for p in board["panels"]}
    assert panels["Scheduled maintenance"]["type"] == "row"
    events = panels["Scheduled events of this server"]
    assert all('server_id="$server"' in t["expr"] for t in events["targets"])
    gauge = panels["Phones against capacity"]
    assert gauge["type"] == "gauge" and gauge["fieldConfig"]["defaults"]["max"] == 1
    (target,) = gauge["targets"]
    assert re.fullmatch(
        r"sum by \(job, instance, server_id\) \(cph_server_phones\{[^}]*\}\)"
        r" / on \(job, instance, server_id\) cph_server_phone_capacity\{[^}]*\}",
        target["expr"],
    ), target["expr"]
    # the capacity panels sit in the "Cloud phones" row, and leave with it
    rows = [p for p in board["panels"] if p["type"] == "row"]
    phones_row = next(r for r in rows if r["title"] == "Cloud phones")
    assert gauge["gridPos"]["y"] > phones_row["gridPos"]["y"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert_no_overlap(board["panels"])


def assert_no_overlap(panels: list[dict[str, Any]]) -> None:
    for a in panels:
        for b in panels:
            ga, gb = a["gridPos"], b["gridPos"]
            if a is not b and ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]:
                assert ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"], (
                    a["title"],
                    b["title"],
                )


def test_thresholds_reach_the_rules() -> None:
    config = parse_config({"thresholds": {"az_abnormal_ratio": 0.6, "throttled_ratio": 0.25}})
    text = outputs(config)["prometheus/alerts.yml"]
    assert "> 0.6\n" in text and "> 0.25\n" in text and "more than 60% of the zone" in text
    hours = {"maintenance_authorise_hours": 48, "maintenance_imminent_hours": 6}
    rules = {
        r["alert"]: r
        for g in yaml.safe_load(
            outputs(parse_config({"thresholds": hours}))["prometheus/alerts.yml"]
        )["groups"]
        for r in g["rules"]
    }
    authorise, imminent = rules["CphMaintenanceNeedsAuthorisation"], rules["CphMaintenanceImminent"]
    assert authorise["expr"].endswith("< time() + 172800\n")
    assert "less than 48 hours away" in authorise["annotations"]["description"]
    assert imminent["expr"].endswith("< time() + 21600\n")
    assert imminent["annotations"]["summary"].endswith("begins within 6 hours")


def test_optional_rows_can_be_left_out() -> None:
    config = parse_config({"dashboards": {"phones": False, "cloud_eye": False}})
    files = outputs(config)
    fleet = json.loads(files["grafana/dashboards/cph-fleet-overview.json"])
    text = json.dumps(fleet)
    assert "cph_server_phones" not in text.replace("cph_server_phones *", "")
    assert "huaweicloud_sys_ecp" not in text
    assert not [n for n in alert_names(config) if "Phone" in n]
    assert "cph_server_phone_capacity" not in json.dumps(files)
    names = set(alert_names(MixinConfig()))
    config = parse_config({"dashboards": {"maintenance": False, "encoding": False}})
    files = outputs(config)
    text = json.dumps(files)
    assert "cph_server_scheduled_event" not in text and "cph_encode_server" not in text
    assert "cph_scheduled_events_up" not in text and "cph_encode_servers_up" not in text
    dropped = names - set(alert_names(config))
    listings = {"CphScheduledEventsListingDown", "CphEncodeServersListingDown"}
    assert dropped == {n for n in names if "Maintenance" in n or "Encode" in n} | listings
    for board in ("cph-fleet-overview.json", "cph-server-detail.json"):
        titles = {p["title"] for p in json.loads(files[f"grafana/dashboards/{board}"])["panels"]}
        assert not {"Maintenance", "Encoding", "Scheduled maintenance"} & titles, board


def test_config_errors_are_refused() -> None:
    for bad in (
        {"selectr": 'job="x"'},
        {"alerts": {"NoSuchAlert": {"severity": "warning"}}},
        {"alerts": {"CphApiDown": {"severity": "page"}}},
        {"alerts": {"CphApiDown": {"for": "five minutes"}}},
        {"thresholds": {"az_abnormal_ratio": "half"}},
        {"selector": '{job="x"}'},
    ):
        with pytest.raises(ConfigError):
            parse_config(bad)


def test_add_matchers() -> None:
    sel = 'job="cph"'
    assert add_matchers("cph_up == 0", sel) == 'cph_up{job="cph"} == 0'
    assert add_matchers('rate(cph_x_total{code="429"}[5m])', sel) == (
        'rate(cph_x_total{job="cph",code="429"}[5m])'
    )
    assert add_matchers("up == 0 and on (job) group_left () huaweicloud_a", sel) == (
        'up{job="cph"} == 0 and on (job) group_left () huaweicloud_a'
    )
    assert add_matchers("absent(cph_up)", "") == "absent(cph_up)"
    assert matchers_labels('job="cph",env=~"p.*"') == {"job": "cph"}


def _metric_names(files: dict[str, str]) -> set[str]:
    names: set[str] = set()
    for text in files.values():
        names |= set(METRIC_TOKEN.findall(text))
    return names


def test_every_generated_file_is_valid(job_output: Path) -> None:
    for path in job_output.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix in (".yml", ".yaml"):
            assert yaml.safe_load(path.read_text())
    assert _metric_names(outputs())  # the same metric vocabulary in both


def test_cli_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("thresholds: {nope: 1}\n")
    result = generate(bad, tmp_path / "out")
    assert result.returncode == 2 and "nope" in result.stderr
    assert not (tmp_path / "out").exists()
