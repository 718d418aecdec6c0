"""What a new user meets in the first minutes: any client decodes the output, and the
command line, the start-up log and the configuration check say what they mean."""

from __future__ import annotations

import platform
import shutil
import subprocess
import zlib

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.settings.config import parse_duration
from cph_exporter.simulator import CphSimulator
from tests.conftest import ExporterFactory, scrape

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
