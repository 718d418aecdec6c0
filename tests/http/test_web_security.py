"""The exporter's own endpoint behind --web.config.file: TLS and basic auth with real clients."""

from __future__ import annotations

import subprocess
import sys

import requests

from cph_exporter.simulator import CphSimulator
from tests.helpers.pki import HASH, PASSWORD, TLS_CONFIG, Files
from tests.helpers.scrape import ExporterFactory

AUTH_CONFIG = (
    TLS_CONFIG
    + f"""\
basic_auth_users:
  prometheus: {HASH}
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
"""
)


def test_tls_and_basic_auth_guard_every_endpoint(
    simulator: CphSimulator, make_exporter: ExporterFactory, files: Files
) -> None:
    files.server_cert()
    config = files.config_text(AUTH_CONFIG)
    exporter = make_exporter(simulator, web_config_file=str(config))
    assert exporter.url.startswith("https://")
    ca = str(files.dir / "ca.crt")
    for path in ("/metrics", "/"):
        denied = requests.get(exporter.url + path, verify=ca, timeout=30)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"] == "Basic"
        wrong = requests.get(
            exporter.url + path, verify=ca, auth=("prometheus", "nope"), timeout=30
        )
        assert wrong.status_code == 401
        stranger = requests.get(exporter.url + path, verify=ca, auth=("eve", PASSWORD), timeout=30)
        assert stranger.status_code == 401
    ok = requests.get(
        exporter.url + "/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=30
    )
    assert ok.status_code == 200
    assert "cph_server_state" in ok.text
    assert ok.headers["X-Content-Type-Options"] == "nosniff"


def test_plain_http_to_a_tls_exporter_gets_nothing(
    simulator: CphSimulator, make_exporter: ExporterFactory, files: Files
) -> None:
    files.server_cert()
    exporter = make_exporter(simulator, web_config_file=str(files.config_text(TLS_CONFIG)))
    try:
        response = requests.get(exporter.url.replace("https", "http") + "/metrics", timeout=10)
    except requests.ConnectionError:
        return
    assert response.status_code >= 400 or "cph_" not in response.text


def test_bad_web_config_stops_the_start_with_one_line(files: Files) -> None:
    config = files.config_text("tls_server_config:\n  cert_file: missing.crt\n", valid=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cph_exporter",
            "--simulate",
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cph-exporter: --web.config.file: web config ")
    assert "Traceback" not in result.stderr
