"""Asking a real Prometheus, and the values Grafana fills into dashboard queries."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.helpers.net import free_port
from tests.helpers.processes import start

# Grafana's built-in variables, and the dashboards' target and project variables set to "All".
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300"}
GRAFANA_VARS |= {"job": ".*", "instance": ".*", "region": ".*", "project_id": ".*"}


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


def start_prometheus(
    binary: str, workdir: Path, config: dict[str, Any], *flags: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus on a free loopback port with `config`, once it is ready: (process, URL)."""
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        *flags,
    ]
    return start(args, workdir / "prometheus.log", f"{url}/-/ready"), url
