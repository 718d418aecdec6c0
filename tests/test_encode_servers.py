"""Encode servers and phone capacity, from the simulator's answers to the exposition."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cph_exporter.cph.events import ENCODE_SERVER_STATES
from cph_exporter.simulator import MISSING_PHONE_MODEL, CphSimulator
from cph_exporter.simulator.watched import ENCODE_SERVER_STATUSES
from tests.helpers.fleet import fleet
from tests.helpers.samples import by_server, samples
from tests.helpers.scrape import ExporterFactory, scrape
from tests.helpers.watched import exporter_of, watched_simulator

STATES = ("creating", "running", "abnormal", "restarting", "unknown")
TYPES = {0: "server", 1: "container"}


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    yield from watched_simulator()


def test_every_encode_server_appears_as_the_contract_says(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    got = samples(scrape(exporter_of(make_exporter, sim)))
    encoders = sim.watched("ListEncodeServers")
    assert {e["status"] for e in encoders} == set(ENCODE_SERVER_STATUSES)  # every status
    assert {e["type"] for e in encoders} == {0, 1}
    assert got["cph_encode_servers_up"][0][1] == 1
    status = {
        labels["encode_server_id"]: (labels, v) for labels, v in got["cph_encode_server_status"]
    }
    states: dict[str, dict[str, float]] = {}
    for labels, value in got["cph_encode_server_state"]:
        states.setdefault(labels["encode_server_id"], {})[labels["state"]] = value
    assert set(states) == {e["encode_server_id"] for e in encoders}
    for encoder in encoders:
        eid = encoder["encode_server_id"]
        identity = {
            "encode_server_id": eid,
            "encode_server_name": encoder["encode_server_name"],
            "server_id": encoder["server_id"],
            "type": TYPES[encoder["type"]],
        }
        if encoder["status"] is None:
            assert eid not in status  # no code, no series; its state is unknown
        else:
            assert status[eid] == (identity, encoder["status"])
        current = ENCODE_SERVER_STATES.get(encoder["status"], "unknown")
        assert states[eid] == {name: float(name == current) for name in STATES}


def test_every_server_shows_the_capacity_of_its_flavour(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    got = samples(scrape(exporter_of(make_exporter, sim)))
    models = {
        m["phone_model_name"]: m["phone_capacity"] for m in sim.watched("ListCloudPhoneModels")
    }
    assert MISSING_PHONE_MODEL not in models
    assert got["cph_phone_models_up"][0][1] == 1
    capacity = by_server(got["cph_server_phone_capacity"])
    servers = fleet()
    assert any(s["phone_model_name"] == MISSING_PHONE_MODEL for s in servers)
    for server in servers:
        sid = server["server_id"]
        if server["phone_model_name"] not in models:
            assert sid not in capacity  # the flavour is unknown: no series
            continue
        assert [c["value"] for c in capacity[sid]] == [models[server["phone_model_name"]]]
        assert capacity[sid][0]["server_name"] == server["server_name"]


def test_collectors_turn_off_and_list_nothing(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    off = dict.fromkeys(("scheduled_events", "encode_servers", "phone_capacity"), False)
    text = scrape(make_exporter(sim, **off))
    for prefix in (
        "cph_scheduled_events",
        "cph_server_scheduled",
        "cph_encode",
        "cph_phone_models",
        "cph_server_phone_capacity",
    ):
        assert prefix not in text
    for operation in ("ListScheduledEvents", "ListEncodeServers", "ListCloudPhoneModels"):
        assert sim.calls[operation] == 0


def test_listings_are_cached_on_their_own_ttls(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = exporter_of(
        make_exporter, sim, cache_ttl=0.1, cache_max_stale=60.0, scheduled_events_ttl=0.1
    )
    scrape(exporter)
    before = sim.calls
    for _ in range(20):  # until at least one more server refresh has run
        scrape(exporter)
        if sim.calls["ListCloudPhoneServers"] >= before["ListCloudPhoneServers"] + 2:
            break
        exporter.refresher.snapshot(timeout=1)
        time.sleep(0.15)
    after = sim.calls
    assert after["ListCloudPhoneServers"] > before["ListCloudPhoneServers"]
    assert after["ListScheduledEvents"] > before["ListScheduledEvents"]
    # 60s and 6h TTLs: listed once, however many refreshes ran since.
    assert after["ListEncodeServers"] == before["ListEncodeServers"] == 1
    assert after["ListCloudPhoneModels"] == before["ListCloudPhoneModels"] == 1
