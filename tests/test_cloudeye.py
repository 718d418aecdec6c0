"""The "Cloud Eye side by side" dashboard row: cloudeye-exporter's series joined with ours.

A Prometheus without cloudeye-exporter has no `huaweicloud_sys_ecp_*` series, so the generic
dashboard test skips these queries. Here they run against series made for the purpose:
promtool's PromQL unit test pins the join's exact output, and a real Prometheus scraping the
exporter on its simulator plus a stand-in cloudeye-exporter runs every Cloud Eye query.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cph_exporter.simulator import documented_examples, generate_fleet
from tests.helpers.net import free_port
from tests.helpers.processes import start, stop, wait_for
from tests.helpers.prometheus import GRAFANA_VARS, api, grafana_query
from tests.helpers.rules import CLOUD_EYE_METRIC, dashboard_queries

REPO = Path(__file__).resolve().parents[1]
FLEET_BOARD = REPO / "grafana" / "dashboards" / "cph-fleet-overview.json"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
# Where the join is documented, in its "Cloud Eye side by side" section.
DASHBOARDS_DOC = REPO / "docs" / "dashboards.md"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
SERVERS = 6

# cloudeye-exporter's SYS.ECP metrics (its cloudservice_metrics/SYS.ECP.md), all with the one
# dimension instance_id = the CPH server_id; exported as huaweicloud_sys_ecp_<metric>.
SYS_ECP_METRICS = {
    "cpu_util",
    "disk_read_bytes_rate",
    "disk_write_bytes_rate",
    "disk_read_requests_rate",
    "disk_write_requests_rate",
    "network_incoming_bytes_aggregate_rate",
    "network_outgoing_bytes_aggregate_rate",
    "network_vm_connections",
    "network_vm_bandwidth_in",
    "network_vm_bandwidth_out",
    "network_vm_pps_in",
    "network_vm_pps_out",
    "network_vm_newconnections",
}
# The join as docs/dashboards.md documents it and every Cloud Eye query spells it.
RELABEL = '"server_id", "$1", "instance_id", "(.*)")'
JOIN = "* on (server_id) group_left (server_name, availability_zone)"
# An ECS that Cloud Eye reports in the same project but that is no CPH server.
STRANGER = "ecs-not-a-cph-server"


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def cloud_eye_queries() -> list[str]:
    return [
        q
        for path in DASHBOARDS
        for q in dashboard_queries(json.loads(path.read_text()))
        if CLOUD_EYE_METRIC.search(q)
    ]


def substitute(query: str, values: dict[str, str]) -> str:
    """Grafana's interpolation: known variables only; `$1` and the like stay as they are."""

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1) or match.group(2), match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, query)


def documented_join() -> str:
    """The PromQL block of docs/dashboards.md's "Cloud Eye side by side" section."""
    text = DASHBOARDS_DOC.read_text(encoding="utf-8")
    section = text.split("## Cloud Eye side by side", 1)
    assert len(section) == 2, "docs/dashboards.md lacks the 'Cloud Eye side by side' section"
    match = re.search(r"```promql\n(.*?)```", section[1].split("\n## ", 1)[0], re.S)
    assert match, "the Cloud Eye section shows no ```promql block"
    return match.group(1).strip()


def test_cloud_eye_panels_sit_in_one_collapsed_row() -> None:
    board = json.loads(FLEET_BOARD.read_text())
    rows = [p for p in board["panels"] if p["type"] == "row" and "Cloud Eye" in p["title"]]
    assert len(rows) == 1, "expected one Cloud Eye row in the fleet overview"
    (row,) = rows
    # Collapsed: nothing is queried until someone opens it, and it is one closed line.
    assert row["collapsed"] is True and row["panels"]
    inside = {p["id"] for p in row["panels"]}
    for path in DASHBOARDS:
        for panel in all_panels(json.loads(path.read_text())["panels"]):
            exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []))
            if CLOUD_EYE_METRIC.search(exprs):
                assert path == FLEET_BOARD and panel["id"] in inside, panel["title"]
    for panel in row["panels"]:
        assert "cloudeye-exporter" in panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"].get("noValue"), panel["title"]


def test_cloud_eye_queries_use_documented_metrics_and_the_join() -> None:
    queries = cloud_eye_queries()
    assert len(queries) >= 4
    used = {
        m.removeprefix("huaweicloud_sys_ecp_") for q in queries for m in CLOUD_EYE_METRIC.findall(q)
    }
    assert "cpu_util" in used
    assert used <= SYS_ECP_METRICS, f"not SYS.ECP metrics: {used - SYS_ECP_METRICS}"
    for query in queries:
        for metric in CLOUD_EYE_METRIC.findall(query):
            # every Cloud Eye series is relabelled and joined before it is shown
            assert f"label_replace({metric}, {RELABEL}" in query, query
        assert JOIN in query and "cph_server_info" in query, query
    documented = documented_join()
    assert f"label_replace(huaweicloud_sys_ecp_cpu_util, {RELABEL}" in documented
    assert JOIN in documented


def promtool_case(expr: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    rendered = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {
        "expr": expr,
        "eval_time": "2m",
        "exp_samples": [{"labels": f"{{{rendered}}}", "value": value}],
    }


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's 'prometheus'")
def test_join_names_the_server_promtool(tmp_path: Path) -> None:
    """promtool evaluates the documented join and the dashboard's table on synthetic series."""
    cloudeye = {"job": "cloudeye", "instance": "cloudeye:8087", "unit": "%"}
    server = {"server_id": "srv-a", "server_name": "phone-host-1", "availability_zone": "az-1a"}
    info = server | {"network_version": "v2", "server_model_name": "physical.rx1.xlarge"}
    series = [
        (f'huaweicloud_sys_ecp_cpu_util{{instance_id="srv-a",{labels(cloudeye)}}}', "42x4"),
        (f'huaweicloud_sys_ecp_cpu_util{{instance_id="{STRANGER}",{labels(cloudeye)}}}', "7x4"),
        # Two exporter replicas report the same server: the join must not be many-to-many.
        (f'cph_server_info{{{labels(info)},job="cph",instance="exporter-1:9852"}}', "1x4"),
        (f'cph_server_info{{{labels(info)},job="cph",instance="exporter-2:9852"}}', "1x4"),
        (
            f'cph_server_state{{{labels(server)},state="normal",job="cph",instance="exporter-1:9852"}}',
            "1x4",
        ),
        (
            f'cph_server_state{{{labels(server)},state="abnormal",job="cph",instance="exporter-1:9852"}}',
            "0x4",
        ),
    ]
    (table,) = [q for q in cloud_eye_queries() if "cpu_util" in q and "group_left (state)" in q]
    joined = cloudeye | server | {"instance_id": "srv-a"}
    spec = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    promtool_case(documented_join(), joined, 42),
                    promtool_case(
                        substitute(table, GRAFANA_VARS | {"az": ".*"}),
                        joined | {"state": "normal"},
                        42,
                    ),
                ],
            }
        ],
    }
    (tmp_path / "cloudeye_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "cloudeye_test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def labels(values: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in values.items())


def fleet() -> list[dict[str, Any]]:
    """The servers `cph-exporter --simulate --simulate.servers SERVERS` serves."""
    return generate_fleet(SERVERS) + documented_examples()


class _CloudEyeStandIn(BaseHTTPRequestHandler):
    """Serves every SYS.ECP metric as cloudeye-exporter names it, for the fleet and a stranger."""

    def do_GET(self) -> None:
        lines = []
        ids = [s["server_id"] for s in fleet()] + [STRANGER]
        for metric in sorted(SYS_ECP_METRICS):
            name = f"huaweicloud_sys_ecp_{metric}"
            lines.append(f"# TYPE {name} gauge")
            lines += [f'{name}{{instance_id="{i}",unit="x"}} {n + 1}' for n, i in enumerate(ids)]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not found: install Debian's 'prometheus' package")
    workdir = tmp_path_factory.mktemp("cloudeye")
    cloudeye = ThreadingHTTPServer(("127.0.0.1", 0), _CloudEyeStandIn)
    threading.Thread(target=cloudeye.serve_forever, daemon=True).start()
    exporter_address = f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "cph_exporter", "--simulate", "--simulate.servers", str(SERVERS)]
    exporter = start(
        [*args, "--web.listen-address", exporter_address],
        workdir / "exporter.log",
        f"http://{exporter_address}/-/healthy",
    )
    jobs = {"cph": exporter_address, "cloudeye": f"127.0.0.1:{cloudeye.server_address[1]}"}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in jobs.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    try:
        proc = start(
            [
                str(PROMETHEUS),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            workdir / "prometheus.log",
            f"{url}/-/ready",
        )
        try:
            wait_for(
                "both targets up and the servers scraped",
                lambda: (
                    len(api(url, "query", query="cph_server_info")["result"]) == len(fleet())
                    and len(api(url, "query", query="huaweicloud_sys_ecp_cpu_util")["result"])
                    == len(fleet()) + 1
                ),
            )
            yield url
        finally:
            stop(proc)
    finally:
        stop(exporter)
        cloudeye.shutdown()


@pytest.mark.parametrize("query", cloud_eye_queries())
def test_cloud_eye_query_names_every_cph_server(prometheus: str, query: str) -> None:
    names = {s["server_id"]: s["server_name"] for s in fleet()}
    expr, _ = grafana_query(substitute(query, GRAFANA_VARS | {"az": ".*"}))
    result = api(prometheus, "query", query=expr)["result"]
    seen = set()
    for series in result:
        metric = series["metric"]
        assert metric.get("server_id") in names, f"{metric} is no simulated server: {expr}"
        assert metric["server_name"] == names[metric["server_id"]], metric
        seen.add(metric["server_id"])
    # Every server appears (the stranger never does), once per series the panel draws.
    assert seen == set(names), f"missing {set(names) - seen}: {expr}"
