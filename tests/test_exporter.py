"""The whole exporter against the simulator: a real HTTP API with signatures and faults."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from cph_exporter import __version__
from cph_exporter.credentials.values import Credentials
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_fleet,
    generate_phones,
)
from tests.helpers.fleet import fleet
from tests.helpers.samples import DETAIL, LIST, PHONES, assert_complete, by_server, samples
from tests.helpers.scrape import ExporterFactory, scrape


def test_every_server_matches_the_api(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    servers = fleet()
    assert any("volumes" not in s for s in servers)  # absent arrays are covered
    assert any(s.get("band_widths", 1) is None for s in servers)  # and null ones
    got = samples(scrape(make_exporter(simulator)))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, servers)


def test_two_scrapes_within_ttl_call_the_api_once(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator)
    first = scrape(exporter)
    calls = dict(simulator.calls)
    phone_pages = -(-len(generate_phones(fleet())) // 100)
    assert calls == {LIST: 1, DETAIL: len(fleet()), PHONES: phone_pages}
    second = scrape(exporter)
    assert dict(simulator.calls) == calls
    assert samples(first)["cph_server_state"] == samples(second)["cph_server_state"]


def test_concurrent_cold_scrapes_share_one_refresh(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    simulator.faults.latency = 0.05
    exporter = make_exporter(simulator)
    barrier = threading.Barrier(4)
    bodies: list[str] = []

    def scrape_together() -> None:
        barrier.wait()
        bodies.append(scrape(exporter))

    threads = [threading.Thread(target=scrape_together) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(bodies) == 4
    assert simulator.calls[LIST] == 1
    assert max(simulator.detail_calls.values()) == 1
    assert len(simulator.detail_calls) == len(fleet())
    for body in bodies:
        assert_complete(samples(body), fleet())


def test_throttling_with_retry_after_still_yields_every_detail(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    simulator.faults.throttle_every = 6
    simulator.faults.retry_after = "1"
    got = samples(scrape(make_exporter(simulator)))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())
    throttled = [
        v for labels, v in got["cph_exporter_api_requests_total"] if labels["code"] == "429"
    ]
    assert sum(throttled) >= len(fleet()) // 6 - 1


def test_wrong_secret_key_is_cph_up_0_and_never_logged(
    simulator: CphSimulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "WRONG-secret-key-4f8a0c"
    caplog.set_level(logging.DEBUG)
    exporter = make_exporter(simulator, Credentials(SIMULATOR_ACCESS_KEY, secret))
    text = scrape(exporter)
    got = samples(text)
    assert got["cph_up"][0][1] == 0
    assert not got["cph_server_status"]
    codes = {labels["code"] for labels, _ in got["cph_exporter_api_requests_total"]}
    assert codes == {"401"}  # not retried
    assert simulator.calls[LIST] == 1
    assert "APIGW.0301" in caplog.text and "401" in caplog.text
    assert secret not in caplog.text and secret not in text
    assert requests.get(exporter.url + "/-/healthy", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "kind", ["not_found", "html_502", "garbage", "truncated", "json_error_200"]
)
def test_one_broken_detail_never_sinks_the_others(
    simulator: CphSimulator, make_exporter: ExporterFactory, kind: str
) -> None:
    servers = fleet()
    victim = next(s for s in servers if s.get("volumes"))
    simulator.faults.broken_details = {victim["server_id"]: kind}
    got = samples(scrape(make_exporter(simulator)))
    assert got["cph_up"][0][1] == 1
    others = [s for s in servers if s is not victim]
    for name in ("cph_server_bandwidth_size_bytes_per_second", "cph_server_volume_size_bytes"):
        assert all(labels["server_id"] != victim["server_id"] for labels, _ in got[name])
    # The victim keeps what the list says; everyone else is complete.
    status = by_server(got["cph_server_status"])
    assert status[victim["server_id"]][0]["value"] == victim["status"]
    got_others = {
        name: [
            (labels, v) for labels, v in series if labels.get("server_id") != victim["server_id"]
        ]
        for name, series in got.items()
    }
    assert_complete(got_others, others)
    assert got["cph_exporter_servers_without_details"][0][1] == 1
    assert got["cph_exporter_detail_fetch_failures_total"][0][1] >= 1


def test_server_id_mode_never_lists(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    servers = fleet()
    watched = [servers[0], servers[5]]
    exporter = make_exporter(simulator, server_ids=tuple(s["server_id"] for s in watched))
    got = samples(scrape(exporter))
    assert simulator.calls[LIST] == 0
    assert got["cph_up"][0][1] == 1
    assert_complete(got, watched)


def test_server_id_mode_with_a_deleted_server(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    servers = fleet()
    exporter = make_exporter(simulator, server_ids=(servers[1]["server_id"], "deadbeef" * 4))
    got = samples(scrape(exporter))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, [servers[1]])


def test_many_pages_are_listed_once_each(make_exporter: ExporterFactory) -> None:
    servers = generate_fleet(250)
    with CphSimulator(
        servers, {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}, SIMULATOR_PROJECT_ID
    ) as sim:
        got = samples(scrape(make_exporter(sim)))
        assert sim.calls[LIST] == 3
    assert_complete(got, servers)


def test_failed_refresh_keeps_last_data_and_says_cph_up_0(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator, cache_ttl=0.2, cache_max_stale=60.0)
    first = samples(scrape(exporter))
    simulator.faults.list_fault = "html_503"
    time.sleep(0.3)
    second = samples(scrape(exporter))
    assert second["cph_up"][0][1] == 0
    assert second["cph_server_state"] == first["cph_server_state"]
    assert second["cph_exporter_data_age_seconds"][0][1] >= 0.2


def test_http_endpoints(simulator: CphSimulator, make_exporter: ExporterFactory) -> None:
    simulator.faults.latency = 1.0  # keeps the first refresh (started at once) in flight
    exporter = make_exporter(simulator)
    ready = requests.get(exporter.url + "/-/ready", timeout=5)
    assert ready.status_code == 503  # nothing fetched yet
    landing = requests.get(exporter.url + "/", timeout=5)
    assert landing.status_code == 200 and 'href="/metrics"' in landing.text
    assert f"Version {__version__}" in landing.text  # the one version, from the package
    assert requests.get(exporter.url + "/-/healthy", timeout=5).text == "Healthy\n"
    assert requests.get(exporter.url + "/nope", timeout=5).status_code == 404
    om = requests.get(
        exporter.url + "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=30,
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n") and om.text.count("# EOF") == 1
    assert requests.get(exporter.url + "/-/ready", timeout=5).status_code == 200
    simulator.faults.latency = 0
    zipped = requests.get(
        exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=30
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "cph_server_state" in zipped.text


def test_rotated_keys_are_reread_after_a_401() -> None:
    """Keys rotated under a running exporter: the 401 makes it re-read its sources."""
    import dataclasses

    from cph_exporter.app import Exporter
    from cph_exporter.credentials.chain import ChainCredentials
    from cph_exporter.credentials.providers import EnvCredentials
    from cph_exporter.settings.config import Config

    api_keys = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}  # read by the simulator per request
    simulator = CphSimulator(fleet(), api_keys, SIMULATOR_PROJECT_ID)
    simulator.start()
    environ = {
        "HUAWEICLOUD_SDK_AK": SIMULATOR_ACCESS_KEY,
        "HUAWEICLOUD_SDK_SK": SIMULATOR_SECRET_KEY,
    }
    chain = ChainCredentials([EnvCredentials(environ)])
    config = dataclasses.replace(
        Config(),
        listen_address="127.0.0.1:0",
        region="r",
        project_id=SIMULATOR_PROJECT_ID,
        endpoint=simulator.url,
        cache_ttl=0.2,
    )
    exporter = Exporter(config, chain.get, on_auth_failure=chain.invalidate)
    exporter.start()
    try:
        assert samples(scrape(exporter))["cph_up"][0][1] == 1
        # Rotate: the API now knows only the new key, and so does the environment.
        api_keys[SIMULATOR_ACCESS_KEY] = "rotated-secret-key"
        environ["HUAWEICLOUD_SDK_SK"] = "rotated-secret-key"
        time.sleep(0.3)
        got = samples(scrape(exporter))
    finally:
        exporter.close()
        simulator.stop()
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())
