"""A refused or broken listing beside the servers costs only its own `_up`: never cph_up,
never a server series; one log line per refresh; promtool accepts the whole exposition."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from cph_exporter.simulator import CphSimulator
from tests.helpers.fleet import fleet
from tests.helpers.samples import assert_complete, samples
from tests.helpers.scrape import ExporterFactory, scrape
from tests.helpers.watched import exporter_of, watched_simulator

UP = {
    "ListScheduledEvents": "cph_scheduled_events_up",
    "ListEncodeServers": "cph_encode_servers_up",
    "ListCloudPhoneModels": "cph_phone_models_up",
}
NAMES = {
    "ListScheduledEvents": "scheduled events",
    "ListEncodeServers": "encode servers",
    "ListCloudPhoneModels": "phone models",
}


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    yield from watched_simulator()


@pytest.mark.parametrize("operation", sorted(UP))
def test_a_403_on_one_listing_turns_only_its_own_up_to_0(
    sim: CphSimulator,
    make_exporter: ExporterFactory,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    sim.operation_faults[operation] = "forbidden"
    caplog.set_level(logging.WARNING)
    got = samples(scrape(exporter_of(make_exporter, sim)))
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())
    for other, gauge in UP.items():
        assert got[gauge][0][1] == (0 if other == operation else 1), gauge
    lines = [
        r.getMessage()
        for r in caplog.records
        if f"{NAMES[operation]} unavailable" in r.getMessage()
    ]
    assert len(lines) == 1  # one refresh, one line
    assert "403" in lines[0] and "APIGW.0302" in lines[0]
    if operation == "ListScheduledEvents":
        assert not got["cph_server_scheduled_event_info"]
    if operation == "ListEncodeServers":
        assert not got["cph_encode_server_state"]
    if operation == "ListCloudPhoneModels":
        assert not got["cph_server_phone_capacity"]
        assert got["cph_server_scheduled_event_info"] and got["cph_encode_server_state"]


@pytest.mark.parametrize("kind", ["html_503", "garbage", "json_error_200"])
def test_a_broken_listing_keeps_its_last_data(
    sim: CphSimulator, make_exporter: ExporterFactory, kind: str
) -> None:
    exporter = exporter_of(
        make_exporter, sim, encode_servers_ttl=0.1, cache_ttl=0.1, cache_max_stale=60.0
    )
    first = samples(scrape(exporter))
    sim.operation_faults["ListEncodeServers"] = kind
    # Refreshes after the TTL list again; wait for one that found the listing broken.
    while exporter.refresher.snapshot(timeout=5).watched.encode_servers_up:
        time.sleep(0.05)
    later = samples(scrape(exporter))  # a failed listing is not cached: it fails again
    assert later["cph_encode_servers_up"][0][1] == 0
    assert later["cph_up"][0][1] == 1
    assert later["cph_encode_server_state"] == first["cph_encode_server_state"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition_with_every_collector(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    text = scrape(exporter_of(make_exporter, sim, phone_details=True))
    assert "cph_server_scheduled_event_info" in text and "cph_server_phone_capacity" in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
