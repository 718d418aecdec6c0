"""End to end: a real Prometheus scrapes the exporter running on its simulator.

The exporter (`python -m cph_exporter --simulate`) and Debian's `prometheus` run as
subprocesses on loopback. Prometheus loads a copy of prometheus/alerts.yml whose `for`
durations are cut to seconds, so the alerts fire within the test. The simulated fleet
(`generate_fleet(60)` plus the documented examples) and its phones (`generate_phones`) are
the oracle for which servers must alert and how many phones each has in each state, and
every Grafana dashboard query must return data from this Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helpers.deploy import dockerfile_instructions
from tests.helpers.net import free_port
from tests.helpers.processes import start, stop, wait_for
from tests.helpers.prometheus import GRAFANA_VARS, api, grafana_query, start_prometheus
from tests.helpers.rules import (
    CLOUD_EYE_METRIC,
    CONTRACT,
    HISTOGRAMS,
    dashboard_queries,
    documented_metrics,
)
from tests.helpers.watched import unix

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
PROMETHEUS = shutil.which("prometheus")
SERVERS = 60
TTL = "5s"
SHORT_FOR = "2s"
SETTLE_TIMEOUT = 60.0  # seconds to wait for the target and the alerts

pytestmark = [
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="prometheus not found: install Debian's 'prometheus' package (.ci/run does)",
    ),
    pytest.mark.timeout(300),
]

# Server status code -> cph_server_state; anything else is "unknown".
STATES = {0: "creating", 1: "creating", 3: "creating", 4: "creating", 2: "abnormal"}
STATES |= {5: "normal", 8: "frozen", 10: "stopped", 11: "stopping", 12: "stop_failed"}
STATES |= {13: "starting"}
SERVER_ALERTS = {
    "CphServerAbnormal": ("abnormal", "critical"),
    "CphServerFrozen": ("frozen", "warning"),
    "CphServerStopFailed": ("stop_failed", None),
    "CphServerStuckCreating": ("creating", None),
    "CphServerUnknownStatus": ("unknown", None),
}
# Phone alert -> the phone states it fires for (one alert per server and state with phones).
PHONE_FAILED = {"reset_failed", "restart_failed", "create_failed", "stop_failed"}
PHONE_ALERTS = {
    "CphServerPhonesAbnormal": {"abnormal"},
    "CphServerPhonesFailed": PHONE_FAILED,
    "CphServerPhonesStuck": {"creating", "resetting", "restarting", "stopping"},
}
# Alerts per scheduled event (by event_id) and per encode server (by encode_server_id).
MAINTENANCE_ALERTS = (
    "CphMaintenanceNeedsAuthorisation",
    "CphMaintenanceImminent",
    "CphMaintenanceFailed",
)
ENCODE_ALERTS = {"CphEncodeServerAbnormal": {2}, "CphEncodeServerStuckCreating": {0, 4, 5}}
# Phone status code -> cph_server_phones state; anything else is "unknown".
PHONE_STATES = {0: "creating", 1: "creating", 2: "running", 3: "resetting", 4: "restarting"}
PHONE_STATES |= {6: "frozen", 7: "stopping", 8: "stopped", -5: "reset_failed"}
PHONE_STATES |= {-6: "restart_failed", -7: "abnormal", -8: "create_failed", -9: "stop_failed"}
PHONE_STATE_NAMES = {*PHONE_STATES.values(), "unknown"}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    url = f"http://127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "cph_exporter", "--simulate"]
    args += ["--simulate.servers", str(SERVERS), "--cache.ttl", TTL]
    args += ["--web.listen-address", url.removeprefix("http://"), "--collector.phone-details"]
    proc = start(args, log, f"{url}/-/ready")
    try:
        yield url
    finally:
        stop(proc)


def short_for_rules(target: Path) -> None:
    """prometheus/alerts.yml with every `for` cut to SHORT_FOR."""
    spec = yaml.safe_load(ALERTS.read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    target.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture(scope="module")
def prometheus(exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    short_for_rules(workdir / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "cph",
                "static_configs": [{"targets": [exporter.removeprefix("http://")]}],
            }
        ],
    }
    proc, url = start_prometheus(str(PROMETHEUS), workdir, config)
    try:
        yield url
    finally:
        stop(proc)


def expected_servers() -> dict[str, set[str]]:
    """server_ids per state of the simulated fleet."""
    from cph_exporter.simulator import documented_examples, generate_fleet

    fleet = generate_fleet(SERVERS) + documented_examples()
    ids = [s["server_id"] for s in fleet]
    assert len(ids) == len(set(ids))
    by_state: dict[str, set[str]] = {}
    for server in fleet:
        state = STATES.get(int(server["status"]), "unknown")
        by_state.setdefault(state, set()).add(server["server_id"])
    return by_state


def simulated_servers() -> list[dict[str, Any]]:
    """The servers in the order `--simulate` builds them, which decides their phones."""
    from cph_exporter.simulator import documented_examples, generate_fleet

    return documented_examples() + generate_fleet(SERVERS)


def expected_phones() -> dict[str, Counter[str]]:
    """Phone count per state for every simulated server (servers without phones too)."""
    from cph_exporter.simulator import generate_phones

    servers = simulated_servers()
    phones: dict[str, Counter[str]] = {s["server_id"]: Counter() for s in servers}
    for phone in generate_phones(servers):
        phones[phone["server_id"]][PHONE_STATES.get(int(phone["status"]), "unknown")] += 1
    return phones


def expected_phone_alerts() -> dict[str, dict[tuple[str, str], int]]:
    """(server_id, state) -> phone count, for every phone alert."""
    phones = expected_phones()
    return {
        name: {(sid, st): n for sid, c in phones.items() for st, n in c.items() if st in states}
        for name, states in PHONE_ALERTS.items()
    }


def expected_watched_alerts() -> dict[str, set[str]]:
    """The event_ids and encode_server_ids each maintenance and encode server alert must fire
    for, from the simulator's own data. Its event times are whole hours from its start, none
    within an hour of the alerts' 72 h and 24 h, so a fixed start stands in for the real one."""
    from cph_exporter.simulator import generate_encode_servers, generate_scheduled_events

    start = 1_800_000_000.0
    events = generate_scheduled_events(simulated_servers(), start)

    def hours(event: dict[str, Any], key: str) -> float | None:
        at = unix(event.get(key))
        return None if at is None else (at - start) / 3600

    expected: dict[str, set[str]] = {name: set() for name in MAINTENANCE_ALERTS}
    near_bounds, not_alerting = [], 0
    for event in events:
        deadline, opens = hours(event, "not_before_deadline"), hours(event, "not_before")
        finished = hours(event, "finish_time")
        bound = {"inquiring": (deadline, 72), "scheduled": (opens, 24)}.get(event["state"])
        if bound and bound[0] is not None:
            near_bounds += [event["event_id"]] if abs(bound[0] - bound[1]) <= 1 else []
            if bound[0] < bound[1]:
                name = "CphMaintenanceNeedsAuthorisation"
                expected[name if event["state"] == "inquiring" else "CphMaintenanceImminent"].add(
                    event["event_id"]
                )
            else:
                not_alerting += 1
        if event["state"] == "failed" and finished is not None and finished > -24:
            expected["CphMaintenanceFailed"].add(event["event_id"])
    assert not near_bounds and not_alerting, (near_bounds, not_alerting)
    encode_servers = generate_encode_servers(simulated_servers())
    for name, codes in ENCODE_ALERTS.items():
        expected[name] = {e["encode_server_id"] for e in encode_servers if e["status"] in codes}
    return expected


def firing(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


@pytest.fixture(scope="module")
def settled(prometheus: str) -> list[dict[str, Any]]:
    """Active alerts once the target is up and every server and phone alert has fired."""
    by_state = expected_servers()
    by_phone_state = expected_phone_alerts()

    def target_up() -> bool:
        targets = api(prometheus, "targets")["activeTargets"]
        return len(targets) == 1 and targets[0]["health"] == "up"

    wait_for("the exporter target to be up", target_up)

    missing: dict[str, set[Any]] = {}

    def all_fired() -> list[dict[str, Any]] | None:
        # Wait until every expected server alert fires; exactness is the tests' business.
        alerts = api(prometheus, "alerts")["alerts"]
        missing.clear()
        for name, (state, _) in SERVER_ALERTS.items():
            ids = {a["labels"]["server_id"] for a in firing(alerts, name)}
            if by_state.get(state, set()) - ids:
                missing[name] = by_state.get(state, set()) - ids
        for name, want in by_phone_state.items():
            got = {(a["labels"]["server_id"], a["labels"]["state"]) for a in firing(alerts, name)}
            if set(want) - got:
                missing[name] = set(want) - got
        return None if missing else alerts

    try:
        return wait_for("the server and phone alerts to fire", all_fired)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nnot firing: {missing}") from None


def test_target_is_up_and_every_rule_evaluates(
    prometheus: str, settled: list[dict[str, Any]]
) -> None:
    (target,) = api(prometheus, "targets")["activeTargets"]
    assert target["health"] == "up", target
    rules = [r for g in api(prometheus, "rules")["groups"] for r in g["rules"]]
    assert len(rules) == len(
        [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    )
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_abnormal_and_frozen_fire_for_exactly_those_servers(settled: list[dict[str, Any]]) -> None:
    by_state = expected_servers()
    assert by_state["abnormal"] and by_state["frozen"], "the simulated fleet lacks them"
    for name, (state, severity) in SERVER_ALERTS.items():
        alerts = firing(settled, name)
        got = [a["labels"]["server_id"] for a in alerts]
        want = by_state.get(state, set())
        assert len(got) == len(set(got)), f"{name} fires twice for a server: {got}"
        assert set(got) == want, f"{name}: extra {set(got) - want}, missing {want - set(got)}"
        for alert in alerts:
            labels = alert["labels"]
            assert labels["job"] == "cph", alert
            if severity:
                assert labels["severity"] == severity, alert
            text = alert["annotations"]["summary"] + alert["annotations"]["description"]
            for label in ("server_name", "server_id", "availability_zone"):
                assert labels[label] and labels[label] in text, (label, alert)


def test_phone_alerts_fire_for_exactly_those_servers_and_states(
    settled: list[dict[str, Any]],
) -> None:
    expected = expected_phone_alerts()
    assert all(expected.values()), f"the simulated phones lack a state: {expected}"
    names = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert set(PHONE_ALERTS) <= names
    for name, want in expected.items():
        alerts = firing(settled, name)
        got = [(a["labels"]["server_id"], a["labels"]["state"]) for a in alerts]
        assert len(got) == len(set(got)), f"{name} fires twice for a server and state: {got}"
        assert set(got) == set(want), (
            f"{name}: extra {set(got) - set(want)}, missing {set(want) - set(got)}"
        )
        for alert in alerts:
            labels = alert["labels"]
            assert labels["job"] == "cph" and labels["severity"] == "warning", alert
            text = alert["annotations"]["summary"] + alert["annotations"]["description"]
            for label in ("server_name", "server_id", "availability_zone", "state"):
                assert labels[label] and labels[label] in text, (label, alert)
            # the description gives the number of phones
            count = want[(labels["server_id"], labels["state"])]
            assert re.search(rf"(?<![\d.]){count}(?![\d.])", alert["annotations"]["description"])
            assert float(alert["value"]) == count, alert


def test_maintenance_and_encode_server_alerts_fire_for_exactly_those(
    prometheus: str, settled: list[dict[str, Any]]
) -> None:
    expected = expected_watched_alerts()
    assert all(expected.values()), f"the simulated data lacks a case: {expected}"

    def key(name: str) -> str:
        return "event_id" if name in MAINTENANCE_ALERTS else "encode_server_id"

    def fired() -> list[dict[str, Any]] | None:
        alerts = api(prometheus, "alerts")["alerts"]
        got = {n: {a["labels"][key(n)] for a in firing(alerts, n)} for n in expected}
        return alerts if all(got[n] >= want for n, want in expected.items()) else None

    alerts = wait_for("the maintenance and encode server alerts to fire", fired)
    for name, want in expected.items():
        found = firing(alerts, name)
        got = [a["labels"][key(name)] for a in found]
        assert len(got) == len(set(got)) and set(got) == want, (name, got, want)
        for alert in found:
            labels, text = alert["labels"], " ".join(alert["annotations"].values())
            if name in MAINTENANCE_ALERTS:
                for label in ("server_name", "server_id", "event_id", "event_type"):
                    assert labels[label] and labels[label] in text, (label, alert)
            else:
                for label in ("encode_server_name", "encode_server_id", "server_id"):
                    assert labels[label] and labels[label] in text, (label, alert)
    for alert in firing(alerts, "CphMaintenanceNeedsAuthorisation"):
        # the deadline, as Prometheus prints a timestamp, and where to authorise
        description = alert["annotations"]["description"]
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", description), description
        assert "console" in description, description


def test_server_phones_match_the_simulated_phones(
    prometheus: str, settled: list[dict[str, Any]]
) -> None:
    """cph_server_phones per server and state, and its sum, equal the simulator's phones."""
    expected = expected_phones()
    series = api(prometheus, "query", query="cph_server_phones")["result"]
    got: dict[str, dict[str, float]] = {}
    for s in series:
        states = got.setdefault(s["metric"]["server_id"], {})
        assert s["metric"]["state"] not in states, s["metric"]
        states[s["metric"]["state"]] = float(s["value"][1])
    assert set(got) == set(expected)
    for server_id, states in got.items():
        assert set(states) == PHONE_STATE_NAMES, server_id  # every state, 0 where none
        assert states == {st: float(expected[server_id][st]) for st in states}, server_id
    totals = api(prometheus, "query", query="sum by (server_id) (cph_server_phones)")["result"]
    assert {s["metric"]["server_id"]: float(s["value"][1]) for s in totals} == {
        sid: float(sum(c.values())) for sid, c in expected.items()
    }
    # --collector.phone-details: one info series per phone, one state series per state
    phones = sum(sum(c.values()) for c in expected.values())
    (info,) = api(prometheus, "query", query="count(cph_phone_info)")["result"]
    (state,) = api(prometheus, "query", query="count(cph_phone_state)")["result"]
    (current,) = api(prometheus, "query", query="sum(cph_phone_state)")["result"]
    assert float(info["value"][1]) == phones
    assert float(state["value"][1]) == phones * len(PHONE_STATE_NAMES)
    assert float(current["value"][1]) == phones
    (up,) = api(prometheus, "query", query="cph_phones_up")["result"]
    assert float(up["value"][1]) == 1.0


def test_no_exporter_health_alert_fires(prometheus: str, settled: list[dict[str, Any]]) -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    (health,) = [g for g in groups if g["name"] == "cph-exporter"]
    names = {r["alert"] for r in health["rules"]}
    assert "CphApiDown" in names
    # Give the short `for`s several evaluations past the server alerts before looking.
    time.sleep(3)
    active = [a for a in api(prometheus, "alerts")["alerts"] if a["labels"]["alertname"] in names]
    assert not [a["labels"] for a in active if a["state"] == "firing"]
    # One slow 1s scrape may leave CphExporterDown pending for a moment, nothing else.
    assert {a["labels"]["alertname"] for a in active} <= {"CphExporterDown"}, active
    up = api(prometheus, "query", query="cph_up")["result"]
    assert [float(s["value"][1]) for s in up] == [1.0]


def test_exporter_exposes_every_contract_metric(exporter: str) -> None:
    text = requests.get(f"{exporter}/metrics", timeout=10).text
    exposed = {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1].isalpha()}
    contract = documented_metrics() or CONTRACT
    missing = {m for m in contract if m not in exposed and f"{m}_bucket" not in exposed}
    assert not missing
    assert {f"{h}_bucket" for h in HISTOGRAMS} <= exposed


def test_dockerfile_healthcheck_probes_the_exporter(exporter: str) -> None:
    """The image's HEALTHCHECK command, run here against the live exporter and a dead port."""
    (healthcheck,) = [arg for op, arg in dockerfile_instructions() if op == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[0] == "python"
    command[0] = sys.executable
    env_name = "CPH_EXPORTER_HEALTHCHECK_URL"
    healthy = subprocess.run(
        command, env={env_name: f"{exporter}/-/healthy"}, capture_output=True, timeout=30
    )
    assert healthy.returncode == 0, healthy.stderr
    dead = subprocess.run(
        command,
        env={env_name: f"http://127.0.0.1:{free_port()}/-/healthy"},
        capture_output=True,
        timeout=30,
    )
    assert dead.returncode != 0


CLOUD_EYE_SKIP = (
    "needs cloudeye-exporter's huaweicloud_sys_ecp_* series; tests/test_cloudeye.py runs it"
    " against a Prometheus fed synthetic Cloud Eye series"
)


def boards() -> list[tuple[str, dict[str, Any]]]:
    """The committed dashboards, and the mixin's for a config with a job selector (the
    Prometheus here scrapes the exporter as job "cph")."""
    from cph_exporter.mixin import load_config, outputs

    out = [(path.stem, json.loads(path.read_text())) for path in DASHBOARDS]
    job_config = outputs(load_config(REPO / "tests" / "fixtures" / "mixin-job.yml"))
    for name, text in sorted(job_config.items()):
        if name.endswith(".json"):
            out.append((f"job-config-{Path(name).stem}", json.loads(text)))
    return out


def dashboard_cases() -> list[Any]:
    cases = []
    for stem, board in boards():
        for i, query in enumerate(dashboard_queries(board)):
            # Cloud Eye panels need cloudeye-exporter's series, which this stack lacks.
            skip = CLOUD_EYE_METRIC.search(query)
            marks = [pytest.mark.skip(reason=CLOUD_EYE_SKIP)] if skip else []
            cases.append(pytest.param(query, id=f"{stem}-{i}", marks=marks))
    return cases


@pytest.fixture(scope="module")
def variables(prometheus: str, settled: list[dict[str, Any]]) -> dict[str, str]:
    """Values for the dashboards' variables: a server with bandwidths, volumes, phones, a
    phone capacity and scheduled events, in a zone with unhealthy servers (for $az)."""
    query = (
        "cph_server_bandwidth_size_bytes_per_second and on (server_id) cph_server_volume_size_bytes"
        " and on (server_id) cph_phone_info and on (server_id) cph_server_phone_capacity"
        " and on (server_id) cph_server_scheduled_event_not_before_deadline_timestamp_seconds"
        " and on (server_id) cph_server_scheduled_event_not_before_timestamp_seconds"
        " and on (server_id) cph_server_scheduled_event_not_after_timestamp_seconds"
        " and on (availability_zone) group by (availability_zone)"
        ' (cph_server_state{state=~"abnormal|frozen|stop_failed|unknown"} == 1)'
    )
    result = api(prometheus, "query", query=query)["result"]
    assert result, "no simulated server has bandwidths, volumes, phones, capacity and events"
    server = min((s["metric"] for s in result), key=lambda m: m["server_id"])
    return GRAFANA_VARS | {
        "datasource": "prometheus",
        "az": server["availability_zone"],
        "server": server["server_id"],
    }


def substitute(query: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, query)


@pytest.mark.parametrize("query", dashboard_cases())
def test_dashboard_query_returns_data(
    prometheus: str, variables: dict[str, str], query: str
) -> None:
    expr, label = grafana_query(substitute(query, variables))
    instant = api(prometheus, "query", query=expr)["result"]
    assert instant, f"no data: {expr}"
    if label:
        assert all(s["metric"].get(label) for s in instant), expr
    now = time.time()
    ranged = api(prometheus, "query_range", query=expr, start=now - 30, end=now, step="2s")
    assert ranged["result"], f"no data over the last 30s: {expr}"


def test_server_variable_regex_extracts_ids_and_names(
    prometheus: str, variables: dict[str, str]
) -> None:
    """The server picker shows names and uses ids, parsed from Grafana's query_result text."""
    board = json.loads((REPO / "grafana" / "dashboards" / "cph-server-detail.json").read_text())
    var = next(v for v in board["templating"]["list"] if v["name"] == "server")
    expr, _ = grafana_query(substitute(var["query"]["query"], variables))
    pattern = re.compile(var["regex"].strip("/").replace("(?<", "(?P<"))
    result = api(prometheus, "query", query=expr)["result"]
    assert result
    for series in result:
        metric = dict(series["metric"])
        # Grafana renders name{label="value",...} value timestamp, labels as the API orders them
        name = metric.pop("__name__")
        labels = ",".join(f'{k}="{v}"' for k, v in metric.items())
        match = pattern.search(f"{name}{{{labels}}} {series['value'][1]} {series['value'][0]}")
        assert match, metric
        assert match["value"] == metric["server_id"] and match["text"] == metric["server_name"]
