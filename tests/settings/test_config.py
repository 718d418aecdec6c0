"""Flags and environment into a validated Config; a bad setting stops the start with one line."""

from __future__ import annotations

import pytest

from cph_exporter.cli import build_parser, config_from_args
from cph_exporter.settings.config import ConfigError, parse_duration
from tests.helpers.cli import run_cli

BASE = ["--cph.region", "cn-north-4", "--cph.project-id", "0123abcd" * 4]


def config(argv: list[str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return config_from_args(build_parser().parse_args(argv), environ or {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("45", 45), ("1.5", 1.5), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 m", "2x", "m", "nan", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults() -> None:
    cfg = config(BASE)
    assert cfg.listen_address == ":9852"
    assert cfg.telemetry_path == "/metrics"
    assert cfg.cache_ttl == 60
    assert cfg.endpoint == "https://cph.cn-north-4.myhuaweicloud.com"
    assert cfg.server_ids == ()


def test_project_id_from_env_and_repeatable_server_ids() -> None:
    cfg = config(
        ["--cph.region", "cn-east-3", "--cph.server-id", "a1", "--cph.server-id", "b2"],
        {"HUAWEICLOUD_SDK_PROJECT_ID": "f00dcafe" * 4},
    )
    assert cfg.project_id == "f00dcafe" * 4
    assert cfg.server_ids == ("a1", "b2")


@pytest.mark.parametrize(
    ("argv", "setting"),
    [
        (["--cph.project-id", "p"], "--cph.region"),
        (["--cph.region", "cn-north-4", "--cph.project-id", "a/b"], "--cph.project-id"),
        ([*BASE, "--cph.ca-file", "/nonexistent/ca.pem"], "--cph.ca-file"),
        ([*BASE, "--cph.metadata-url", "file:///etc"], "--cph.metadata-url"),
        ([*BASE, "--cph.endpoint", "ftp://x"], "--cph.endpoint"),
        ([*BASE, "--cph.endpoint", "https://user:pw@x"], "--cph.endpoint"),
        ([*BASE, "--web.telemetry-path", "metrics"], "--web.telemetry-path"),
        ([*BASE, "--web.listen-address", "9852"], "--web.listen-address"),
        ([*BASE, "--cache.ttl", "0"], "--cache.ttl"),
        ([*BASE, "--cache.ttl", "20m"], "--cache.max-stale"),
        ([*BASE, "--cph.concurrency", "0"], "--cph.concurrency"),
        ([*BASE, "--cph.server-id", "../etc"], "--cph.server-id"),
        (["--cph.region", "Not A Region", "--cph.project-id", "p"], "--cph.region"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], setting: str) -> None:
    with pytest.raises(ConfigError, match=f"^{setting}: "):
        config(argv)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--cache.ttl", "soon", "--simulate"], "--cache.ttl"),
        (["--cph.region", "cn-north-4"], "credentials: none found"),
        ([*BASE], "HUAWEICLOUD_SDK_AK"),
        ([*BASE], "--simulate"),
        (["--simulate", "--web.listen-address", "nonsense"], "--web.listen-address"),
    ],
)
def test_bad_start_is_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    # A flag argparse refuses gets a pointer to --help after its one line.
    assert lines[1:] in ([], ["run 'cph-exporter --help' for the flags"]), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_taken_port_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--simulate", "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("cph-exporter ")
    assert "--web.listen-address" in run_cli("--help").stdout


def test_project_id_is_looked_up_through_iam_and_a_miss_is_one_line() -> None:
    """No --cph.project-id: the start asks IAM (a local stand-in here) and fails clearly."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Iam(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps({"projects": [{"id": "abc", "name": "cn-east-3"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Iam) as iam:
        threading.Thread(target=iam.serve_forever, daemon=True).start()
        secret = "sk-that-must-not-leak-91ab"
        result = run_cli(
            "--cph.region",
            "cn-north-4",
            "--cph.iam-endpoint",
            f"http://127.0.0.1:{iam.server_address[1]}",
            env={"HUAWEICLOUD_SDK_AK": "AKTEST", "HUAWEICLOUD_SDK_SK": secret},
        )
        iam.shutdown()
    assert asked and asked[0].startswith("/v3/projects?name=cn-north-4")
    assert result.returncode == 2
    assert result.stderr.count("cph-exporter: --cph.project-id:") == 1
    assert "no project named 'cn-north-4'" in result.stderr
    assert secret not in result.stderr
