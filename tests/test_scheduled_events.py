"""Scheduled maintenance events, from the simulator's ListScheduledEvents to the exposition."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from cph_exporter.cph.client import CphClient
from cph_exporter.cph.events import ScheduledEvent, parse_event_time, parse_scheduled_event
from cph_exporter.cph.models import parse_server
from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.credentials.values import Credentials
from cph_exporter.metrics.scheduled_events import ScheduledEventCollector, shown
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot, Watched
from cph_exporter.refresh.targets import TargetView
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_fleet,
    generate_scheduled_events,
)
from cph_exporter.simulator.watched import EVENT_STATES, EVENT_TYPES, FINAL_STATES
from tests.helpers.fleet import fleet
from tests.helpers.net import serve
from tests.helpers.samples import samples
from tests.helpers.scrape import ExporterFactory, scrape
from tests.helpers.watched import exporter_of, unix, watched_simulator

NOW = 1_800_000_000.0
DAY = 86400.0
TIMES = ("not_before", "not_after", "not_before_deadline")


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    yield from watched_simulator()


def expected_shown(event: dict[str, Any], now: float) -> bool:
    if event["state"] not in FINAL_STATES:
        return True
    finished = unix(event.get("finish_time"))
    return finished is not None and now - finished <= DAY


def test_the_simulated_events_cover_every_case() -> None:
    events = generate_scheduled_events(fleet(), NOW)
    assert {(e["type"], e["state"]) for e in events} == {
        (t, s) for t in EVENT_TYPES for s in EVENT_STATES
    }
    for key in (*TIMES, "publish_time", "start_time", "finish_time"):
        assert any(key in e for e in events) and any(key not in e for e in events), key
    forms = {
        e["not_before"][10] + str(e["not_before"].endswith(".250Z"))
        for e in events
        if "not_before" in e
    }
    assert forms == {"TFalse", " False", "TTrue"}  # Z, space, fractional
    final = [e for e in events if e["state"] in FINAL_STATES]
    assert any(expected_shown(e, NOW) for e in final)
    assert any(not expected_shown(e, NOW) for e in final)


def test_every_event_appears_as_the_contract_says(
    sim: CphSimulator, make_exporter: ExporterFactory
) -> None:
    got = samples(scrape(exporter_of(make_exporter, sim)))
    now = time.time()
    events = sim.watched("ListScheduledEvents")
    servers = {s["server_id"]: s for s in fleet()}
    assert got["cph_up"][0][1] == 1
    assert got["cph_scheduled_events_up"][0][1] == 1
    info = {
        labels["event_id"]: (labels, value)
        for labels, value in got["cph_server_scheduled_event_info"]
    }
    wanted = [e for e in events if expected_shown(e, now)]
    assert set(info) == {e["event_id"] for e in wanted}
    assert len(wanted) < len(events)  # final events of long ago are left out
    for event in wanted:
        labels, value = info[event["event_id"]]
        server = servers[event["server_id"]]
        assert value == 1
        assert labels == {
            "server_id": server["server_id"],
            "server_name": server["server_name"],
            "availability_zone": server["availability_zone"],
            "network_version": server["network_version"],
            "event_id": event["event_id"],
            "event_type": event["type"],
            "authorization_type": event["authorization_type"],
            "state": event["state"],
        }
    for field in TIMES:
        series = {
            labels["event_id"]: value
            for labels, value in got[f"cph_server_scheduled_event_{field}_timestamp_seconds"]
        }
        assert series == {e["event_id"]: unix(e[field]) for e in wanted if field in e}, field


def test_final_events_show_for_24_hours_after_they_finished() -> None:
    server = parse_server(fleet()[0])
    finished = "2027-01-15T08:00:00Z"
    events = (
        *(
            parse_scheduled_event(
                {
                    "event_id": f"e-{state}",
                    "server_id": server.server_id,
                    "state": state,
                    "type": "system-maintenance",
                    "finish_time": finished,
                }
            )
            for state in EVENT_STATES
        ),
        parse_scheduled_event(
            {"event_id": "no-finish", "server_id": server.server_id, "state": "failed"}
        ),
    )
    finish = unix(finished)
    assert finish is not None
    watched = Watched(scheduled_events=events, scheduled_events_up=True)
    snapshot = Snapshot(
        servers=(ServerRecord(server, None),),
        up=True,
        completed_at=0.0,
        refresh_duration=0.0,
        last_success_at=0.0,
        data_at=0.0,
        watched=watched,
    )
    views = (TargetView("r", "p", snapshot),)

    def shown_at(now: float) -> set[str]:
        collector = ScheduledEventCollector(lambda: views, clock=lambda: now)
        family = next(f for f in collector.collect() if f.name == "cph_server_scheduled_event_info")
        return {s.labels["event_id"] for s in family.samples}

    going_on = {"e-inquiring", "e-scheduled", "e-executing"}
    final = {"e-completed", "e-failed", "e-canceled"}
    assert shown_at(finish + DAY) == going_on | final
    assert shown_at(finish + DAY + 1) == going_on
    assert shown_at(finish - 60) == going_on | final  # a finish_time ahead of our clock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00Z", 1800000000.0),
        ("2027-01-15 08:00:00", 1800000000.0),
        ("2027-01-15T08:00:00.250Z", 1800000000.25),
        ("2027-01-15 08:00:00.250", 1800000000.25),
        ("", None),
        (None, None),
        ("tomorrow", None),
        (1799913600, None),
    ],
)
def test_event_times_in_every_form(text: object, expected: float | None) -> None:
    assert parse_event_time(text) == expected


def test_a_missing_time_makes_no_series_and_an_odd_event_no_crash() -> None:
    event = parse_scheduled_event({"event_id": "x", "not_before": None, "state": 3})
    assert isinstance(event, ScheduledEvent)
    assert (event.not_before, event.not_after, event.state) == (None, None, "3")
    assert shown(event, NOW)  # an unknown state is not final: still shown


def client_of(url: str, **kwargs: Any) -> CphClient:
    auth = AkSkAuth(
        lambda: Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY),
        project_id=SIMULATOR_PROJECT_ID,
    )
    return CphClient(url, SIMULATOR_PROJECT_ID, auth, **kwargs)


def events_simulator(servers: list[dict[str, Any]], events: list[dict[str, Any]]) -> CphSimulator:
    """A simulator of these servers, serving these scheduled events."""
    return CphSimulator(
        servers,
        {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
        SIMULATOR_PROJECT_ID,
        scheduled_events=events,
    )


def test_marker_paging_lists_every_event_once() -> None:
    servers = generate_fleet(40)
    events = generate_scheduled_events(servers, NOW, count=250)
    with events_simulator(servers, events) as simulator:
        client = client_of(simulator.url)
        listed = client.list_scheduled_events()
        assert simulator.calls["ListScheduledEvents"] == 3  # 100 + 100 + 50, no empty page
        assert sorted(e["event_id"] for e in listed.entries) == sorted(
            e["event_id"] for e in events
        )
        assert not listed.truncated
        one = servers[3]["server_id"]
        own = client.list_scheduled_events(server_id=one)
        assert {e["server_id"] for e in own.entries} == {one}
        assert len(own.entries) == sum(e["server_id"] == one for e in events)
        client.close()


class _RepeatingMarker(BaseHTTPRequestHandler):
    """A broken gateway: every page names the same next page."""

    def do_GET(self) -> None:
        page = {
            "scheduled_events": [{"event_id": f"e-{len(self.path)}"}],
            "page_info": {"next_marker": "m1"},
        }
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def repeating() -> Iterator[str]:
    yield from serve(_RepeatingMarker)


def test_a_repeating_marker_ends_the_listing(repeating: str) -> None:
    client = client_of(repeating, max_pages=50)
    listed = client.list_scheduled_events()
    client.close()
    assert listed.truncated
    assert len(listed.entries) == 2  # the first page, the page of m1, then m1 again: stop


def test_the_page_cap_ends_a_marker_listing() -> None:
    servers = generate_fleet(10)
    events = generate_scheduled_events(servers, NOW, count=350)
    with events_simulator(servers, events) as simulator:
        client = client_of(simulator.url, max_pages=2)
        listed = client.list_scheduled_events()
        client.close()
        assert listed.truncated and len(listed.entries) == 200
        assert simulator.calls["ListScheduledEvents"] == 2


def test_the_simulator_refuses_what_the_gateway_refuses(sim: CphSimulator) -> None:
    session = requests.Session()
    session.auth = AkSkAuth(
        lambda: Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY),
        project_id=SIMULATOR_PROJECT_ID,
    )
    url = f"{sim.url}/v1/{SIMULATOR_PROJECT_ID}/cloud-phone/scheduled-events"
    for query in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"marker": "nope"},
        {"state": "sleeping"},
        {"type": "reboot"},
        {"publish_since": "yesterday"},
    ):
        answer = session.get(url, params=query, timeout=10)
        assert answer.status_code == 400, query
        assert answer.json()["error_code"] == "CPH.0100400"
    events = sim.watched("ListScheduledEvents")
    first = session.get(url, timeout=10).json()
    assert len(first["scheduled_events"]) == 10  # the documented default limit
    assert first["page_info"]["next_marker"] == first["scheduled_events"][-1]["event_id"]
    chosen = session.get(
        url,
        params={"state": "inquiring,failed", "type": "system-maintenance", "limit": "100"},
        timeout=10,
    ).json()
    assert {(e["state"], e["type"]) for e in chosen["scheduled_events"]} == {
        ("inquiring", "system-maintenance"),
        ("failed", "system-maintenance"),
    }
    assert "page_info" not in chosen  # the last page
    one = events[5]["event_id"]
    assert [
        e["event_id"]
        for e in session.get(url, params={"event_id": one}, timeout=10).json()["scheduled_events"]
    ] == [one]
    session.close()
