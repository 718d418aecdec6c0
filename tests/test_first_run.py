"""What a new user meets in the first minutes: any client decodes the output, and the
command line, the start-up log and the configuration check say what they mean."""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import cph_exporter
from cph_exporter import __version__
from cph_exporter.cli import build_parser, config_from_args
from cph_exporter.credentials.chain import ChainCredentials
from cph_exporter.credentials.providers import EnvCredentials, ProfileCredentials
from cph_exporter.settings.config import Config, parse_duration
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
)
from tests.helpers.cli import run_cli
from tests.helpers.scrape import ExporterFactory, scrape

CURL = shutil.which("curl")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.mark.skipif(CURL is None, reason="curl not installed (Debian's curl package)")
@pytest.mark.parametrize("accept", ["text/plain", OPENMETRICS])
def test_gzip_answer_is_one_member_that_curl_decodes_whole(
    simulator: CphSimulator, make_exporter: ExporterFactory, accept: str
) -> None:
    # A long TTL: every request below is served from the same snapshot.
    exporter = make_exporter(simulator, cache_ttl=3600.0, cache_max_stale=3600.0)
    url = exporter.url + "/metrics"
    plain = requests.get(url, headers={"Accept": accept}, timeout=30)
    raw = requests.get(
        url, headers={"Accept": accept, "Accept-Encoding": "gzip"}, timeout=30, stream=True
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    data = raw.raw.read(decode_content=False)

    member = zlib.decompressobj(wbits=31)  # reads exactly one gzip member
    decoded = member.decompress(data) + member.flush()
    assert member.eof and member.unused_data == b""
    live = b"cph_exporter_"
    # The live part's values may move between two scrapes: compare up to it, then its names.
    cut = plain.content.index(live)
    assert decoded[:cut] == plain.content[:cut]
    assert _names(decoded) == _names(plain.content)
    if accept == OPENMETRICS:
        assert decoded.endswith(b"# EOF\n")

    curl = subprocess.run(
        [str(CURL), "--silent", "--show-error", "--compressed", "-H", f"Accept: {accept}", url],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert _names(curl.stdout) == _names(plain.content)
    assert curl.stdout[:cut] == plain.content[:cut]


def _names(text: bytes) -> list[bytes]:
    """Each sample's name and labels, in order: what must survive any decoder."""
    return [line.rpartition(b" ")[0] for line in text.splitlines() if not line.startswith(b"#")]


def test_process_and_python_families_are_served(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator)
    families = {f.name: f for f in text_string_to_metric_families(scrape(exporter))}
    rss = families["process_resident_memory_bytes"].samples[0].value
    assert rss > 1024 * 1024  # a Python process holds more than a MiB
    assert families["process_open_fds"].samples[0].value >= 3
    (python,) = families["python_info"].samples
    assert python.labels["version"] == platform.python_version()
    assert {s.labels["generation"] for s in families["python_gc_collections"].samples} == {
        "0",
        "1",
        "2",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # The examples of the Prometheus docs (configuration, <duration>).
        ("1d", 86400),
        ("1h30m", 5400),
        ("5m", 300),
        ("10s", 10),
        ("1w", 7 * 86400),
        ("1y", 365 * 86400),
        ("500ms", 0.5),
        ("12h34m56s", 45296),
        ("1w2d3h4m5s6ms", 788645.006),
        ("0", 0),
        ("90", 90),  # plain seconds keep working
        ("2.5", 2.5),
    ],
)
def test_durations_take_prometheus_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1m1h", "1s1d", "1d1d", "1x", "d", "1 d", "ms5"])
def test_durations_out_of_order_or_unknown_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


HINT = "run 'cph-exporter --help' for the flags"


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (
            ["--cache.ttl", "abc"],
            "cph-exporter: --cache.ttl: invalid duration 'abc' "
            "(use e.g. 30s, 2m, 1h30m, 1d or seconds)",
        ),
        (["--web.max-requests", "many"], "cph-exporter: --web.max-requests: invalid int value"),
        (["--log.level", "loud"], "cph-exporter: --log.level: invalid choice: 'loud'"),
        (["--cache.ttl"], "cph-exporter: --cache.ttl: expected one argument"),
        (["--no-such-flag"], "cph-exporter: unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_bad_flag_is_one_line_and_a_hint(argv: list[str], first_line: str) -> None:
    result = run_cli("--simulate", *argv)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(first_line)
    assert lines[1] == HINT


def test_help_describes_every_flag_in_groups_and_names_the_credential_sources() -> None:
    parser = build_parser()
    groups = {group.title: group for group in parser._action_groups}
    prefixes = {
        "web server": ("--web.",),
        "CPH API and the watched project": ("--cph.", "--shard"),
        "cache": ("--cache.",),
        "collectors": ("--collector.", "--no-collector."),
        "configuration file": ("--config.",),
        "logging": ("--log.",),
        "simulator": ("--simulate",),
    }
    flags = 0
    for title, wanted in prefixes.items():
        for action in groups[title]._group_actions:
            assert action.help and action.help != argparse.SUPPRESS, action.option_strings
            assert all(o.startswith(wanted) for o in action.option_strings), (title, action)
            flags += 1
    every = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]
    assert flags == len(every)  # no flag outside the groups

    text = run_cli("--help").stdout
    assert "--log.level" in text and "least severe" in text
    sources = ["HUAWEICLOUD_SDK_AK", "~/.huaweicloud/credentials", "--cph.metadata, the ECS"]
    epilog = text[text.index("credentials, from the first source") :]
    assert [epilog.index(s) for s in sources] == sorted(epilog.index(s) for s in sources)
    for variable in (
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "*_FILE",
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_IAM_ENDPOINT",
    ):
        assert variable in epilog, variable


def test_project_ids_are_32_hex_and_endpoints_http_in_every_mode(tmp_path: Path) -> None:
    region = ["--cph.region", "cn-north-4"]
    file = tmp_path / "cph.yml"
    file.write_text("targets:\n  - {name: a, region: cn-north-4, project_id: '0123'}\n")
    cases = [
        ([*region, "--cph.project-id", "0123"], {}, "cph-exporter: --cph.project-id: not a"),
        (region, {"HUAWEICLOUD_SDK_PROJECT_ID": "0123"}, "cph-exporter: HUAWEICLOUD_SDK_PROJ"),
        (["--config.file", str(file)], {}, f"cph-exporter: config file {file}: targets[0]."),
        (["--simulate", "--cph.project-id", "0123"], {}, "cph-exporter: --cph.project-id: not a"),
        (["--simulate", "--cph.endpoint", "ftp://x"], {}, "cph-exporter: --cph.endpoint: not"),
        (["--simulate", "--cph.endpoint", "ftp://u:hunter2@x"], {}, "cph-exporter: --cph.endpoint"),
    ]
    for argv, env, start in cases:
        result = run_cli(*argv, env=env)
        assert result.returncode == 2, argv
        assert result.stderr.startswith(start), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "hunter2" not in result.stderr
    assert "32 hex characters" in run_cli(*cases[0][0]).stderr
    # The API's format is accepted, and plain http for a local stand-in.
    ok = [*region, "--cph.project-id", "0123456789abcdef" * 2, "--cph.endpoint", "http://x"]
    assert validate_only(ok).project_id == "0123456789abcdef" * 2


def validate_only(argv: list[str]) -> Config:
    return config_from_args(build_parser().parse_args(argv), {})


class Started:
    """`python -m cph_exporter` in the background, its log read until a line shows up."""

    def __init__(self, *argv: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cph_exporter", "--web.listen-address", "127.0.0.1:0", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        )
        self.lines: list[str] = []

    def wait_for(self, needle: str) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if needle in line:
                return
        raise AssertionError(f"exited before {needle!r}: {''.join(self.lines)}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=60)
        self.lines += rest.splitlines(keepends=True)
        return self.process.returncode


def test_each_start_fact_is_logged_once_and_sigterm_is_one_info_line(
    simulator: CphSimulator,
) -> None:
    secret = SIMULATOR_SECRET_KEY
    running = Started(
        "--cph.region",
        SIMULATOR_REGION,
        "--cph.project-id",
        SIMULATOR_PROJECT_ID,
        "--cph.endpoint",
        simulator.url,
        env={"HUAWEICLOUD_SDK_AK": SIMULATOR_ACCESS_KEY, "HUAWEICLOUD_SDK_SK": secret},
    )
    running.wait_for("listening on")
    assert running.terminate() == 0
    log = "".join(running.lines)
    assert secret not in log
    (start,) = [line for line in running.lines if "credentials from" in line]
    assert "level=info" in start
    for fact in (
        f"cph-exporter {__version__}",
        f"region {SIMULATOR_REGION}",
        f"project {SIMULATOR_PROJECT_ID}",
        f"endpoint {simulator.url}",
        "1 target(s)",
        "credentials from environment",
    ):
        assert fact in start, fact
    assert [line for line in running.lines if "stopping" in line] == [running.lines[-1]]
    assert "level=warn" not in log and "level=error" not in log, log

    # Stopped while a slow refresh is under way: the cut-short calls are no warnings.
    slow = Started("--simulate", "--simulate.latency", "500ms")
    slow.wait_for("listening on")
    assert slow.terminate() == 0
    assert [line for line in slow.lines if "level=warn" in line] == []
    assert "stopping" in slow.lines[-1] and "level=info" in slow.lines[-1]


def test_a_reread_that_finds_the_same_source_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"HUAWEICLOUD_SDK_AK": "ak", "HUAWEICLOUD_SDK_SK": "sk"}
    profile = tmp_path / "credentials"
    profile.write_text("[basic]\nak = ak2\nsk = sk2\n")
    chain = ChainCredentials([EnvCredentials(environ), ProfileCredentials(str(profile))])
    caplog.set_level(logging.INFO)
    chain.get()
    chain.invalidate()
    chain.get()
    assert caplog.messages == []  # the start line names the source; nothing changed since
    environ.clear()  # the keys moved to the profile file
    chain.invalidate()
    assert chain.get().access_key == "ak2"
    assert caplog.messages == [
        f"credentials now from profile file {profile} (were from environment)"
    ]


def test_a_failed_first_refresh_says_nothing_was_fetched(
    simulator: CphSimulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.faults.list_fault = "html_502"
    caplog.set_level(logging.WARNING, logger="cph_exporter.refresh.refresher")
    scrape(make_exporter(simulator, phones=False))
    failed = [m for m in caplog.messages if m.startswith("refresh failed")]
    assert failed and all("no data was ever fetched" in m for m in failed)
    assert not any("serving the last data" in m for m in caplog.messages)
    simulator.faults.list_fault = None


def test_config_check_prints_a_summary_of_each_target(tmp_path: Path) -> None:
    file = tmp_path / "cph.yml"
    file.write_text(
        "targets:\n"
        "  - name: prod\n"
        "    region: cn-north-4\n"
        f"    project_id: {SIMULATOR_PROJECT_ID}\n"
        "    credentials: {access_key_env: PROD_AK, secret_key_env: PROD_SK}\n"
        "    filters: {network_version: v2, name_pattern: '^game-', status: [5, 2]}\n"
        "  - name: lab\n"
        "    region: cn-east-3\n"
        "    endpoint: http://127.0.0.1:1/\n"
    )
    result = run_cli(
        "--config.file", str(file), "--config.check", "--shard", "1/3", env={"PROD_SK": "s3cr3t"}
    )
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stdout
    blocks = result.stdout.split("target ")
    assert blocks[0].startswith(f"configuration OK: 2 target(s) from --config.file {file}")
    prod, lab = blocks[1], blocks[2]
    assert "region:       cn-north-4" in prod
    assert f"project:      {SIMULATOR_PROJECT_ID}" in prod
    assert "endpoint:     https://cph.cn-north-4.myhuaweicloud.com" in prod
    assert "credentials:  environment variables PROD_AK, PROD_SK" in prod
    assert "servers:      network_version v2; name matching '^game-'; status in 2, 5" in prod
    assert "shard:        1/3" in prod
    assert "project:      looked up at start" in lab
    assert "endpoint:     http://127.0.0.1:1" in lab
    assert "credentials:  credential chain (environment" in lab
    assert "servers:      all listed" in lab

    flags = run_cli("--cph.region", "cn-north-4", "--cph.server-id", "s1", "--config.check")
    assert flags.returncode == 0, flags.stderr
    assert "from the --cph.* flags" in flags.stdout and "only IDs s1" in flags.stdout
    assert "shard:        all servers (0/1)" in flags.stdout
    bad = run_cli("--cph.region", "cn-north-4", "--cph.project-id", "x", "--config.check")
    assert bad.returncode == 2 and bad.stdout == ""


def test_build_info_carries_the_git_revision(
    simulator: CphSimulator, make_exporter: ExporterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = Path(cph_exporter.__file__).resolve().parent.parent
    git = shutil.which("git")
    in_git = git is not None and (checkout / ".git").exists()
    if in_git:
        head = subprocess.run(
            [str(git), "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    else:
        head = "f" * 40
        monkeypatch.setenv(cph_exporter.REVISION_ENV, head)
    cph_exporter.revision.cache_clear()
    families = {f.name: f for f in text_string_to_metric_families(scrape(make_exporter(simulator)))}
    (build,) = families["cph_exporter_build_info"].samples
    assert build.labels["revision"] == head
    assert build.labels["version"] == __version__
    assert len(head) == 40
    cph_exporter.revision.cache_clear()
