"""The installed command as an operator runs it: --simulate, promtool on its output, logs, stop."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.helpers.net import free_port


class Running:
    def __init__(self, *argv: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [*argv, "--web.listen-address", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if requests.get(self.url + "/-/healthy", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("exporter did not start")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr


@pytest.fixture
def simulated() -> Iterator[Running]:
    running = Running(
        sys.executable,
        "-m",
        "cph_exporter",
        "--simulate",
        "--simulate.servers",
        "40",
        "--log.format",
        "json",
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_simulate_serves_every_server_and_stops_cleanly(simulated: Running) -> None:
    text = requests.get(simulated.url + "/metrics", timeout=30).text
    states = [line for line in text.splitlines() if line.startswith("cph_server_state{")]
    assert len(states) == (40 + 2) * 9  # generated fleet + the two documented servers
    assert 'cph_up{project_id="' in text and "} 1.0" in text
    code, stderr = simulated.stop()
    assert code == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert all({"ts", "level", "msg"} <= set(line) for line in lines)
    assert any("simulating a CPH project" in line["msg"] for line in lines)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_simulated_exposition(simulated: Running) -> None:
    body = requests.get(simulated.url + "/metrics", timeout=30).content
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("cph-exporter") is None, reason="package not installed")
def test_console_script() -> None:
    running = Running("cph-exporter", "--simulate", "--simulate.servers", "3")
    try:
        running.wait_ready()
        assert "cph_server_state" in requests.get(running.url + "/metrics", timeout=30).text
    finally:
        code, stderr = running.stop()
    assert code == 0, stderr
    assert "level=info" in stderr  # logfmt is the default
