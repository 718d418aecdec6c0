"""The fleet-scale optimisations change nothing a scraper can see.

Cached per-snapshot bytes, cached gzip (the cached deflate of one member, finished by the
live part) and incremental refreshes must give the same series as a fresh `generate_latest`
of the same snapshot, and a real Prometheus must ingest every sample of such a gzip answer.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.cph.models import parse_details, parse_server
from cph_exporter.http.exposition import Exposition, accepts_gzip
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot
from cph_exporter.refresh.targets import TargetView
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_fleet,
)
from tests.helpers.fleet import fleet
from tests.helpers.net import free_port
from tests.helpers.scrape import ExporterFactory, get_metrics

LIST = "ListCloudPhoneServers"
DETAIL = "GetCloudPhoneServerDetail"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
Series = set[tuple[str, tuple[tuple[str, str], ...], float]]


def series(text: str) -> Series:
    """Every sample as (name, sorted labels, value): comparable series for series."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def fleet_series(text: str) -> Series:
    """The snapshot part's samples: the live part (cph_exporter_*, process_*, python_*) changes
    from one scrape to the next."""
    return {
        s for s in series(text) if s[0].startswith("cph_") and not s[0].startswith("cph_exporter_")
    }


def gzip_members(data: bytes) -> list[bytes]:
    """The decompressed members of a (possibly multi-member) gzip stream."""
    members = []
    while data:
        member = zlib.decompressobj(wbits=31)
        members.append(member.decompress(data) + member.flush())
        data = member.unused_data
    return members


def snapshot_of(servers: list[dict[str, Any]], generation: int = 1) -> Snapshot:
    records = sorted(
        (ServerRecord(parse_server(s), parse_details(s)) for s in servers),
        key=lambda r: r.server.server_id,
    )
    return Snapshot(tuple(records), True, 1.7e9, 0.5, 1.7e9, 1.7e9, generation=generation)


class CountingFleet:
    """The fleet collector factory, counting how often a snapshot is rendered."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self, views: Sequence[TargetView]) -> list[ServerCollector]:
        self.builds += 1
        return [ServerCollector(lambda: views)]


def views(snapshot: Snapshot) -> tuple[TargetView, ...]:
    return (TargetView("sim-region-1", "proj", snapshot),)


def live_registry() -> CollectorRegistry:
    from prometheus_client import Counter

    registry = CollectorRegistry(auto_describe=False)
    Counter("cph_exporter_demo", "A live counter.", ["code"], registry=registry).labels("200").inc()
    return registry


def plain_render(snapshot: Snapshot, live: CollectorRegistry, openmetrics: bool) -> bytes:
    """What the exporter served before any caching: one generate_latest of everything."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(lambda: views(snapshot)))
    for collector in live._collector_to_names:  # the same live collectors, in order
        registry.register(collector)
    return generate_openmetrics(registry) if openmetrics else generate_latest(registry)


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_cached_render_is_byte_identical_to_a_fresh_generate_latest(accept: str | None) -> None:
    snapshot = snapshot_of(fleet())
    live = live_registry()
    builds = CountingFleet()
    exposition = Exposition(builds, live)
    first, _ = exposition.render(views(snapshot), accept)
    second, _ = exposition.render(views(snapshot), accept)
    expected = plain_render(snapshot, live, openmetrics=accept is not None)
    assert first == second == expected
    assert builds.builds == 1  # the second scrape was served from the cache


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_gzip_is_one_member_of_the_cached_deflate_and_the_live_part(accept: str | None) -> None:
    snapshot = snapshot_of(fleet())
    live = live_registry()
    builds = CountingFleet()
    exposition = Exposition(builds, live)
    first = exposition.body(views(snapshot), accept, gzip_ok=True)
    second = exposition.body(views(snapshot), accept, gzip_ok=True)
    assert first.content_encoding == "gzip"
    assert isinstance(first.parts, tuple) and isinstance(second.parts, tuple)
    assert second.parts[0] is first.parts[0]  # not compressed again
    assert builds.builds == 1
    joined = b"".join(second.parts)
    assert len(gzip_members(joined)) == 1
    assert gzip.decompress(joined) == plain_render(snapshot, live, accept is not None)
    identity, _ = exposition.render(views(snapshot), accept)
    assert gzip.decompress(joined) == identity


def test_a_new_snapshot_is_rendered_anew() -> None:
    servers = fleet()
    builds = CountingFleet()
    exposition = Exposition(builds, live_registry())
    old, _ = exposition.render(views(snapshot_of(servers, generation=1)), None)
    changed = [dict(servers[0], status=2), *servers[1:]]
    new, _ = exposition.render(views(snapshot_of(changed, generation=2)), None)
    assert builds.builds == 2 and old != new
    # A late scrape still holding the old snapshot gets its own bytes, not the new ones.
    late, _ = exposition.render(views(snapshot_of(servers, generation=1)), None)
    assert late == old


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP;q=0.5", True),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("", False),
        (None, False),
        ("x-gzip", True),
        ("br, gzip;q=bogus", False),
    ],
)
def test_accept_encoding(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok


# ---- the whole exporter against the simulator ----


def test_served_fleet_equals_a_fresh_render_of_the_same_snapshot(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator, phones=False)  # the phone families follow otherwise
    identity = get_metrics(exporter, **{"Accept-Encoding": "identity"}).text
    zipped = get_metrics(exporter, **{"Accept-Encoding": "gzip"}).text  # decoded by requests
    registry = CollectorRegistry(auto_describe=False)
    snapshot = exporter.refresher.current()
    target_views = (TargetView(SIMULATOR_REGION, SIMULATOR_PROJECT_ID, snapshot),)
    registry.register(ServerCollector(lambda: target_views))
    fresh = generate_latest(registry).decode()
    assert identity.startswith(fresh)  # byte for byte, then the live part
    assert fleet_series(identity) == fleet_series(zipped) == series(fresh)
    names = {s[0] for s in series(identity)} - {s[0] for s in series(fresh)}
    assert names == {s[0] for s in series(zipped)} - {s[0] for s in series(fresh)}
    assert "cph_exporter_build_info" in names


def test_an_unchanged_fleet_is_refreshed_from_list_calls_alone(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(
        simulator, cache_ttl=0.3, cache_max_stale=60.0, detail_max_age=3600, phones=False
    )
    first = get_metrics(exporter).text
    # One list pass, or two when this scrape came after the start's refresh had expired.
    assert simulator.calls[LIST] in (1, 2)
    assert dict(simulator.detail_calls) == dict.fromkeys(simulator.detail_calls, 1)
    assert len(simulator.detail_calls) == len(fleet())
    simulator.reset_counters()
    later = []
    for _ in range(2):  # two refreshes after the TTL
        time.sleep(0.4)
        later.append(get_metrics(exporter).text)
    assert dict(simulator.calls) == {LIST: 2}
    assert fleet_series(later[0]) == fleet_series(later[1]) == fleet_series(first)


def test_a_changed_server_alone_is_fetched_again(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    servers = fleet()
    exporter = make_exporter(
        simulator, cache_ttl=0.3, cache_max_stale=60.0, detail_max_age=3600, phones=False
    )
    get_metrics(exporter)
    changed = dict(servers[3], update_time="2030-01-01T00:00:00Z", status=8)
    changed["volumes"] = [
        {"volume_id": "grown", "volume_name": "v", "volume_size": 80, "volume_type": "SSD"}
    ]
    simulator.set_servers([*servers[:3], changed, *servers[4:]])
    simulator.reset_counters()
    time.sleep(0.4)
    text = get_metrics(exporter).text
    assert dict(simulator.detail_calls) == {changed["server_id"]: 1}
    volumes = {
        (dict(labels)["volume_id"], value)
        for name, labels, value in series(text)
        if name == "cph_server_volume_size_bytes"
        and dict(labels)["server_id"] == changed["server_id"]
    }
    assert volumes == {("grown", 80 * 2**30)}


# ---- a real Prometheus decodes the spliced gzip member ----

PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
@pytest.mark.timeout(120)
def test_prometheus_ingests_every_sample_of_a_spliced_gzip_scrape(
    make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    servers = generate_fleet(150, seed=3)
    credentials = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}
    with CphSimulator(servers, credentials, SIMULATOR_PROJECT_ID) as sim:
        exporter = make_exporter(sim, cache_ttl=3600.0, cache_max_stale=3600.0)
        # What Prometheus 2.x asks for: OpenMetrics, gzip.
        raw = requests.get(
            exporter.url + "/metrics",
            headers={"Accept": OPENMETRICS, "Accept-Encoding": "gzip"},
            timeout=30,
            stream=True,
        ).raw.read(decode_content=False)
        members = gzip_members(raw)
        assert len(members) == 1  # the cached fleet deflate, finished by the live part
        samples = [s for f in parse_om(b"".join(members).decode()) for s in f.samples]

        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "cph",
                    "static_configs": [{"targets": [exporter.url.removeprefix("http://")]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            scraped = wait_for_query(port, 'scrape_samples_scraped{job="cph"}', proc)
            states = wait_for_query(port, 'count(cph_server_state{job="cph"})', proc)
            up = wait_for_query(port, 'up{job="cph"}', proc)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()
    assert up == 1
    assert scraped == len(samples)
    assert states == 9 * len(servers)


def wait_for_query(port: int, query: str, proc: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prometheus exited"
        try:
            answer = requests.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5
            ).json()
        except (requests.RequestException, ValueError):
            answer = {}
        result = answer.get("data", {}).get("result", [])
        if result:
            return float(result[0]["value"][1])
        time.sleep(0.5)
    raise AssertionError(f"no answer to {query} within 60s")


def test_a_fleet_of_whole_pages_is_listed_without_an_empty_page(
    make_exporter: ExporterFactory,
) -> None:
    servers = generate_fleet(200, seed=4)
    credentials = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}
    with CphSimulator(servers, credentials, SIMULATOR_PROJECT_ID) as sim:
        text = get_metrics(make_exporter(sim)).text
        assert sim.calls[LIST] == 2  # ceil(200 / 100): the answer's count says it is all
    assert len({s for s in fleet_series(text) if s[0] == "cph_server_status"}) == 200


def test_a_refresh_renders_its_snapshot_before_the_next_scrape_needs_it(
    simulator: CphSimulator, make_exporter: ExporterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    exporter = make_exporter(simulator, cache_ttl=0.3, cache_max_stale=60.0)
    renders: list[str] = []
    original = exporter.exposition._render

    def counting(*args: Any) -> Any:
        renders.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(exporter.exposition, "_render", counting)
    get_metrics(exporter, **{"Accept-Encoding": "gzip"})  # the form Prometheus asks for, remembered
    renders.clear()
    time.sleep(0.4)  # the TTL runs out
    get_metrics(exporter, **{"Accept-Encoding": "gzip"})  # waits on the refresh, then serves
    get_metrics(exporter, **{"Accept-Encoding": "gzip"})
    assert len(renders) == 1  # once per snapshot
    assert renders[0].startswith("cph-refresh")  # on the refresh's thread, not a scrape's
