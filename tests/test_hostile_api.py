"""An API that attacks the exporter: redirects elsewhere, floods, inflates, drips, echoes
secrets. Each test crosses one limit against a loopback stand-in and checks what the exporter
does: that call fails, `cph_up` turns 0, the log says why, nothing leaks, the last data stays."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from cph_exporter.app import Exporter
from cph_exporter.credentials.values import Credentials
from cph_exporter.settings.config import Config
from cph_exporter.settings.target_config import flag_target
from cph_exporter.simulator import SIMULATOR_PROJECT_ID, SIMULATOR_REGION, CphSimulator
from cph_exporter.startup import target_spec
from tests.helpers.fleet import GOOD_CREDENTIALS
from tests.helpers.hostile_api import SERVERS, Hostile
from tests.helpers.net import free_port, serve
from tests.helpers.samples import samples

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "".join(f"tok{i:04d}-{chr(97 + i % 26)}" for i in range(60))  # 600 characters
CREDENTIALS = Credentials("HOSTILEACCESSKEY00000001", "hsK9-qZ2vLw7Rm3T-xP8nB4cY6dF1gH0jU", TOKEN)
FRAGMENT = 16
CAPPED = "larger than --cph.max-response-size"


def fragments(*secrets: str) -> set[str]:
    return {s[i : i + FRAGMENT] for s in secrets for i in range(len(s) - FRAGMENT + 1)}


FORBIDDEN = fragments(CREDENTIALS.access_key, CREDENTIALS.secret_key, TOKEN)


def leaks(text: str) -> list[str]:
    return sorted(f for f in FORBIDDEN if f in text)


@pytest.fixture
def hostile() -> Iterator[str]:
    Hostile.mode, Hostile.mode_file, Hostile.seen = "ok", None, []
    Hostile.stop.clear()
    try:
        yield from serve(Hostile)
    finally:
        Hostile.stop.set()


class Elsewhere(BaseHTTPRequestHandler):
    """Another host: records whatever reaches it."""

    seen: list[dict[str, str]] = []  # noqa: RUF012

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers.items()))
        body = b'{"count": 0, "servers": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    Elsewhere.seen = []
    # Another name for loopback: to requests, another host.
    for url in serve(Elsewhere):
        yield url.replace("127.0.0.1", "localhost")


@pytest.fixture
def exporters() -> Iterator[Callable[..., Exporter]]:
    started: list[Exporter] = []

    def build(endpoint: str, **settings: Any) -> Exporter:
        settings.setdefault("max_requests_per_second", 0.0)
        settings.setdefault("phones", False)
        config = dataclasses.replace(
            Config(),
            listen_address="127.0.0.1:0",
            region=SIMULATOR_REGION,
            project_id=SIMULATOR_PROJECT_ID,
            endpoint=endpoint,
            **settings,
        )
        exporter = Exporter(config, lambda: CREDENTIALS)
        exporter.start()
        started.append(exporter)
        return exporter

    yield build
    for exporter in started:
        exporter.close()


def metrics(exporter: Exporter) -> str:
    response = requests.get(exporter.url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert leaks(response.text) == []
    return response.text


def up_values(exporter: Exporter) -> list[float]:
    return [value for _, value in samples(metrics(exporter))["cph_up"]]


def servers_shown(exporter: Exporter) -> set[str]:
    return {labels["server_id"] for labels, _ in samples(metrics(exporter))["cph_server_status"]}


def is_down(exporter: Exporter) -> bool:
    return up_values(exporter) == [0.0]


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Polls with a generous deadline: a loaded machine is slow, never wrong."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def warm_then(exporter: Exporter, mode: str) -> None:
    """Served well once, then `mode` from the next refresh on."""
    until(lambda: up_values(exporter) == [1.0])
    assert servers_shown(exporter) == {s["server_id"] for s in SERVERS}
    Hostile.mode = mode


def failed_refresh(exporter: Exporter) -> None:
    until(lambda: up_values(exporter) == [0.0])
    # The last data stays.
    assert servers_shown(exporter) == {s["server_id"] for s in SERVERS}


# ---------------------------------------------------------------------------------------------
# Redirects


def test_a_redirect_to_another_host_is_refused_and_nothing_is_sent_there(
    hostile: str, elsewhere: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    Hostile.location = elsewhere
    exporter = exporters(hostile, cache_ttl=0.3)
    warm_then(exporter, "redirect")
    failed_refresh(exporter)
    assert Elsewhere.seen == []
    assert "ListCloudPhoneServers: HTTP 302 redirect to localhost refused" in caplog.text
    assert leaks(caplog.text) == []


@pytest.mark.parametrize("status", [301, 307, 308])
def test_every_redirect_status_is_an_error_of_the_call(
    status: int, elsewhere: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Location", elsewhere + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    for url in serve(Redirecting):
        exporter = exporters(url)
        until(functools.partial(is_down, exporter))
    assert Elsewhere.seen == []
    assert f"HTTP {status} redirect to localhost refused" in caplog.text


def test_the_metadata_service_redirect_is_not_followed(elsewhere: str) -> None:
    from cph_exporter.credentials.metadata import MetadataCredentials
    from cph_exporter.credentials.providers import CredentialError

    Hostile.mode, Hostile.mode_file, Hostile.location = "redirect", None, elsewhere
    for url in serve(Hostile):
        with pytest.raises(CredentialError, match="redirect to localhost, not followed"):
            MetadataCredentials(base_url=url).get()
    assert Elsewhere.seen == []


# ---------------------------------------------------------------------------------------------
# Oversized answers


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("huge", "larger than --cph.max-response-size of 1 MiB (Content-Length 2147483648)"),
        ("bomb", "larger than --cph.max-response-size of 1 MiB; abandoned"),
        ("endless", "larger than --cph.max-response-size of 1 MiB; abandoned"),
    ],
)
def test_an_answer_past_the_size_cap_fails_its_call(
    mode: str, said: str, hostile: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    exporter = exporters(hostile, cache_ttl=0.3, max_response_size=1 << 20)
    warm_then(exporter, mode)
    failed_refresh(exporter)
    assert f"ListCloudPhoneServers: HTTP 200 answer {said}" in caplog.text


def test_a_million_servers_in_one_page_do_not_sink_the_other_target(
    hostile: str, simulator: CphSimulator, caplog: Any
) -> None:
    Hostile.mode = "endless"
    config = dataclasses.replace(
        Config(),
        listen_address="127.0.0.1:0",
        region=SIMULATOR_REGION,
        project_id=SIMULATOR_PROJECT_ID,
        max_requests_per_second=0.0,
        phones=False,
    )
    flooded = dataclasses.replace(flag_target(config), endpoint=hostile, name="flooded")
    healthy = dataclasses.replace(flag_target(config), endpoint=simulator.url, name="healthy")
    exporter = Exporter(
        config,
        targets=[
            target_spec(flooded, lambda: CREDENTIALS, project_id="flooded"),
            target_spec(healthy, lambda: GOOD_CREDENTIALS),
        ],
    )
    exporter.start()
    try:

        def ups() -> dict[str, float]:
            got = samples(metrics(exporter))["cph_up"]
            return {labels["project_id"]: value for labels, value in got}

        until(lambda: ups() == {"flooded": 0.0, SIMULATOR_PROJECT_ID: 1.0})
        got = samples(metrics(exporter))
        # The flooded target never listed a server: every series is the healthy one's.
        healthy_servers = {labels["server_id"] for labels, _ in got["cph_server_status"]}
        assert len(healthy_servers) == simulator.server_count
    finally:
        exporter.close()
    assert "larger than --cph.max-response-size of 8 MiB; abandoned" in caplog.text


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_oversized_answers_do_not_grow_the_exporter_process(tmp_path: Path) -> None:
    """The exporter as it runs (`python -m cph_exporter`), its peak memory read from /proc."""
    mode, port_file = tmp_path / "mode", tmp_path / "port"
    mode.write_text("ok")
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.hostile_api", str(mode), str(port_file)], cwd=ROOT
    )
    exporter: subprocess.Popen[bytes] | None = None
    log = tmp_path / "exporter.log"
    try:
        until(lambda: port_file.exists() and port_file.read_text() != "")
        api = f"http://127.0.0.1:{port_file.read_text()}"
        port = free_port()  # for the exporter to listen on
        env = {
            **os.environ,
            "HUAWEICLOUD_SDK_AK": CREDENTIALS.access_key,
            "HUAWEICLOUD_SDK_SK": CREDENTIALS.secret_key,
        }
        with log.open("wb") as out:
            exporter = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cph_exporter",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--cph.endpoint={api}",
                    "--cph.region=cn-north-4",
                    "--cph.project-id=0123456789abcdef0123456789abcdef",
                    "--cache.ttl=0.5s",
                    "--no-collector.phones",
                    "--cph.max-requests-per-second=0",
                ],
                cwd=ROOT,
                env=env,
                stderr=out,
            )
        url = f"http://127.0.0.1:{port}/metrics"

        def up() -> float:
            try:
                text = requests.get(url, timeout=30).text
            except requests.ConnectionError:
                return -1.0  # not listening yet
            return next(float(line.split()[-1]) for line in text.splitlines() if "cph_up{" in line)

        def capped_again(before: int) -> bool:
            return up() == 0.0 and log.read_text().count(CAPPED) > before

        for _ in range(5):  # a few good refreshes: the steady state
            until(lambda: up() == 1.0)
            time.sleep(0.6)
        steady = _vm_hwm_kib(exporter.pid)
        peaks = {}
        for attack in ("huge", "bomb", "endless"):
            failures = log.read_text().count(CAPPED)
            mode.write_text(attack)
            # Scrapes start the refreshes: poll with them.
            until(functools.partial(capped_again, failures))
            peaks[attack] = _vm_hwm_kib(exporter.pid)
        peak = _vm_hwm_kib(exporter.pid)
        # The cap is 8 MiB: the buffer holds at most that, plus the read blocks.
        print(f"VmHWM KiB: steady {steady}, after each attack {peaks} (+{peak - steady})")
        assert peak - steady < 12 * 1024
    finally:
        for process in (exporter, stand_in):
            if process is not None:
                process.terminate()
                process.wait(30)


# ---------------------------------------------------------------------------------------------
# Dripping answers


@pytest.mark.parametrize("mode", ["drip", "drip-head"])
def test_a_dripping_answer_cannot_outlive_the_refresh_deadline(
    mode: str, hostile: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    exporter = exporters(hostile, cache_ttl=0.3, request_timeout=10.0, refresh_timeout=2.0)
    warm_then(exporter, mode)
    # The drip goes on as long as the stand-in runs: only a wall-clock limit ends the refresh.
    failed_refresh(exporter)
    assert "ListCloudPhoneServers:" in caplog.text
    assert "timed out after" in caplog.text
    assert "(the refresh deadline)" in caplog.text


def test_a_dripping_answer_is_cut_at_the_request_timeout(
    hostile: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    exporter = exporters(hostile, cache_ttl=0.3, request_timeout=1.0, refresh_timeout=30.0)
    warm_then(exporter, "drip")
    with caplog.at_level(logging.DEBUG):
        until(lambda: bool(metrics(exporter)) and "not complete: timed out after 1s" in caplog.text)
    assert "ListCloudPhoneServers:" in caplog.text


# ---------------------------------------------------------------------------------------------
# Secrets echoed by the API


def test_an_echoed_security_token_never_reaches_a_log_or_the_metrics(
    hostile: str, exporters: Callable[..., Exporter], caplog: Any
) -> None:
    # The whole token, then pieces of it, past the 300 characters error_msg is cut to.
    Hostile.echo = " ".join(
        ["token", TOKEN, "again", TOKEN[3:40], CREDENTIALS.secret_key[1:20], TOKEN[250:290]]
    )
    exporter = exporters(hostile, cache_ttl=0.3)
    warm_then(exporter, "echo")
    failed_refresh(exporter)
    assert "APIGW.0301" in caplog.text
    assert "[REDACTED]" in caplog.text
    assert leaks(caplog.text) == []
    assert all(TOKEN not in str(r.args) for r in caplog.records)


def test_error_bodies_in_other_shapes_keep_their_code(
    exporters: Callable[..., Exporter], caplog: Any
) -> None:
    bodies = [
        {"errorCode": "CPH.0100", "errorMsg": "camel case shape"},
        {"code": "CPH.0200", "message": "code and message shape"},
    ]
    for body in bodies:

        class Refusing(BaseHTTPRequestHandler):
            payload = json.dumps(body).encode()

            def do_GET(self) -> None:
                self.send_response(400)
                self.send_header("Content-Length", str(len(self.payload)))
                self.end_headers()
                self.wfile.write(self.payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        for url in serve(Refusing):
            exporter = exporters(url)
            until(functools.partial(is_down, exporter))
    assert "HTTP 400 CPH.0100 camel case shape" in caplog.text
    assert "HTTP 400 CPH.0200 code and message shape" in caplog.text
