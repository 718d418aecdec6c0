"""End to end through Alertmanager: an abnormal server becomes a notification.

The simulator runs with its runtime control (`python -m cph_exporter.simulator --control`),
the exporter reads it, a real Prometheus evaluates the mixin's rules with `for` cut to
seconds, and a real Alertmanager (Debian's prometheus-alertmanager) with the inhibit rules of
deploy/alertmanager.yml notifies a webhook served by this test. The simulated project is the
oracle for which servers must be notified; the control turns servers normal or abnormal and
breaks the API to check resolved notifications and inhibition.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cph_exporter.mixin import parse_config
from cph_exporter.mixin.generate import outputs
from cph_exporter.mixin.settings import ALERT_DEFAULTS
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    simulated_project,
)
from tests.helpers.net import free_port
from tests.helpers.processes import start, stop, tail, wait_for
from tests.helpers.prometheus import start_prometheus

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
SERVERS = 60
DEADLINE = 120.0  # generous on a loaded machine; things take seconds when they work

pytestmark = [
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="needs Debian's 'prometheus' and 'prometheus-alertmanager' packages",
    ),
    pytest.mark.timeout(600),
]

# `for` per alert, shortened for the test. The sources of inhibitions fire before their
# targets, as with the defaults (zone and server before phones).
SHORT_FOR = dict.fromkeys(ALERT_DEFAULTS, "3s")
SHORT_FOR |= {"CphAvailabilityZoneDegraded": "1s", "CphApiDown": "1s"}
SHORT_FOR |= {n: "6s" for n in ALERT_DEFAULTS if n.startswith("CphServerPhones")}
SETTLE = 4.0  # seconds: past Alertmanager's group wait and interval, for "nothing came"


@dataclass
class Webhook:
    url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [a for n in self.notifications for a in n["alerts"]]
        return [a for a in found if status is None or a["status"] == status]

    def named(self, name: str, status: str = "firing") -> list[dict[str, Any]]:
        return [a for a in self.alerts(status) if a["labels"]["alertname"] == name]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hook.lock:
                hook.notifications.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/notify"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("simulator") / "simulator.log"
    args = [sys.executable, "-m", "cph_exporter.simulator", "--listen", "127.0.0.1:0"]
    args += ["--servers", str(SERVERS), "--examples", "--phones", "--control"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("wb"), cwd=REPO)
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()  # the simulator prints its URL first
    try:
        assert url.startswith("http://127.0.0.1:"), f"{url!r}\n{tail(log)}"
        yield url
    finally:
        stop(proc)
        proc.stdout.close()


def control(simulator: str, path: str, payload: dict[str, Any]) -> None:
    response = requests.post(f"{simulator}/_control/{path}", json=payload, timeout=10)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def exporter(simulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    address = f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "cph_exporter", "--cph.endpoint", simulator]
    args += ["--cph.region", SIMULATOR_REGION, "--cph.project-id", SIMULATOR_PROJECT_ID]
    args += ["--cache.ttl", "2s", "--web.listen-address", address]
    env = {
        "PATH": "/usr/bin:/bin",
        "HUAWEICLOUD_SDK_AK": SIMULATOR_ACCESS_KEY,
        "HUAWEICLOUD_SDK_SK": SIMULATOR_SECRET_KEY,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    try:
        wait_for(
            "the exporter to be ready",
            lambda: proc.poll() is None and requests.get(f"http://{address}/-/ready").ok,
            timeout=DEADLINE,
        )
        yield address
    finally:
        stop(proc)
    assert SIMULATOR_SECRET_KEY not in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def alertmanager(webhook: Webhook, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    example = yaml.safe_load((REPO / "deploy" / "alertmanager.yml").read_text())
    config = {
        # One notification per alert ('...'), quickly: the waits are the test's only change.
        "route": {
            "receiver": "test",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}
        ],
        "inhibit_rules": example["inhibit_rules"],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        str(ALERTMANAGER),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--cluster.listen-address=",  # no gossip port: loopback only, one instance
    ]
    proc = start(args, workdir / "alertmanager.log", f"{url}/-/ready")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prometheus(
    exporter: str, alertmanager: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    mixin = parse_config({"alerts": {n: {"for": d} for n, d in SHORT_FOR.items()}})
    (workdir / "alerts.yml").write_text(outputs(mixin)["prometheus/alerts.yml"])
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [{"job_name": "cph", "static_configs": [{"targets": [exporter]}]}],
    }
    proc, url = start_prometheus(str(PROMETHEUS), workdir, config, "--rules.alert.resend-delay=1s")
    try:
        yield url
    finally:
        stop(proc)


def servers() -> list[dict[str, Any]]:
    fleet, _ = simulated_project(SERVERS, 0, examples=True)
    return fleet


def ids_with_status(status: int) -> set[str]:
    return {s["server_id"] for s in servers() if int(s["status"]) == status}


def firing_in_prometheus(prometheus: str, name: str) -> set[str]:
    query = f'ALERTS{{alertname="{name}",alertstate="firing"}}'
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10)
    return {s["metric"].get("server_id", "") for s in response.json()["data"]["result"]}


def inhibited_in_alertmanager(alertmanager: str, name: str) -> set[str]:
    response = requests.get(
        f"{alertmanager}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=10
    )
    return {
        a["labels"].get("server_id", "")
        for a in response.json()
        if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
    }


def notified_ids(webhook: Webhook, name: str, status: str = "firing") -> set[str]:
    return {a["labels"].get("server_id", "") for a in webhook.named(name, status)}


@pytest.fixture(scope="module")
def notified(webhook: Webhook, prometheus: str) -> Webhook:
    """The webhook once the abnormal and frozen servers have been notified."""
    abnormal, frozen = ids_with_status(2), ids_with_status(8)
    assert abnormal and frozen, "the simulated project lacks abnormal or frozen servers"

    def arrived() -> bool:
        return (
            notified_ids(webhook, "CphServerAbnormal") >= abnormal
            and notified_ids(webhook, "CphServerFrozen") >= frozen
        )

    wait_for("abnormal and frozen notifications", arrived, timeout=DEADLINE)
    return webhook


def test_notifications_for_exactly_the_abnormal_and_frozen_servers(notified: Webhook) -> None:
    by_id = {s["server_id"]: s for s in servers()}
    for name, status, severity in (
        ("CphServerAbnormal", 2, "critical"),
        ("CphServerFrozen", 8, "warning"),
    ):
        alerts = notified.named(name)
        assert {a["labels"]["server_id"] for a in alerts} == ids_with_status(status), name
        for alert in alerts:
            labels, annotations = alert["labels"], alert["annotations"]
            server = by_id[labels["server_id"]]
            assert labels["server_name"] == server["server_name"]
            assert labels["availability_zone"] == server["availability_zone"]
            assert labels["severity"] == severity and labels["job"] == "cph"
            for key in ("summary", "description"):
                assert server["server_name"] in annotations[key], (key, alert)
                assert server["availability_zone"] in annotations[key], (key, alert)
            assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{name.lower()}")


def test_phone_alerts_of_an_abnormal_server_are_inhibited(
    notified: Webhook, prometheus: str, alertmanager: str
) -> None:
    abnormal = ids_with_status(2)
    _, phones = simulated_project(SERVERS, 0, examples=True)
    assert {p["server_id"] for p in phones} & abnormal, "no abnormal server has phones"
    name = "CphServerPhonesStuck"  # the abnormal server's phone is resetting

    def held_back() -> bool:
        firing = firing_in_prometheus(prometheus, name)
        return bool(abnormal & firing) and abnormal & firing <= inhibited_in_alertmanager(
            alertmanager, name
        )

    wait_for("the abnormal server's phone alert to fire and be inhibited", held_back, DEADLINE)
    # phone alerts of other servers do reach the webhook
    wait_for("other phone notifications", lambda: notified_ids(notified, name) - abnormal)
    time.sleep(SETTLE)
    assert not notified_ids(notified, name) & abnormal


def test_a_server_turned_normal_is_resolved(notified: Webhook, simulator: str) -> None:
    server_id = min(ids_with_status(2))
    control(simulator, f"servers/{server_id}", {"status": 5})
    wait_for(
        "the resolved notification",
        lambda: server_id in notified_ids(notified, "CphServerAbnormal", "resolved"),
        timeout=DEADLINE,
    )
    (resolved,) = [
        a
        for a in notified.named("CphServerAbnormal", "resolved")
        if a["labels"]["server_id"] == server_id
    ]
    assert resolved["annotations"]["runbook_url"].endswith("#cphserverabnormal")
    assert resolved["endsAt"] >= resolved["startsAt"]


def test_a_zone_outage_pages_once(
    notified: Webhook, simulator: str, prometheus: str, alertmanager: str
) -> None:
    zone = "sim-region-1b"
    members = {s["server_id"] for s in servers() if s["availability_zone"] == zone}
    assert len(members) >= 4 and not members & ids_with_status(2)
    for server_id in sorted(members):
        control(simulator, f"servers/{server_id}", {"status": 2})

    def zone_paged() -> bool:
        zones = {
            a["labels"]["availability_zone"] for a in notified.named("CphAvailabilityZoneDegraded")
        }
        return zone in zones

    wait_for("the zone notification", zone_paged, timeout=DEADLINE)
    (page,) = [
        a
        for a in notified.named("CphAvailabilityZoneDegraded")
        if a["labels"]["availability_zone"] == zone
    ]
    assert page["labels"]["severity"] == "critical"
    assert page["annotations"]["runbook_url"].endswith("#cphavailabilityzonedegraded")

    def all_inhibited() -> bool:
        firing = firing_in_prometheus(prometheus, "CphServerAbnormal")
        held = inhibited_in_alertmanager(alertmanager, "CphServerAbnormal")
        return members <= firing and members <= held

    wait_for("the zone's server alerts to fire and be inhibited", all_inhibited, DEADLINE)
    time.sleep(SETTLE)
    assert not notified_ids(notified, "CphServerAbnormal") & members


def test_api_down_holds_back_the_staleness_alerts(
    notified: Webhook, simulator: str, prometheus: str, alertmanager: str
) -> None:
    control(simulator, "faults", {"list_fault": "html_503"})
    try:
        wait_for(
            "the CphApiDown notification",
            lambda: notified.named("CphApiDown"),
            timeout=DEADLINE,
        )

        def stale_inhibited() -> bool:
            firing = firing_in_prometheus(prometheus, "CphExporterDataStale")
            return bool(firing) and firing <= inhibited_in_alertmanager(
                alertmanager, "CphExporterDataStale"
            )

        wait_for("CphExporterDataStale to fire and be inhibited", stale_inhibited, DEADLINE)
        time.sleep(SETTLE)
        assert not notified.named("CphExporterDataStale")
    finally:
        control(simulator, "faults", {"list_fault": None})
