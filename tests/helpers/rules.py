"""The alert rules and dashboards as files: their metrics, queries and documented contract."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
METRICS_DOC = REPO / "docs" / "metrics.md"


# The exporter's metric contract. Used when docs/metrics.md has no metrics table.
CONTRACT = {
    "cph_server_status",
    "cph_server_state",
    "cph_server_info",
    "cph_server_bandwidth_size_bytes_per_second",
    "cph_server_volume_size_bytes",
    "cph_server_addresses",
    "cph_server_created_timestamp_seconds",
    "cph_server_updated_timestamp_seconds",
    "cph_up",
    "cph_exporter_build_info",
    "cph_exporter_api_requests_total",
    "cph_exporter_api_request_duration_seconds",
    "cph_exporter_refresh_duration_seconds",
    "cph_exporter_last_refresh_success_timestamp_seconds",
    "cph_exporter_data_age_seconds",
    "cph_exporter_cache_ttl_seconds",
    "cph_exporter_detail_fetch_failures_total",
    "cph_exporter_servers_without_details",
}


HISTOGRAMS = {"cph_exporter_api_request_duration_seconds"}


METRIC_TOKEN = re.compile(r"\bcph_[a-z0-9_]+\b")


# Series of Huawei's cloudeye-exporter (namespace SYS.ECP) that the optional "Cloud Eye side
# by side" row joins with ours. A Prometheus without cloudeye-exporter has none, so those
# queries are tested on synthetic series (tests/test_cloudeye.py), not against the simulator.
CLOUD_EYE_METRIC = re.compile(r"\bhuaweicloud_sys_ecp_[a-z0-9_]+\b")


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression and variable query of a dashboard (rows included)."""
    queries: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            queries.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(board.get("panels", []))
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def documented_metrics() -> set[str]:
    """Metric names in docs/metrics.md's metrics table (table rows only), if there is one."""
    if not METRICS_DOC.exists():
        return set()
    rows = [line for line in METRICS_DOC.read_text().splitlines() if line.lstrip().startswith("|")]
    return {m for row in rows for m in re.findall(r"`(cph_[a-z0-9_]+)", row)}
