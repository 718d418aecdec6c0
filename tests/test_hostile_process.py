"""The exporter as a process under attack: its memory, its exit, its renders."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.http.exposition import Exposition
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.targets import TargetView
from tests.helpers.net import free_port, serve
from tests.helpers.snapshots import sample_snapshot

PATIENCE = 60.0


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if requests.get(url + "/-/healthy", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError("the exporter never answered /-/healthy")


def exporter_process(
    args: Sequence[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cph_exporter", f"--web.listen-address=127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def simulated() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = exporter_process(["--simulate", "--simulate.servers=20"])
    try:
        wait_until_healthy(url, process)
        yield process, url
    finally:
        process.kill()
        process.wait()


def test_50_connections_of_6_mb_headers_leave_the_peak_rss_bounded(
    simulated: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = simulated
    assert requests.get(url + "/metrics", timeout=PATIENCE).status_code == 200
    before = peak_rss_kb(process.pid)
    header = b"X-Big: " + b"a" * 65_000 + b"\r\n"

    def attack() -> None:
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 30) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                for _ in range(97):
                    sock.sendall(header)
                sock.sendall(b"\r\n")
                sock.recv(65536)
        except OSError:
            pass  # cut off past the cap: what should happen

    attackers = [threading.Thread(target=attack) for _ in range(50)]
    for attacker in attackers:
        attacker.start()
    for attacker in attackers:
        attacker.join(PATIENCE)
    grown_mb = (peak_rss_kb(process.pid) - before) / 1024
    print(f"peak RSS {before / 1024:.0f} MB before, grown by {grown_mb:.1f} MB")
    assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB"  # was 2 GB
    assert requests.get(url + "/metrics", timeout=PATIENCE).status_code == 200


class _Dripping(BaseHTTPRequestHandler):
    """An API that answers one byte a second, for ever."""

    started = threading.Event()

    def do_GET(self) -> None:
        _Dripping.started.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dripping_api() -> Iterator[str]:
    _Dripping.started.clear()
    yield from serve(_Dripping)


def _scrape_quietly(url: str) -> None:
    """A scrape waiting on the stuck refresh; the exit cuts it off."""
    with contextlib.suppress(requests.RequestException):
        requests.get(url + "/metrics", timeout=PATIENCE)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_exporter_while_a_refresh_is_stuck(
    dripping_api: str, signum: signal.Signals
) -> None:
    process, url = exporter_process(
        [
            "--cph.region=cn-north-4",
            "--cph.project-id=0123456789abcdef0123456789abcdef",
            f"--cph.endpoint={dripping_api}",
            "--cph.request-timeout=600s",
            "--cph.refresh-timeout=600s",
        ],
        env={"HUAWEICLOUD_SDK_AK": "AK" * 10, "HUAWEICLOUD_SDK_SK": "SK" * 20},
    )
    try:
        wait_until_healthy(url, process)
        assert _Dripping.started.wait(PATIENCE)  # the first refresh is stuck reading
        waiting = threading.Thread(target=_scrape_quietly, args=(url,), daemon=True)
        waiting.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=PATIENCE)  # it never ended before
        print(f"{signum.name}: exited after {time.monotonic() - signalled:.2f} s")
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    lines = [line for line in stderr.decode().splitlines() if "shutting down" in line]
    assert len(lines) == 1, stderr
    assert signum.name in lines[0]


class _Blocking(Collector):
    """The servers' families, held back until `release` is set when there are servers."""

    def __init__(self, views: Sequence[TargetView], release: threading.Event) -> None:
        self._inner = ServerCollector(lambda: views)
        self._views = views
        self._release = release

    def collect(self) -> Iterator[Metric]:
        if any(view.snapshot.servers for view in self._views):
            assert self._release.wait(PATIENCE)
        yield from self._inner.collect()
        yield GaugeMetricFamily("test_rendered", "rendered", value=len(self._views))


def test_a_slow_render_never_holds_a_scrape_past_its_deadline() -> None:
    release = threading.Event()
    exposition = Exposition(lambda views: [_Blocking(views, release)], CollectorRegistry())
    full = (TargetView("sim-region-1", "proj", sample_snapshot()),)
    # Before any render is done: every target's cph_up 0, at once.
    early = b"".join(exposition.body(full, None, gzip_ok=False, timeout=0.05).parts).decode()
    assert 'cph_up{project_id="proj",region="sim-region-1"} 0.0' in early
    assert "cph_server_info{" not in early
    release.set()
    done = b"".join(exposition.body(full, None, gzip_ok=False, timeout=PATIENCE).parts).decode()
    assert "cph_server_info{" in done
    # A newer snapshot renders slowly: what is ready (the last rendering) is served meanwhile.
    release.clear()
    newer = (TargetView("sim-region-1", "proj", replace(sample_snapshot(), generation=99)),)
    meanwhile = b"".join(exposition.body(newer, None, gzip_ok=False, timeout=0.05).parts)
    assert meanwhile.decode() == done
    release.set()
