"""How the exporter reaches the API: TLS with its own CA, proxies, and its own scrape cap."""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
)
from tests.helpers.fleet import fleet
from tests.helpers.net import serve
from tests.helpers.pki import Pki, make_ca
from tests.helpers.samples import assert_complete, samples
from tests.helpers.scrape import ExporterFactory, scrape


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_ca("API test CA")


@pytest.fixture
def tls_simulator(pki: Pki, tmp_path: Path) -> Iterator[CphSimulator]:
    issued = pki.issue("cph-api", server=True)
    (tmp_path / "api.crt").write_bytes(issued.cert_pem)
    (tmp_path / "api.key").write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "api.crt", tmp_path / "api.key")
    sim = CphSimulator(
        fleet(), {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}, SIMULATOR_PROJECT_ID, tls=context
    )
    sim.start()
    yield sim
    sim.stop()


def test_api_certificate_checked_against_the_ca_file(
    tls_simulator: CphSimulator, make_exporter: ExporterFactory, pki: Pki, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.cert_pem)
    assert tls_simulator.url.startswith("https://")
    got = samples(scrape(make_exporter(tls_simulator, ca_file=str(ca), phones=False)))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())


def test_unknown_api_certificate_is_refused(
    tls_simulator: CphSimulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    got = samples(scrape(make_exporter(tls_simulator, phones=False)))
    assert got["cph_up"][0][1] == 0
    assert "TLS: certificate verify failed" in caplog.text
    assert not tls_simulator.calls  # nothing signed ever reached the impostor's handler


def test_insecure_skip_verify_works_and_says_so(
    tls_simulator: CphSimulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    exporter = make_exporter(tls_simulator, insecure_skip_verify=True, phones=False)
    assert samples(scrape(exporter))["cph_up"][0][1] == 1
    assert "NOT verified" in caplog.text


class _ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: passes the request on unchanged (the signature covers it)."""

    seen: list[str]

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        url = urlsplit(self.path)  # a proxy gets the absolute URL
        upstream = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request("GET", url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Proxy", (_ForwardingProxy,), {"seen": seen})
    for url in serve(handler):
        yield url, seen


def test_requests_go_through_the_proxy_from_the_environment(
    simulator: CphSimulator,
    make_exporter: ExporterFactory,
    proxy: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, seen = proxy
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    got = samples(scrape(make_exporter(simulator, phones=False)))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())
    to_api = [path for path in seen if path.startswith(simulator.url)]  # not the test's scrape
    assert len(to_api) == simulator.calls["ListCloudPhoneServers"] + len(fleet())


def test_no_proxy_bypasses_it(
    simulator: CphSimulator,
    make_exporter: ExporterFactory,
    proxy: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert samples(scrape(make_exporter(simulator, phones=False)))["cph_up"][0][1] == 1
    assert not any(path.startswith(simulator.url) for path in seen)


def test_scrapes_beyond_the_cap_are_all_answered_at_once(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    """One slot, three scrapes during a slow refresh: one waits for it, and the others are
    answered at once, from the last data or with a 503 while the slot renders (which of the
    two depends on timing); none is dropped or left waiting behind the first."""
    simulator.faults.latency = 1.0  # the refresh takes seconds: scrapes overlap for sure
    exporter = make_exporter(simulator, max_requests=1, phones=False)
    barrier = threading.Barrier(3)
    answers: list[requests.Response] = []

    def scrape_together() -> None:
        barrier.wait()
        answers.append(requests.get(exporter.url + "/metrics", timeout=30))

    threads = [threading.Thread(target=scrape_together) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = [answer.status_code for answer in answers]
    assert len(codes) == 3 and set(codes) <= {200, 503} and 200 in codes, codes
    assert all("Too many concurrent scrapes" in a.text for a in answers if a.status_code == 503)
