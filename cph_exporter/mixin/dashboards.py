"""The Grafana dashboards, built from the panels in templates/ and the mixin's config.

The templates hold the panels' layout and unfiltered queries. The generator adds the config's
selector and the job/instance/region/project_id variables to every query, the panels built
here (problem time, flapping, capacity by flavour, fleet changes, firing alerts), and drops
the optional rows the config leaves out.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from cph_exporter.mixin.panels import DATASOURCE, grid, panel_target, stat, table
from cph_exporter.mixin.promql import add_matchers, restrict
from cph_exporter.mixin.settings import MixinConfig
from cph_exporter.mixin.watched_panels import (
    detail_capacity,
    detail_events,
    encoding_row,
    maintenance_row,
)

FLEET = "cph-fleet-overview.json"
DETAIL = "cph-server-detail.json"

# Series per server (server_id): filtered by region and project through cph_server_info.
PER_SERVER = frozenset(
    {
        "cph_server_status",
        "cph_server_state",
        "cph_server_bandwidth_size_bytes_per_second",
        "cph_server_volume_size_bytes",
        "cph_server_addresses",
        "cph_server_created_timestamp_seconds",
        "cph_server_updated_timestamp_seconds",
        "cph_server_phones",
        "cph_phone_info",
        "cph_phone_state",
        "cph_server_scheduled_event_info",
        "cph_server_scheduled_event_not_before_timestamp_seconds",
        "cph_server_scheduled_event_not_after_timestamp_seconds",
        "cph_server_scheduled_event_not_before_deadline_timestamp_seconds",
        "cph_encode_server_status",
        "cph_encode_server_state",
        "cph_server_phone_capacity",
    }
)
# Series that carry region and project_id themselves.
PER_PROJECT = frozenset(
    {
        "cph_server_info",
        "cph_up",
        "cph_phones_up",
        "cph_scheduled_events_up",
        "cph_encode_servers_up",
        "cph_phone_models_up",
    }
)
TARGET = 'job=~"$job",instance=~"$instance"'
PROJECT = 'region=~"$region",project_id=~"$project_id"'
PROBLEM_STATES = "abnormal|frozen|stop_failed|unknown"


def _template(name: str) -> dict[str, Any]:
    text = (
        resources.files("cph_exporter.mixin")
        .joinpath("templates")
        .joinpath(name)
        .read_text("utf-8")
    )
    board: dict[str, Any] = json.loads(text)
    return board


def _walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_walk(panel.get("panels", [])))
    return out


def _selectors(config: MixinConfig) -> tuple[str, str]:
    """The matchers for the exporter's own series, and for series with region/project_id."""
    base = ",".join(m for m in (config.selector, TARGET) if m)
    return base, f"{base},{PROJECT}"


def _filter(expr: str, config: MixinConfig, by_project: bool) -> str:
    target, project = _selectors(config)
    expr = add_matchers(expr, project, only=PER_PROJECT)
    expr = add_matchers(expr, target, skip=PER_PROJECT)
    if by_project:
        info = f"on (job, instance, server_id) cph_server_info{{{project}}}"
        expr = restrict(expr, PER_SERVER, info)
    return expr


def _variable(name: str, label: str, query: str, hide: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "current": {},
        "hide": hide,
        "options": [],
        "allValue": ".*",
    }


def _variables(config: MixinConfig) -> list[dict[str, Any]]:
    sel = f"{config.selector}," if config.selector else ""
    return [
        _variable("job", "Job", f"label_values({_braces('cph_up', config.selector)}, job)"),
        _variable("instance", "Exporter", f'label_values(cph_up{{{sel}job=~"$job"}}, instance)'),
        _variable("region", "Region", f"label_values(cph_server_info{{{sel}{TARGET}}}, region)"),
        _variable(
            "project_id",
            "Project",
            f'label_values(cph_server_info{{{sel}{TARGET},region=~"$region"}}, project_id)',
        ),
    ]


def problem_panels(y: int, phones: bool) -> list[dict[str, Any]]:
    """The row on problems and changes over the dashboard's time range (unfiltered queries)."""
    info = "on (job, instance, server_id) cph_server_info"
    state_now = "group by (job, instance, server_id, state) (cph_server_state == 1)"
    flavour_phones = [
        panel_target(
            "sum by (server_model_name, phone_model_name) (cph_server_phones * on (job,"
            " instance, server_id) group_left (server_model_name, phone_model_name) group by"
            " (job, instance, server_id, server_model_name, phone_model_name) (cph_server_info))",
            "__auto",
            "B",
            table=True,
        )
    ]
    if not phones:
        flavour_phones = []
    return [
        {
            "id": 50,
            "type": "row",
            "title": "Problems and changes over the time range",
            "gridPos": grid(0, y, 24, 1),
            "collapsed": False,
            "panels": [],
        },
        table(
            51,
            "Top servers by problem time",
            "The servers that spent the most time abnormal, frozen, failed to stop or in an"
            " undocumented status over the dashboard's time range.",
            grid(0, y + 1, 12, 8),
            [
                panel_target(
                    "topk(10, sum by (job, instance, server_id, server_name, availability_zone)"
                    f' (avg_over_time(cph_server_state{{state=~"{PROBLEM_STATES}"}}[$__range])'
                    f" and {info}) * $__range_s > 0)",
                    "__auto",
                    "A",
                    table=True,
                )
            ],
            {"Value": "problem time", "server_name": "server", "availability_zone": "AZ"},
            unit="s",
        ),
        table(
            52,
            "Status changes over the range (flapping)",
            "How often each server's status code changed over the dashboard's time range; a"
            " server that changes often is flapping.",
            grid(12, y + 1, 12, 8),
            [
                panel_target(
                    "topk(10, max by (job, instance, server_id, server_name)"
                    f" (changes(cph_server_status[$__range]) and {info}))",
                    "__auto",
                    "A",
                    table=True,
                )
            ],
            {"Value": "status changes", "server_name": "server"},
        ),
        table(
            53,
            "Time in the current state",
            "How long ago each server last changed (its update_time in the CPH API), with its"
            " current state; servers whose API answer has no update_time are missing.",
            grid(0, y + 9, 12, 8),
            [
                panel_target(
                    "time() - max by (job, instance, server_id, server_name, state)"
                    " (cph_server_updated_timestamp_seconds * on (job, instance, server_id)"
                    f" group_left (state) {state_now})",
                    "__auto",
                    "A",
                    table=True,
                )
            ],
            {"Value": "in state for", "server_name": "server"},
            unit="s",
        ),
        table(
            54,
            "Capacity by server and phone flavour",
            "Servers, and the cloud phones on them, per server model and phone flavour.",
            grid(12, y + 9, 12, 8),
            [
                panel_target(
                    "count by (server_model_name, phone_model_name) (cph_server_info)",
                    "__auto",
                    "A",
                    table=True,
                ),
                *flavour_phones,
            ],
            {
                "Value #A": "servers",
                "Value #B": "phones",
                "server_model_name": "server model",
                "phone_model_name": "phone flavour",
            },
        ),
        stat(
            55,
            "Servers created over the range",
            "Servers whose creation time falls in the dashboard's time range.",
            grid(0, y + 17, 6, 4),
            "count(cph_server_created_timestamp_seconds > time() - $__range_s) or vector(0)",
            "created",
        ),
        stat(
            56,
            "Servers gone over the range",
            "Servers that were exported during the dashboard's time range and are not now:"
            " deleted, or moved to another shard or exporter.",
            grid(6, y + 17, 6, 4),
            "count(last_over_time(cph_server_status[$__range]) unless on (job, instance,"
            " server_id) cph_server_status) or vector(0)",
            "gone",
        ),
        table(
            57,
            "CPH alerts firing now",
            "The CPH alerts this Prometheus is firing now (the ALERTS series), per alert"
            " and labels; see docs/runbooks.md for what to do.",
            grid(12, y + 17, 12, 8),
            [
                panel_target(
                    'ALERTS{alertname=~"Cph.*",alertstate="firing",job=~"$job|",'
                    'instance=~"$instance|"}',
                    "__auto",
                    "A",
                    table=True,
                )
            ],
            {"Value": "firing", "server_name": "server", "availability_zone": "AZ"},
        ),
    ]


def _drop_row(panels: list[dict[str, Any]], title_start: str) -> list[dict[str, Any]]:
    """`panels` without the row whose title starts with `title_start` and its panels."""
    out: list[dict[str, Any]] = []
    dropping = False
    for panel in panels:
        if panel.get("type") == "row":
            dropping = panel["title"].startswith(title_start)
        if not dropping:
            out.append(panel)
    return out


def _insert(
    panels: list[dict[str, Any]], before_title: str, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`new` placed before the row titled `before_title`, the rest moved down."""
    index = next(i for i, p in enumerate(panels) if p.get("title") == before_title)
    y = panels[index]["gridPos"]["y"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in new) - y
    for panel in _walk(panels[index:]):
        panel["gridPos"]["y"] += height
    return panels[:index] + new + panels[index:]


def _finish(board: dict[str, Any], config: MixinConfig, time_from: str, by_project: bool) -> None:
    d = config.dashboards
    board["editable"] = d.editable
    board["refresh"] = d.refresh
    board["time"] = {"from": time_from, "to": "now"}
    for panel in _walk(board["panels"]):
        for target in panel.get("targets", []):
            if "cph_" in target.get("expr", ""):
                target["expr"] = _filter(target["expr"], config, by_project)
    variables = board["templating"]["list"]
    for var in variables:
        if var["type"] == "query":
            query = _filter(var["query"]["query"], config, by_project)
            var["query"]["query"] = var["definition"] = query
    board["templating"]["list"] = variables[:1] + _variables(config) + variables[1:]


def fleet_overview(config: MixinConfig) -> dict[str, Any]:
    board = _template(FLEET)
    panels: list[dict[str, Any]] = board["panels"]
    if not config.dashboards.phones:
        panels = _drop_row(panels, "Cloud phones")
    if not config.dashboards.cloud_eye:
        panels = _drop_row(panels, "Cloud Eye")
    row = next(p for p in panels if p.get("title") == "Exporter health")
    panels = _insert(
        panels, "Exporter health", problem_panels(row["gridPos"]["y"], config.dashboards.phones)
    )
    problems = "Problems and changes over the time range"
    if config.dashboards.encoding:
        y = next(p for p in panels if p.get("title") == problems)["gridPos"]["y"]
        panels = _insert(panels, problems, encoding_row(y))
    if config.dashboards.maintenance:
        y = next(p for p in panels if p.get("title") == "Encoding" or p.get("title") == problems)
        panels = _insert(panels, y["title"], maintenance_row(config, y["gridPos"]["y"]))
    board["panels"] = panels
    # The AZ variable lists the zones of the selected regions and projects.
    (az,) = [v for v in board["templating"]["list"] if v["name"] == "az"]
    az["query"]["query"] = "label_values(cph_server_info, availability_zone)"
    _finish(board, config, config.dashboards.fleet_time_from, by_project=True)
    return board


def server_detail(config: MixinConfig) -> dict[str, Any]:
    board = _template(DETAIL)
    if config.dashboards.phones:
        # Under the phone list, in the "Cloud phones" row (the template's last).
        bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
        board["panels"] += detail_capacity(bottom)
    else:
        board["panels"] = _drop_row(board["panels"], "Cloud phones")
    if config.dashboards.maintenance:
        phones = [p for p in board["panels"] if p.get("title") == "Cloud phones"]
        if phones:
            events = detail_events(phones[0]["gridPos"]["y"])
            board["panels"] = _insert(board["panels"], "Cloud phones", events)
        else:
            bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
            board["panels"] += detail_events(bottom)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    variables["az"]["query"]["query"] = "label_values(cph_server_info, availability_zone)"
    # The server picker offers the servers of the selected targets, regions and projects.
    server = variables["server"]["query"]
    server["query"] = (
        'query_result(cph_server_status{availability_zone=~"$az"} and on (job, instance,'
        " server_id) cph_server_info)"
    )
    _finish(board, config, config.dashboards.detail_time_from, by_project=False)
    return board


def dashboards(config: MixinConfig) -> dict[str, dict[str, Any]]:
    return {FLEET: fleet_overview(config), DETAIL: server_detail(config)}


def render(board: dict[str, Any]) -> str:
    return json.dumps(copy.deepcopy(board), indent=2, ensure_ascii=False) + "\n"


def _braces(metric: str, matchers: str) -> str:
    return f"{metric}{{{matchers}}}" if matchers else metric
