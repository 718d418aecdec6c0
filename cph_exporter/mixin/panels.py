"""The panel pieces both dashboards are built of: queries, tables, stats and their places."""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel_target(expr: str, legend: str, ref: str, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"expr": expr, "legendFormat": legend, "refId": ref}
    if table:
        target |= {"format": "table", "instant": True, "range": False}
    else:
        target |= {"range": True, "instant": False}
    return target | {"datasource": dict(DATASOURCE), "editorMode": "code"}


def table(
    id_: int,
    title: str,
    description: str,
    grid: dict[str, int],
    targets: list[dict[str, Any]],
    rename: dict[str, str],
    unit: str = "none",
    *,
    hide: tuple[str, ...] = (),
    sort_by: str | None = None,
) -> dict[str, Any]:
    """A table of instant queries merged on their labels; `hide` drops columns and `sort_by`
    names the (renamed) column sorted on, ascending."""
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": False}]
    return {
        "id": id_,
        "type": "table",
        "title": title,
        "gridPos": grid,
        "datasource": dict(DATASOURCE),
        "description": description,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "__name__": True} | dict.fromkeys(hide, True),
                    "renameByName": rename,
                    "indexByName": {},
                },
            },
        ],
    }


def stat(
    id_: int,
    title: str,
    description: str,
    grid: dict[str, int],
    expr: str,
    legend: str,
    *,
    no_value: str | None = None,
) -> dict[str, Any]:
    """A stat of one query; `no_value` is shown when it returns nothing (a count of none)."""
    panel: dict[str, Any] = {
        "id": id_,
        "type": "stat",
        "title": title,
        "gridPos": grid,
        "datasource": dict(DATASOURCE),
        "description": description,
        "targets": [panel_target(expr, legend, "A")],
        "fieldConfig": {
            "defaults": {
                "unit": "none",
                "mappings": [],
                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }
    if no_value is not None:
        panel["fieldConfig"]["defaults"]["noValue"] = no_value
    return panel


def row(id_: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "row",
        "title": title,
        "gridPos": grid(0, y, 24, 1),
        "collapsed": False,
        "panels": [],
    }


def gauge(
    id_: int, title: str, description: str, grid: dict[str, int], expr: str, no_value: str
) -> dict[str, Any]:
    """A ratio (0 to 1) as a gauge: green, amber from 80 %, red when full."""
    steps = [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.8},
        {"color": "red", "value": 1},
    ]
    return {
        "id": id_,
        "type": "gauge",
        "title": title,
        "gridPos": grid,
        "datasource": dict(DATASOURCE),
        "description": description,
        "targets": [panel_target(expr, "__auto", "A")],
        "fieldConfig": {
            "defaults": {
                "unit": "percentunit",
                "min": 0,
                "max": 1,
                "noValue": no_value,
                "thresholds": {"mode": "absolute", "steps": steps},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
            "orientation": "auto",
        },
    }


def grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}
