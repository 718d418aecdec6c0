"""The fault suite: the real exporter against the simulator, under every fault of a hostile API.

Each case asserts what the scrape shows (cph_up, the per-server series, cph_exporter_*) and
that every server the fault does not touch is complete. Every test also runs the secret
scan: the SK and the security token never reach a log record, a scrape or an error.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from cph_exporter.app import Exporter
from cph_exporter.cph import client as client_module
from cph_exporter.cph.client import RetryPolicy, parse_retry_after
from cph_exporter.cph.errors import ApiError
from cph_exporter.credentials.values import Credentials
from cph_exporter.metrics.common import MAX_LABEL_VALUE_BYTES
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    CphSimulator,
    generate_fleet,
)
from tests.helpers.clock import expire
from tests.helpers.fleet import fleet
from tests.helpers.rules import CONTRACT
from tests.helpers.samples import Samples, assert_complete, by_server, samples
from tests.helpers.scrape import ExporterFactory, get_metrics

LIST = "ListCloudPhoneServers"
DETAIL = "GetCloudPhoneServerDetail"
AK = SIMULATOR_ACCESS_KEY
SK = "fault-suite-SK-9d1e3b7c0a5f"
TOKEN = "fault-suite-SECURITY-TOKEN-5f2a8c41e7"
SECRETS = (SK, TOKEN)
CREDENTIALS = Credentials(AK, SK, TOKEN)
# The per-server families: every cph_server_* of the contract but the phone counts.
PER_SERVER = tuple(sorted(m for m in CONTRACT if m.startswith("cph_server_")))
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# ---- fixtures and helpers ----


@pytest.fixture(autouse=True)
def secrets_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The secret scan of every test here: no log record (tracebacks included) has a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.get_records("call"):
        line = formatter.format(record)
        assert not any(secret in line for secret in SECRETS), line


@pytest.fixture
def api_keys() -> dict[str, str]:
    """AK -> SK as the simulator knows them, read on every request: change it to rotate."""
    return {AK: SK}


@pytest.fixture
def sim(api_keys: dict[str, str]) -> Iterator[CphSimulator]:
    with CphSimulator(fleet(), api_keys, SIMULATOR_PROJECT_ID) as simulator:
        yield simulator


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same attempts, shorter backoff: where retry timing is not what a test is about."""
    monkeypatch.setattr(
        client_module,
        "RetryPolicy",
        functools.partial(RetryPolicy, backoff_base=0.02, backoff_cap=0.1),
    )


Start = Callable[..., Exporter]


@pytest.fixture
def start(make_exporter: ExporterFactory) -> Start:
    """An exporter signing with CREDENTIALS (a security token included)."""

    def build(simulator: CphSimulator, **settings: Any) -> Exporter:
        return make_exporter(simulator, CREDENTIALS, **settings)

    return build


def get(exporter: Exporter, **headers: str) -> requests.Response:
    response = get_metrics(exporter, **headers)
    assert not any(secret in response.text for secret in SECRETS)
    return response


def scrape(exporter: Exporter, **headers: str) -> Samples:
    return samples(get(exporter, **headers).text)


def scrape_until(
    exporter: Exporter, done: Callable[[Samples], bool], timeout: float = 60.0, **headers: str
) -> Samples:
    """Scrapes until `done` holds: refreshes finish in the background."""
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(exporter, **headers)
        if done(got):
            return got
        assert time.monotonic() < deadline, f"not reached in {timeout}s"
        time.sleep(0.05)


def up(got: Samples) -> float:
    return got["cph_up"][0][1]


def value(got: Samples, name: str) -> float:
    (only,) = got[name]
    return only[1]


def requests_total(got: Samples, operation: str, code: str) -> float:
    return sum(
        v
        for labels, v in got["cph_exporter_api_requests_total"]
        if labels["operation"] == operation and labels["code"] == code
    )


def without(got: Samples, *server_ids: str) -> Samples:
    """The scrape as if those servers were not there: to check the others are complete."""
    return {
        name: [(labels, v) for labels, v in series if labels.get("server_id") not in server_ids]
        for name, series in got.items()
    }


def series_of(got: Samples, server_id: str) -> dict[str, int]:
    """How many series of each per-server family the server has."""
    return {
        name: sum(1 for labels, _ in got[name] if labels["server_id"] == server_id)
        for name in PER_SERVER
    }


def last_success(got: Samples) -> float:
    return value(got, "cph_exporter_last_refresh_success_timestamp_seconds")


def fresh(got: Samples, within: float = 1.0) -> bool:
    return value(got, "cph_exporter_data_age_seconds") < within


def settled_list_calls(exporter: Exporter, sim: CphSimulator) -> int:
    """List calls so far, once no refresh is under way: warming may have outlived the TTL of
    the start's refresh and begun another, whose list call would otherwise land later."""
    deadline = time.monotonic() + 60
    while exporter.refresher.refreshing:
        assert time.monotonic() < deadline, "a refresh never ended"
        time.sleep(0.05)
    return sim.calls[LIST]


def warm(exporter: Exporter, servers: list[dict[str, Any]]) -> Samples:
    got = scrape(exporter)
    assert up(got) == 1
    assert_complete(got, servers)
    return got


def newest_first(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(servers, key=lambda s: (s["create_time"], s["server_id"]), reverse=True)


# ---- broken answers: HTML 5xx, truncated JSON, 200 with an error body, reset ----

LIST_FAULTS = ["html_502", "html_503", "html_504", "truncated", "json_error_200", "reset"]


@pytest.mark.parametrize("kind", LIST_FAULTS)
def test_broken_list_keeps_the_last_data_with_cph_up_0(
    sim: CphSimulator,
    start: Start,
    fast_retries: None,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    first = warm(exporter, servers)
    listed = settled_list_calls(exporter, sim)
    sim.faults.list_fault = kind
    expire(exporter)
    got = scrape(exporter)  # waits for the failing refresh: retries are quick here
    assert up(got) == 0
    assert_complete(got, servers)  # the last data, still within --cache.max-stale
    assert last_success(got) == last_success(first)  # and it says how old that is
    retried = kind.startswith("html_") or kind == "reset"
    assert sim.calls[LIST] == listed + (4 if retried else 1)
    code = kind[-3:] if kind.startswith("html_") else ("error" if kind == "reset" else "200")
    assert requests_total(got, LIST, code) >= (4 if retried else 1)
    assert "refresh failed, serving the last data" in caplog.text
    if kind == "json_error_200":
        assert "CPH.0100500" in caplog.text  # the error_code behind the 200
    # The API recovers: fresh data at the next refresh.
    sim.faults.list_fault = None
    expire(exporter)
    got = scrape(exporter)
    assert up(got) == 1 and value(got, "cph_exporter_data_age_seconds") < 0.3
    assert_complete(got, servers)


DETAIL_FAULTS = [*LIST_FAULTS, "garbage", "not_found"]


@pytest.mark.parametrize("kind", DETAIL_FAULTS)
def test_broken_detail_keeps_the_list_data_and_sinks_no_other_server(
    sim: CphSimulator, start: Start, fast_retries: None, kind: str
) -> None:
    servers = fleet()
    victim = next(s for s in servers if s.get("volumes") and s.get("band_widths"))
    sim.faults.broken_details[victim["server_id"]] = kind
    got = scrape(start(sim))
    assert up(got) == 1
    assert_complete(without(got, victim["server_id"]), [s for s in servers if s is not victim])
    counts = series_of(got, victim["server_id"])
    assert counts["cph_server_bandwidth_size_bytes_per_second"] == 0
    assert counts["cph_server_volume_size_bytes"] == 0
    assert counts["cph_server_status"] == counts["cph_server_info"] == 1
    assert by_server(got["cph_server_status"])[victim["server_id"]][0]["value"] == victim["status"]
    assert value(got, "cph_exporter_servers_without_details") == 1
    assert value(got, "cph_exporter_detail_fetch_failures_total") == 1
    retried = kind.startswith("html_") or kind == "reset"
    assert sim.detail_calls[victim["server_id"]] == (4 if retried else 1)


def test_duplicate_json_keys_the_last_one_wins(sim: CphSimulator, start: Start) -> None:
    servers = fleet()
    victim = next(s for s in servers if s.get("volumes") and s.get("band_widths"))
    volume = victim["volumes"][0]
    # The first "volumes" is replaced whole by the second; inside it the last size counts.
    raw = (
        f'{{"server_id": "{victim["server_id"]}",'
        ' "volumes": [{"volume_id": "dropped", "volume_size": 1}],'
        f' "volumes": [{{"volume_id": "{volume["volume_id"]}", "volume_size": 7,'
        f' "volume_size": {volume["volume_size"]}}}],'
        ' "band_widths": [{"band_width_id": "dropped", "band_width_size": 1}],'
        ' "band_widths": null}'
    )
    sim.faults.raw_details[victim["server_id"]] = raw.encode()
    got = scrape(start(sim))
    assert up(got) == 1
    assert_complete(
        got,
        [s for s in servers if s is not victim]
        + [victim | {"volumes": [volume], "band_widths": None}],
    )


def test_absurdly_deep_json_is_one_broken_detail(sim: CphSimulator, start: Start) -> None:
    servers = fleet()
    victim = servers[3]
    sim.faults.raw_details[victim["server_id"]] = b"[" * 100_000 + b"]" * 100_000
    got = scrape(start(sim))
    assert up(got) == 1
    assert_complete(without(got, victim["server_id"]), [s for s in servers if s is not victim])
    assert series_of(got, victim["server_id"])["cph_server_status"] == 1
    assert value(got, "cph_exporter_servers_without_details") == 1


# ---- throttling ----


def test_429_storm_with_retry_after_answers_in_time_then_recovers(
    sim: CphSimulator, start: Start
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    warm(exporter, servers)
    sim.faults.throttle_every = 1  # every call
    sim.faults.retry_after = "1"
    expire(exporter)
    began = time.monotonic()
    got = scrape(exporter, **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    assert exporter.refresher.refreshing  # answered without waiting out the Retry-After
    assert_complete(got, servers)  # the last data while the refresh waits out Retry-After
    # Four attempts a second apart, then the refresh gives up: cph_up 0, data kept.
    got = scrape_until(exporter, lambda g: up(g) == 0, timeout=60)
    assert time.monotonic() - began >= 3 * 1.0
    assert_complete(got, servers)
    assert requests_total(got, LIST, "429") >= 4
    sim.faults.throttle_every = 0
    got = scrape_until(exporter, lambda g: up(g) == 1, timeout=60)
    assert_complete(got, servers)


def test_429_storm_without_retry_after_backs_off_and_recovers(
    sim: CphSimulator, start: Start
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    first = warm(exporter, servers)
    listed = settled_list_calls(exporter, sim)
    sim.faults.throttle_every = 1
    expire(exporter)
    got = scrape(exporter, **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    assert exporter.refresher.refreshing  # answered while the refresh backs off
    assert up(got) == 1 and last_success(got) == last_success(first)  # stale
    assert_complete(got, servers)
    # Backing off 2-5 s after APIGW.0308 without Retry-After: no second try yet. Counted at
    # once: the scrape itself waited about 1.4 s, time enough for an immediate retry to show,
    # and every moment more on a loaded machine brings the earliest real retry closer.
    assert sim.calls[LIST] == listed + 1
    sim.faults.throttle_every = 0
    got = scrape_until(exporter, lambda g: up(g) == 1 and fresh(g), timeout=60)
    assert_complete(got, servers)
    assert requests_total(got, LIST, "429") >= 1


@pytest.mark.parametrize(
    "retry_after",
    ["86400", "-5", "soon", "Wed, 21 Oct 2099 07:28:00 GMT", "1e400"],
)
def test_absurd_retry_after_never_delays_the_scrape_or_hammers_the_api(
    sim: CphSimulator, start: Start, retry_after: str
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3, refresh_timeout=2.0)
    warm(exporter, servers)
    listed = settled_list_calls(exporter, sim)
    sim.faults.throttle_every = 1
    sim.faults.retry_after = retry_after
    expire(exporter)
    began = time.monotonic()
    got = scrape(exporter, **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    # Not held by the absurd wait: far below the 30 s retry cap, whatever the machine's load.
    assert time.monotonic() - began < 30.0
    assert_complete(got, servers)
    # Nonsense is no licence to retry at once: no second try within half a second.
    time.sleep(0.5)
    assert sim.calls[LIST] == listed + 1
    # No wait outlives the refresh deadline (2 s): the refresh ends, with cph_up 0.
    got = scrape_until(exporter, lambda g: up(g) == 0, timeout=60)
    assert_complete(got, servers)
    # Ended by its own deadline, not by the absurd wait (a day, or for ever).
    assert value(got, "cph_exporter_refresh_duration_seconds") < 60


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        (" 0 ", 0.0),
        ("86400", 86400.0),  # honest; the retry policy caps it, the deadline bounds it
        ("-5", None),  # not delay-seconds: the caller's backoff applies, not "at once"
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date passed means now
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now) == expected


def test_close_ends_a_refresh_waiting_out_retry_after(sim: CphSimulator, start: Start) -> None:
    sim.faults.throttle_every = 1
    sim.faults.retry_after = "20"  # within the 60 s refresh deadline: waited out
    before = set(threading.enumerate())
    exporter = start(sim)  # the first refresh starts at once
    got = scrape(exporter, **{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert up(got) == 0 and not got["cph_server_status"]  # nothing yet, and it says so
    refreshing = [t for t in set(threading.enumerate()) - before if t.name.startswith("cph-")]
    assert refreshing and sim.calls[LIST] == 1
    exporter.close()
    for thread in refreshing:  # well before the 20 s wait is over: close() ended it
        thread.join(10.0)
        assert not thread.is_alive(), thread.name
    assert sim.calls[LIST] == 1


# ---- credentials ----


def test_401_after_working_credentials_keeps_the_data_marked_stale(
    sim: CphSimulator, api_keys: dict[str, str], start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    first = warm(exporter, servers)
    api_keys[AK] = "rotated-somewhere-else"  # the exporter's SK stops working
    calls = sim.calls[LIST]
    expire(exporter)
    got = scrape(exporter)
    assert up(got) == 0
    assert_complete(got, servers)
    assert last_success(got) == last_success(first)
    assert sim.calls[LIST] == calls + 1  # never retried
    assert requests_total(got, LIST, "401") == 1
    assert "APIGW.0301" in caplog.text and "401" in caplog.text


# ---- slow and unreachable APIs ----


def test_api_ten_times_slower_than_the_scrape_timeout(sim: CphSimulator, start: Start) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.5, request_timeout=2.0, refresh_timeout=3.0)
    warm(exporter, servers)
    sim.faults.latency = 10.0  # the scrape timeout is 1 s
    expire(exporter)
    ages: list[float] = []
    seen_down = False
    until = time.monotonic() + 60
    while not seen_down:
        began = time.monotonic()
        got = scrape(exporter, **{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert time.monotonic() - began < 10.0  # never waits for the API's 10 s
        assert_complete(got, servers)  # stale, never absent, within --cache.max-stale
        ages.append(value(got, "cph_exporter_data_age_seconds"))
        seen_down = up(got) == 0  # the refresh gave up at its deadline
        assert time.monotonic() < until
        time.sleep(0.2)
    assert ages == sorted(ages) and ages[-1] >= 3.0  # ageing, past the refresh deadline
    sim.faults.latency = 0.0
    got = scrape_until(
        exporter,
        lambda g: up(g) == 1 and fresh(g),
        timeout=60,
        **{"X-Prometheus-Scrape-Timeout-Seconds": "1"},
    )
    assert_complete(got, servers)


def test_connection_refused_then_the_api_comes_back(
    sim: CphSimulator,
    api_keys: dict[str, str],
    start: Start,
    fast_retries: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    warm(exporter, servers)
    port = int(sim.url.rsplit(":", 1)[1])
    sim.stop()
    expire(exporter)
    got = scrape(exporter)
    assert up(got) == 0
    assert_complete(got, servers)
    assert requests_total(got, LIST, "error") == 4
    assert "connection refused" in caplog.text
    with CphSimulator(servers, api_keys, SIMULATOR_PROJECT_ID, port=port):
        expire(exporter)
        got = scrape(exporter)
    assert up(got) == 1 and fresh(got)
    assert_complete(got, servers)


# ---- the fleet changing under the listing ----


def test_server_deleted_between_list_and_detail(sim: CphSimulator, start: Start) -> None:
    servers = fleet()
    victim = next(s for s in servers if s.get("volumes") and s.get("band_widths"))
    rest = [s for s in servers if s is not victim]
    sim.faults.list_hook = lambda offset: sim.set_servers(rest)
    exporter = start(sim, cache_ttl=0.3)
    got = scrape(exporter)
    assert up(got) == 1
    assert_complete(without(got, victim["server_id"]), rest)
    counts = series_of(got, victim["server_id"])  # the list's data, no details
    assert counts["cph_server_status"] == 1 and counts["cph_server_volume_size_bytes"] == 0
    assert value(got, "cph_exporter_servers_without_details") == 1
    # At the next refresh it is gone altogether.
    sim.faults.list_hook = None
    expire(exporter)
    got = scrape(exporter)
    assert_complete(got, rest)
    assert value(got, "cph_exporter_servers_without_details") == 0


def test_server_created_between_two_pages(api_keys: dict[str, str], start: Start) -> None:
    servers, created = generate_fleet(250), generate_fleet(251)[250]  # created is the newest
    with CphSimulator(servers, api_keys, SIMULATOR_PROJECT_ID) as simulator:

        def create_once(offset: int) -> None:
            if offset == 0:
                simulator.set_servers([*servers, created])

        simulator.faults.list_hook = create_once
        exporter = start(simulator, cache_ttl=0.3)
        # Page 2 now starts with page 1's last server: de-duplicated, nothing lost.
        got = scrape(exporter)
        assert up(got) == 1
        assert_complete(got, servers)
        simulator.faults.list_hook = None
        expire(exporter)
        got = scrape(exporter)
    assert_complete(got, [*servers, created])


def test_list_pages_that_repeat_servers_make_no_duplicate_series(
    api_keys: dict[str, str], start: Start
) -> None:
    servers = generate_fleet(250)
    with CphSimulator(servers, api_keys, SIMULATOR_PROJECT_ID) as simulator:
        simulator.faults.repeat_on_pages = True
        got = scrape(start(simulator))
        assert simulator.calls[LIST] == 3
        assert_complete(got, servers)
    for name in PER_SERVER:
        label_sets = [tuple(sorted(labels.items())) for labels, _ in got[name]]
        assert len(label_sets) == len(set(label_sets)), name
    assert simulator.calls[DETAIL] == 250  # each server's details fetched once


def test_a_list_that_never_ends_stops_at_the_page_cap(
    sim: CphSimulator, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.endless_list = True
    got = scrape(start(sim, max_pages=3))
    assert sim.calls[LIST] == 3
    assert up(got) == 1  # what was listed is true; the log says more may exist
    order = newest_first(fleet())
    listed = [
        order[n % len(order)]
        | {"server_id": f"endless-{n:010d}", "server_name": f"endless-{n:010d}"}
        for n in range(300)
    ]
    assert_complete(got, listed)
    assert any(
        r.levelno == logging.WARNING and "page cap" in r.getMessage() for r in caplog.records
    )


def test_servers_gone_from_the_list_leave_metrics_and_memory(
    sim: CphSimulator, start: Start
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3)
    warm(exporter, servers)
    kept, gone = servers[:-5], servers[-5:]
    sim.set_servers(kept)
    expire(exporter)
    got = scrape(exporter)
    assert_complete(got, kept)  # only the kept ones have series, in every family
    for name in PER_SERVER:
        assert not {labels["server_id"] for labels, _ in got[name]} & {s["server_id"] for s in gone}
    cached = set(exporter.refresher._details.keys())
    assert cached == {s["server_id"] for s in kept}


def test_past_max_stale_per_server_series_vanish_and_cph_up_is_0(
    sim: CphSimulator, start: Start, fast_retries: None
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.2, cache_max_stale=0.8)
    warm(exporter, servers)
    sim.faults.list_fault = "html_503"
    expire(exporter)
    got = scrape(exporter)
    assert up(got) == 0
    assert_complete(got, servers)  # stale, not yet too stale
    got = scrape_until(exporter, lambda g: not g["cph_server_status"], timeout=60)
    assert up(got) == 0
    for name in PER_SERVER:
        assert not got[name], name
    assert value(got, "cph_exporter_data_age_seconds") > 0.8  # says how old it would be
    assert value(got, "cph_exporter_servers_without_details") == 0
    sim.faults.list_fault = None
    got = scrape_until(exporter, lambda g: up(g) == 1, timeout=60)
    assert_complete(got, servers)


# ---- awkward values ----


def test_wrong_types_status_as_string_size_as_null(api_keys: dict[str, str], start: Start) -> None:
    servers = fleet()
    odd = next(s for s in servers if len(s.get("volumes") or []) >= 2)
    sized = next(s for s in servers if s.get("band_widths") and s is not odd)
    odd_volumes = [dict(v) for v in odd["volumes"]]
    odd_volumes[0]["volume_size"] = None
    sized_bandwidths = [
        dict(b) | {"band_width_size": str(b["band_width_size"])} for b in sized["band_widths"]
    ]
    served = [
        s | {"volumes": odd_volumes}
        if s is odd
        else s | {"band_widths": sized_bandwidths}
        if s is sized
        else s
        for s in servers
    ]
    with CphSimulator(served, api_keys, SIMULATOR_PROJECT_ID) as simulator:
        simulator.faults.list_fault = "wrong_types"  # every status a string: "5"
        got = scrape(start(simulator))
    assert up(got) == 1
    # Expected: the numbers the strings spell; a null size is no volume series at all.
    expected = [s | {"volumes": odd_volumes[1:]} if s is odd else s for s in servers]
    assert_complete(got, expected)


def test_nan_and_huge_numbers_never_become_values(api_keys: dict[str, str], start: Start) -> None:
    servers = fleet()
    overflowing = next(s for s in servers if s.get("volumes") and s.get("band_widths"))
    nan_status, huge_status = [s for s in servers[2:] if s is not overflowing][:2]
    odd: dict[str, dict[str, Any]] = {
        nan_status["server_id"]: {"status": float("nan")},
        overflowing["server_id"]: {
            # Finite in the JSON, infinite once scaled to bytes.
            "volumes": [v | {"volume_size": 1e308} for v in overflowing["volumes"]]
            + [{"volume_id": "nan-volume", "volume_size": float("nan")}],
            "band_widths": [b | {"band_width_size": 1e308} for b in overflowing["band_widths"]],
        },
        huge_status["server_id"]: {"status": 10**400},  # a JSON integer no float can hold
    }
    served = [s | odd.get(s["server_id"], {}) for s in servers]
    with CphSimulator(served, api_keys, SIMULATOR_PROJECT_ID) as simulator:
        response = get(start(simulator))
    got = samples(response.text)
    assert up(got) == 1
    touched = list(odd)
    assert_complete(without(got, *touched), [s for s in servers if s["server_id"] not in odd])
    for name, series in got.items():
        assert all(math.isfinite(v) for _, v in series), name
    for server_id in touched:  # still listed, status and state from what is usable
        assert series_of(got, server_id)["cph_server_state"] == 9
    status = by_server(got["cph_server_status"])
    assert nan_status["server_id"] not in status and huge_status["server_id"] not in status
    states = by_server(got["cph_server_state"])
    for server_id in (nan_status["server_id"], huge_status["server_id"]):
        assert [s["state"] for s in states[server_id] if s["value"] == 1] == ["unknown"]
    counts = series_of(got, overflowing["server_id"])
    assert counts["cph_server_volume_size_bytes"] == 0
    assert counts["cph_server_bandwidth_size_bytes_per_second"] == 0


WEIRD = 'say "hi" \\ back\\slash\nnew line \ud800 ünï'
LONG = "L" * 10_000


def test_awkward_label_values_round_trip_and_parse(api_keys: dict[str, str], start: Start) -> None:
    servers = fleet()
    weird, long_named = servers[0], servers[1]
    volume = {"volume_id": "v\\1\n", "volume_name": WEIRD, "volume_size": 10, "volume_type": "é"}
    served = [
        s | {"server_name": WEIRD, "keypair_name": '"', "volumes": [volume]}
        if s is weird
        else s | {"server_name": LONG, "vpc_id": LONG + "é"}
        if s is long_named
        else s
        for s in servers
    ]
    with CphSimulator(served, api_keys, SIMULATOR_PROJECT_ID) as simulator:
        exporter = start(simulator)
        text = get(exporter).text
        om = get(exporter, Accept=OPENMETRICS).text
    got = samples(text)
    assert up(got) == 1
    assert_complete(without(got, weird["server_id"], long_named["server_id"]), servers[2:])
    shown = WEIRD.replace("\ud800", "\ufffd")  # a lone surrogate becomes U+FFFD
    names = {labels["server_id"]: labels["server_name"] for labels, _ in got["cph_server_status"]}
    assert names[weird["server_id"]] == shown
    (vol,) = [
        lb for lb, _ in got["cph_server_volume_size_bytes"] if lb["server_id"] == weird["server_id"]
    ]
    assert (vol["volume_id"], vol["volume_name"], vol["volume_type"]) == ("v\\1\n", shown, "é")
    # 10 kB names are cut to the documented limit, visibly, on a character boundary.
    cut = names[long_named["server_id"]]
    assert len(cut.encode()) <= MAX_LABEL_VALUE_BYTES and cut.endswith("…")
    assert LONG.startswith(cut[:-1])
    info = by_server(got["cph_server_info"])[long_named["server_id"]][0]
    assert len(info["vpc_id"].encode()) <= MAX_LABEL_VALUE_BYTES
    # The OpenMetrics rendering parses with the OpenMetrics parser, to the same values.
    om_names = {
        s.labels["server_id"]: s.labels["server_name"]
        for family in openmetrics_families(om)
        if family.name == "cph_server_status"
        for s in family.samples
    }
    assert om_names == names
    if shutil.which("promtool"):
        # promtool reads the text format (OpenMetrics counters confuse its HELP check).
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ---- the secret scan: errors and scrapes under every fault ----


def _stop(simulator: CphSimulator, keys: dict[str, str]) -> None:
    simulator.stop()


def _rotate(simulator: CphSimulator, keys: dict[str, str]) -> None:
    keys[AK] = "another-secret"


def _list_fault(kind: str) -> Callable[[CphSimulator, dict[str, str]], None]:
    def apply(simulator: CphSimulator, keys: dict[str, str]) -> None:
        simulator.faults.list_fault = kind
        for server_id in list(simulator.detail_calls) or [fleet()[0]["server_id"]]:
            simulator.faults.broken_details[server_id] = kind

    return apply


def _throttle(simulator: CphSimulator, keys: dict[str, str]) -> None:
    simulator.faults.throttle_every = 1
    simulator.faults.retry_after = "0"


def _slow(simulator: CphSimulator, keys: dict[str, str]) -> None:
    simulator.faults.latency = 1.0  # five times the request timeout


FAULTS: dict[str, Callable[[CphSimulator, dict[str, str]], None]] = {
    "refused": _stop,
    "401": _rotate,
    "throttled": _throttle,
    "slow": _slow,
    **{kind: _list_fault(kind) for kind in ("html_502", "truncated", "json_error_200", "reset")},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_no_secret_in_errors_or_scrapes_under_any_fault(
    sim: CphSimulator, api_keys: dict[str, str], start: Start, fast_retries: None, fault: str
) -> None:
    servers = fleet()
    exporter = start(sim, cache_ttl=0.3, request_timeout=0.2, refresh_timeout=1.0)
    warm(exporter, servers)
    FAULTS[fault](sim, api_keys)
    errors: list[BaseException] = []
    for call in (
        lambda: exporter.client.list_servers(time.monotonic() + 1),
        lambda: exporter.client.get_server(servers[0]["server_id"], time.monotonic() + 1),
    ):
        try:
            call()
        except ApiError as exc:
            errors.append(exc)
    assert len(errors) == 2, fault  # every fault here fails both calls
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error) + repr(error.__context__)
        assert not any(secret in text for secret in SECRETS), text
    expire(exporter)
    got = scrape_until(exporter, lambda g: up(g) == 0, timeout=60)  # get() scans each body
    snapshot = exporter.refresher.current()
    assert snapshot.error and not any(secret in snapshot.error for secret in SECRETS)
    assert_complete(got, servers)
