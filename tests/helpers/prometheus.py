"""Asking a real Prometheus, and the values Grafana fills into dashboard queries."""

from __future__ import annotations

import re
from typing import Any

import requests

GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300"}


def api(prometheus: str, path: str, **params: Any) -> Any:
    response = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]


def grafana_query(query: str) -> tuple[str, str | None]:
    """A Grafana variable query as PromQL, and the label it reads (label_values)."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    if match:
        return f"group by ({match.group(2)}) ({match.group(1)})", match.group(2)
    match = re.fullmatch(r"query_result\((.*)\)", query.strip())
    return (match.group(1) if match else query), None
