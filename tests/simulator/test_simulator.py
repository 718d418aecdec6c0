"""The CPH API simulator over real HTTP, with requests signed by cph_exporter.signing."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.credentials.values import Credentials
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    Faults,
    documented_examples,
    generate_fleet,
    list_entry,
)
from cph_exporter.simulator.fleet import ALL_STATUSES, RARE_STATUSES

AK, SK, PROJECT = SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY, SIMULATOR_PROJECT_ID
LIST = "ListCloudPhoneServers"
DETAIL = "GetCloudPhoneServerDetail"
FLEET = generate_fleet(250, seed=7)
BY_ID = {s["server_id"]: s for s in FLEET}
THROTTLED = {
    "error_code": "APIGW.0308",
    "error_msg": "The throttling threshold has been reached: "
    "policy user over ratelimit,limit:200,time:5 minute",
}


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    with CphSimulator(FLEET, {AK: SK}, PROJECT) as simulator:
        yield simulator


def session(
    access_key: str = AK, secret_key: str = SK, project: str | None = PROJECT
) -> requests.Session:
    s = requests.Session()
    s.auth = AkSkAuth(lambda: Credentials(access_key, secret_key), project_id=project)
    return s


@pytest.fixture
def api() -> Iterator[requests.Session]:
    with session() as s:
        yield s


def servers_url(sim: CphSimulator, project: str = PROJECT) -> str:
    return f"{sim.url}/v1/{project}/cloud-phone/servers"


def detail(api: requests.Session, sim: CphSimulator, server_id: str) -> requests.Response:
    return api.get(f"{servers_url(sim)}/{server_id}", timeout=10)


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


# ---- listing ----


def test_pagination_covers_every_server_once_newest_first(
    sim: CphSimulator, api: requests.Session
) -> None:
    seen: list[dict[str, Any]] = []
    for offset in range(0, 300, 100):
        page = api.get(servers_url(sim), params={"offset": offset, "limit": 100}, timeout=10)
        assert page.status_code == 200
        body = page.json()
        assert body["count"] == 250
        assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
        seen += body["servers"]
    ids = [s["server_id"] for s in seen]
    assert len(ids) == len(set(ids)) == 250
    assert set(ids) == set(BY_ID)
    times = [s["create_time"] for s in seen]
    assert times == sorted(times, reverse=True)


def test_default_limit_is_100_and_offset_past_the_end_is_empty(
    sim: CphSimulator, api: requests.Session
) -> None:
    assert len(api.get(servers_url(sim), timeout=10).json()["servers"]) == 100
    tail = api.get(servers_url(sim), params={"offset": 245, "limit": 7}, timeout=10).json()
    assert (tail["count"], len(tail["servers"])) == (250, 5)
    past = api.get(servers_url(sim), params={"offset": 250}, timeout=10).json()
    assert (past["count"], past["servers"]) == (250, [])


def test_list_entries_are_the_list_view_of_the_fleet(
    sim: CphSimulator, api: requests.Session
) -> None:
    for entry in api.get(servers_url(sim), params={"limit": 50}, timeout=10).json()["servers"]:
        assert entry == list_entry(BY_ID[entry["server_id"]])
        assert not {"band_widths", "volumes", "security_groups"} & entry.keys()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "2"}, [FLEET[3]]),
        ({"status": "99"}, [FLEET[11]]),
        ({"server_id": FLEET[42]["server_id"]}, [FLEET[42]]),
        ({"network_version": "v2"}, [s for s in FLEET if s["network_version"] == "v2"]),
        ({"network_version": "v2", "status": "5", "limit": "100"}, None),
    ],
)
def test_list_filters(
    sim: CphSimulator,
    api: requests.Session,
    params: dict[str, str],
    expected: list[dict[str, Any]] | None,
) -> None:
    if expected is None:
        expected = [s for s in FLEET if s["network_version"] == "v2" and s["status"] == 5]
    body = api.get(servers_url(sim), params=params, timeout=10).json()
    assert body["count"] == len(expected)
    got = {s["server_id"] for s in body["servers"]}
    assert len(got) == min(len(expected), 100)
    assert got <= {s["server_id"] for s in expected}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": ""},
        {"offset": "-1"},
        {"offset": "1.5"},
        {"status": "normal"},
    ],
)
def test_bad_paging_values_answer_400_json(
    sim: CphSimulator, api: requests.Session, params: dict[str, str]
) -> None:
    response = api.get(servers_url(sim), params=params, timeout=10)
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] and next(iter(params)) in body["error_msg"]


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(sim: CphSimulator, api: requests.Session, limit: str) -> None:
    response = api.get(servers_url(sim), params={"limit": limit}, timeout=10)
    assert response.status_code == 200
    assert len(response.json()["servers"]) == int(limit)


# ---- detail ----


@pytest.mark.parametrize("index", [0, 1, 3, 7, 8, 11, 12, 13, 17, 249])
def test_detail_equals_the_fleet_data(sim: CphSimulator, api: requests.Session, index: int) -> None:
    server = FLEET[index]
    first = detail(api, sim, server["server_id"])
    second = detail(api, sim, server["server_id"])
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("application/json")
    assert without_request_id(first.json()) == server
    assert first.json()["request_id"] != second.json()["request_id"]


def test_detail_of_an_unknown_server_is_a_404_json_error(
    sim: CphSimulator, api: requests.Session
) -> None:
    response = detail(api, sim, "f" * 32)
    assert response.status_code == 404
    assert response.json()["error_code"] == "CPH.0100404"


def test_documented_examples_are_served_as_documented(api: requests.Session) -> None:
    examples = documented_examples()
    with CphSimulator(examples, {AK: SK}, PROJECT) as sim:
        listed = api.get(servers_url(sim), timeout=10).json()
        assert [s["server_id"] for s in listed["servers"]] == [
            "95bf815ae612435d9ab2af7ad91dcaab",  # created 2021, so listed first
            "6edb89150bc742aa81fc8ac4ff047297",
        ]
        for example in examples:
            body = detail(api, sim, example["server_id"]).json()
            assert without_request_id(body) == without_request_id(example)
            assert body["request_id"] != example["request_id"]


# ---- faults ----

NORMAL = FLEET[0]  # status 5, with bandwidths and volumes
BARE = FLEET[3]  # band_widths absent
assert NORMAL["status"] == 5 and NORMAL["band_widths"] and NORMAL["volumes"]
assert "band_widths" not in BARE


@pytest.mark.parametrize("code", [502, 503, 504])
def test_html_gateway_errors(sim: CphSimulator, api: requests.Session, code: int) -> None:
    sim.faults.broken_details[NORMAL["server_id"]] = f"html_{code}"
    response = detail(api, sim, NORMAL["server_id"])
    assert response.status_code == code
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<html>") and str(code) in response.text
    assert not is_json(response)
    assert detail(api, sim, FLEET[1]["server_id"]).status_code == 200  # others unaffected


def test_not_found_fault(sim: CphSimulator, api: requests.Session) -> None:
    sim.faults.broken_details[NORMAL["server_id"]] = "not_found"
    response = detail(api, sim, NORMAL["server_id"])
    assert response.status_code == 404
    assert response.json()["error_code"] == "CPH.0100404"


def test_garbage_fault(sim: CphSimulator, api: requests.Session) -> None:
    sim.faults.broken_details[NORMAL["server_id"]] = "garbage"
    response = detail(api, sim, NORMAL["server_id"])
    assert response.status_code == 200
    assert not is_json(response)


def test_truncated_fault(sim: CphSimulator, api: requests.Session) -> None:
    sim.faults.broken_details[NORMAL["server_id"]] = "truncated"
    response = detail(api, sim, NORMAL["server_id"])
    assert response.status_code == 200
    assert not is_json(response)
    whole = json.dumps(NORMAL)
    assert response.text.startswith(whole[:40]) and len(response.text) < len(whole)


def test_json_error_with_200_fault(sim: CphSimulator, api: requests.Session) -> None:
    sim.faults.broken_details[NORMAL["server_id"]] = "json_error_200"
    response = detail(api, sim, NORMAL["server_id"])
    assert response.status_code == 200
    body = response.json()
    assert body["error_code"] and body["error_msg"] and "server_id" not in body


@pytest.mark.parametrize("server", [NORMAL, BARE], ids=["with-lists", "without-lists"])
def test_wrong_types_fault(
    sim: CphSimulator, api: requests.Session, server: dict[str, Any]
) -> None:
    sim.faults = Faults(broken_details={server["server_id"]: "wrong_types"})
    body = detail(api, sim, server["server_id"]).json()
    assert body["status"] == str(server["status"])
    assert body["volumes"] and all(v["volume_size"] is None for v in body["volumes"])
    assert body["band_widths"]
    assert all(isinstance(b["band_width_size"], str) for b in body["band_widths"])
    if server is NORMAL:
        sizes = [str(b["band_width_size"]) for b in NORMAL["band_widths"]]
        assert [b["band_width_size"] for b in body["band_widths"]] == sizes
    assert BY_ID[server["server_id"]] == server  # the fleet data itself is untouched


@pytest.mark.parametrize(
    ("kind", "status", "json_ok"),
    [
        ("not_found", 404, True),
        ("html_502", 502, False),
        ("html_503", 503, False),
        ("html_504", 504, False),
        ("garbage", 200, False),
        ("truncated", 200, False),
        ("json_error_200", 200, True),
        ("wrong_types", 200, True),
    ],
)
def test_list_faults(
    sim: CphSimulator, api: requests.Session, kind: str, status: int, json_ok: bool
) -> None:
    sim.faults.list_fault = kind
    response = api.get(servers_url(sim), timeout=10)
    assert (response.status_code, is_json(response)) == (status, json_ok)
    if kind == "wrong_types":
        assert all(isinstance(s["status"], str) for s in response.json()["servers"])
    sim.faults.list_fault = None
    assert api.get(servers_url(sim), timeout=10).status_code == 200


def test_faults_reject_unknown_kinds_and_negative_values() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Faults(list_fault="teapot")
    faults = Faults()
    with pytest.raises(ValueError):
        faults.latency = -1
    with pytest.raises(ValueError):
        faults.throttle_every = -2


# ---- authentication ----


def assert_refused(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code
    assert body["request_id"]
    return body


def test_wrong_secret_key_is_401_without_echoing_secrets(sim: CphSimulator) -> None:
    with session(secret_key="the-wrong-secret") as wrong:
        response = wrong.get(servers_url(sim), timeout=10)
    body = assert_refused(response, 401, "APIGW.0301")
    assert body["error_msg"].startswith("Incorrect IAM authentication information: ")
    signature = response.request.headers["Authorization"].rpartition("Signature=")[2]
    for secret in (SK, "the-wrong-secret", signature):
        assert secret not in response.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_unsigned_requests_are_401(sim: CphSimulator, headers: dict[str, str]) -> None:
    response = requests.get(servers_url(sim), headers=headers, timeout=10)
    assert_refused(response, 401, "APIGW.0301")


def test_unknown_access_key_is_401(sim: CphSimulator) -> None:
    with session(access_key="SOMEBODYELSE") as other:
        body = assert_refused(other.get(servers_url(sim), timeout=10), 401, "APIGW.0301")
    assert "unknown access key" in body["error_msg"]


def test_project_header_must_match_the_path(sim: CphSimulator) -> None:
    with session(project="f" * 32) as other:
        response = other.get(servers_url(sim), timeout=10)
    body = assert_refused(response, 401, "APIGW.0301")
    assert "X-Project-Id" in body["error_msg"]


def test_a_project_other_than_the_simulators_is_403(sim: CphSimulator) -> None:
    with session(project="f" * 32) as other:
        response = other.get(servers_url(sim, project="f" * 32), timeout=10)
    assert_refused(response, 403, "APIGW.0302")
    with session(project=None) as headerless:  # no X-Project-Id: the path alone decides
        assert headerless.get(servers_url(sim), timeout=10).status_code == 200
        response = headerless.get(servers_url(sim, project="f" * 32), timeout=10)
    assert_refused(response, 403, "APIGW.0302")


def test_keys_can_be_rotated_while_running(api: requests.Session) -> None:
    keys = {AK: SK}
    with CphSimulator(FLEET, keys, PROJECT) as sim:
        assert api.get(servers_url(sim), timeout=10).status_code == 200
        keys[AK] = "rotated"
        assert api.get(servers_url(sim), timeout=10).status_code == 401


def test_faults_apply_only_after_the_signature_check(sim: CphSimulator) -> None:
    sim.faults.latency = 3.0
    sim.faults.list_fault = "html_502"
    started = time.monotonic()
    with session(secret_key="wrong") as wrong:
        assert wrong.get(servers_url(sim), timeout=10).status_code == 401
    assert time.monotonic() - started < 2.0


# ---- throttling, latency ----


def test_every_nth_call_is_throttled_with_retry_after(
    sim: CphSimulator, api: requests.Session
) -> None:
    sim.faults.throttle_every = 3
    sim.faults.retry_after = "2"
    statuses = []
    for i in range(9):
        response = detail(api, sim, FLEET[i]["server_id"]) if i % 2 else api.get(servers_url(sim))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "2"
            assert without_request_id(response.json()) == THROTTLED
    assert statuses == [200, 200, 429] * 3
    sim.faults.retry_after = None
    sim.reset_counters()
    responses = [api.get(servers_url(sim), timeout=10) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert "Retry-After" not in responses[2].headers
    sim.faults.throttle_every = 0
    assert all(api.get(servers_url(sim)).status_code == 200 for _ in range(4))


def test_latency_is_added_and_can_be_lifted_while_running(
    sim: CphSimulator, api: requests.Session
) -> None:
    sim.faults.latency = 0.3
    started = time.monotonic()
    assert detail(api, sim, NORMAL["server_id"]).status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.faults.latency = 0.0
    started = time.monotonic()
    assert detail(api, sim, NORMAL["server_id"]).status_code == 200
    assert time.monotonic() - started < 0.3


# ---- accounting, fleet changes, lifecycle ----


def test_call_counters(sim: CphSimulator, api: requests.Session) -> None:
    a, b = FLEET[5]["server_id"], FLEET[6]["server_id"]
    api.get(servers_url(sim), timeout=10)
    detail(api, sim, a)
    detail(api, sim, a)
    detail(api, sim, b)
    requests.get(f"{servers_url(sim)}/{b}", timeout=10)  # refused, still a call
    api.get(f"{sim.url}/v1/{PROJECT}/unknown", timeout=10)  # no operation: not counted
    assert sim.calls == Counter({LIST: 1, DETAIL: 4})
    assert sim.detail_calls == Counter({a: 2, b: 2})
    sim.reset_counters()
    assert sim.calls == Counter() and sim.detail_calls == Counter()


def test_counters_are_exact_under_concurrency(sim: CphSimulator) -> None:
    ids = [s["server_id"] for s in FLEET[:8]]

    def worker(_: int) -> list[int]:
        with session() as s:
            return [detail(s, sim, server_id).status_code for server_id in ids]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert all(code == 200 for codes in results for code in codes)
    assert sim.calls == Counter({DETAIL: 64})
    assert sim.detail_calls == Counter({server_id: 8 for server_id in ids})


def test_set_servers_while_running(sim: CphSimulator, api: requests.Session) -> None:
    gone, kept = FLEET[0], FLEET[1:20]
    sim.set_servers(kept)
    assert api.get(servers_url(sim), timeout=10).json()["count"] == 19
    assert detail(api, sim, gone["server_id"]).status_code == 404
    assert detail(api, sim, kept[0]["server_id"]).json()["server_id"] == kept[0]["server_id"]
    with pytest.raises(ValueError, match="unique"):
        sim.set_servers([FLEET[1], FLEET[1]])
    assert api.get(servers_url(sim), timeout=10).json()["count"] == 19


def test_unknown_routes_and_methods_are_404_json(sim: CphSimulator, api: requests.Session) -> None:
    for response in (
        api.get(f"{sim.url}/", timeout=10),
        api.get(f"{sim.url}/v1/{PROJECT}/cloud-phone/jobs", timeout=10),
        api.post(servers_url(sim), json={}, timeout=10),
        api.delete(f"{servers_url(sim)}/{NORMAL['server_id']}", timeout=10),
    ):
        assert response.status_code == 404
        assert response.json()["error_code"]


def test_stop_ends_kept_alive_connections_too(api: requests.Session) -> None:
    sim = CphSimulator(FLEET, {AK: SK}, PROJECT)
    with pytest.raises(RuntimeError):
        _ = sim.url
    url = sim.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and url == sim.url
    assert api.get(servers_url(sim), timeout=10).status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        api.get(f"{url}/v1/{PROJECT}/cloud-phone/servers", timeout=10)
    sim.stop()  # idempotent


def test_serving_writes_nothing_to_stderr(
    sim: CphSimulator, api: requests.Session, capfd: pytest.CaptureFixture[str]
) -> None:
    api.get(servers_url(sim), timeout=10)
    requests.get(servers_url(sim), timeout=10)
    api.get(f"{sim.url}/nowhere", timeout=10)
    capfd.readouterr()  # flush
    sim.stop()
    assert capfd.readouterr().err == ""


def test_command_line_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "cph_exporter.simulator", "--listen", "127.0.0.1:0"]
    command += ["--servers", "12", "--seed", "3", "--throttle-every", "2", "--retry-after", "7"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            printed = dict(
                line.strip().split("=", 1) for line in (process.stdout.readline() for _ in range(3))
            )
            assert printed["HUAWEICLOUD_SDK_AK"] == AK
            assert printed["HUAWEICLOUD_SDK_PROJECT_ID"] == PROJECT
            with session(printed["HUAWEICLOUD_SDK_AK"], printed["HUAWEICLOUD_SDK_SK"]) as s:
                first = s.get(f"{url}/v1/{PROJECT}/cloud-phone/servers", timeout=10)
                second = s.get(f"{url}/v1/{PROJECT}/cloud-phone/servers", timeout=10)
            assert first.json()["count"] == 12
            assert {s["server_id"] for s in first.json()["servers"]} == {
                s["server_id"] for s in generate_fleet(12, 3)
            }
            assert (second.status_code, second.headers["Retry-After"]) == (429, "7")
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_command_line_serves_the_same_phones_as_simulate_with_phones_flag() -> None:
    from cph_exporter.simulator import simulated_project

    command = [sys.executable, "-m", "cph_exporter.simulator", "--listen", "127.0.0.1:0"]
    command += ["--servers", "12", "--seed", "3", "--examples", "--phones"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            with session(AK, SK) as s:
                listed = s.get(f"{url}/v1/{PROJECT}/cloud-phone/phones", timeout=10).json()
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    servers, phones = simulated_project(12, 3)
    assert len(servers) == 14  # the two documented examples and twelve generated
    assert listed["count"] == len(phones)
    assert [p["phone_id"] for p in listed["phones"]] == [p["phone_id"] for p in phones[:100]]


# ---- fleet data ----

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
BANDWIDTH_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.mark.parametrize("count", [12, 13, 100, 250])
def test_every_status_is_present_from_twelve_servers(count: int) -> None:
    fleet = generate_fleet(count, seed=count)
    statuses = Counter(s["status"] for s in fleet)
    assert set(statuses) == set(ALL_STATUSES)
    assert statuses[5] == count - len(RARE_STATUSES)  # normal: most servers
    assert [s["status"] for s in fleet[1:12]] == list(RARE_STATUSES)


def test_a_small_fleet_holds_the_first_rare_statuses() -> None:
    assert [s["status"] for s in generate_fleet(4)] == [5, 0, 1, 2]
    assert generate_fleet(0) == []


def test_fleet_is_deterministic_by_seed() -> None:
    assert generate_fleet(50, seed=1) == generate_fleet(50, seed=1)
    assert {s["server_id"] for s in generate_fleet(50, 1)}.isdisjoint(
        s["server_id"] for s in generate_fleet(50, 2)
    )


def test_fleet_shape() -> None:
    fleet = generate_fleet(1000, seed=5)
    assert len({s["server_id"] for s in fleet}) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", s["server_id"]) for s in fleet)
    assert [s["server_name"] for s in fleet[:2]] == ["cph-sim-00001", "cph-sim-00002"]
    assert len({s["availability_zone"] for s in fleet}) >= 3
    assert {s["network_version"] for s in fleet} == {"v1", "v2"}
    assert {len(s["addresses"]) for s in fleet} == {1, 2, 3}
    for key in ("band_widths", "volumes"):
        assert any(key not in s for s in fleet)
        assert any(key in s and s[key] is None for s in fleet)
        assert {len(s[key]) for s in fleet if s.get(key) is not None} == {0, 1, 2, 3}
    bandwidths = [b for s in fleet for b in s.get("band_widths") or []]
    volumes = [v for s in fleet for v in s.get("volumes") or []]
    assert {b["band_width_charge_mode"] for b in bandwidths} == {0, 1}
    assert {b["band_width_share_type"] for b in bandwidths} == {0, 1}
    assert all(
        isinstance(b["band_width_size"], int) and b["band_width_size"] > 0 for b in bandwidths
    )
    assert {v["volume_type"] for v in volumes} == {"SSD", "GPSSD"}
    assert all(isinstance(v["volume_size"], int) and v["volume_size"] > 0 for v in volumes)
    for s in fleet:
        assert ISO.fullmatch(s["create_time"]) and ISO.fullmatch(s["update_time"])
        assert s["update_time"] >= s["create_time"]
    assert all(ISO.fullmatch(v["create_time"]) for v in volumes)
    assert all(BANDWIDTH_TIME.fullmatch(b["create_time"]) for b in bandwidths)
    assert all(BANDWIDTH_TIME.fullmatch(b["update_time"]) for b in bandwidths)


def test_large_fleet_is_complete_and_unique() -> None:
    # Its speed is the benchmark's business (benchmarks/), not a timed unit test's.
    fleet = generate_fleet(10000)
    assert len({s["server_id"] for s in fleet}) == 10000


def test_documented_examples_keep_the_pages_quirks() -> None:
    first, second = documented_examples()
    assert "volumes" not in first and "band_widths" not in first
    assert first["server_id"] == "6edb89150bc742aa81fc8ac4ff047297"
    assert [v["volume_size"] for v in second["volumes"]] == [600, 600, 600]
    assert second["band_widths"][0]["create_time"] == "2021-02-18 11:48:40"
    assert second["security_groups"] == ["7f46bf9e-9050-48d6-9034-65711f9595f8"]
    assert documented_examples() == [first, second]  # fresh copies every call
    first["status"] = 2
    assert documented_examples()[0]["status"] == 5


def test_list_entry_drops_detail_only_fields_without_mutating() -> None:
    second = documented_examples()[1]
    entry = list_entry(second)
    assert not {"band_widths", "volumes", "security_groups", "request_id"} & entry.keys()
    assert entry["status"] == 5 and entry["update_time"] == "2021-02-18T11:50:14Z"
    assert "volumes" in second


# ---- faults for the fault suite (tests/test_faults.py) ----


def list_pages(api: requests.Session, sim: CphSimulator, pages: int) -> list[list[dict[str, Any]]]:
    return [
        api.get(servers_url(sim), params={"offset": 100 * n}, timeout=10).json()["servers"]
        for n in range(pages)
    ]


@pytest.mark.parametrize("where", ["list", "detail"])
def test_reset_closes_the_connection_without_an_answer(
    sim: CphSimulator, api: requests.Session, where: str
) -> None:
    if where == "list":
        sim.faults.list_fault = "reset"
        url = servers_url(sim)
    else:
        sim.faults.broken_details[NORMAL["server_id"]] = "reset"
        url = f"{servers_url(sim)}/{NORMAL['server_id']}"
    with pytest.raises(requests.ConnectionError):
        api.get(url, timeout=10)
    # The next request on a fresh connection is served as usual.
    assert detail(api, sim, FLEET[1]["server_id"]).status_code == 200


def test_endless_list_is_full_on_every_page_with_fresh_ids(
    sim: CphSimulator, api: requests.Session
) -> None:
    sim.faults.endless_list = True
    far = api.get(servers_url(sim), params={"offset": 100_000}, timeout=10).json()
    assert len(far["servers"]) == 100 and far["count"] > 100_100
    pages = list_pages(api, sim, 4)
    ids = [s["server_id"] for page in pages for s in page]
    assert all(len(page) == 100 for page in pages)
    assert len(set(ids)) == 400 and not set(ids) & set(BY_ID)
    # Their details are served, with the fleet's data under the fresh id.
    body = detail(api, sim, ids[-1]).json()
    assert body["server_id"] == body["server_name"] == ids[-1]
    assert body["create_time"] and body["addresses"]
    assert detail(api, sim, "endless-nonsense").status_code == 404
    sim.faults.endless_list = False
    assert detail(api, sim, ids[0]).status_code == 404


def test_repeat_on_pages_carries_the_last_server_of_the_previous_page(
    sim: CphSimulator, api: requests.Session
) -> None:
    sim.faults.repeat_on_pages = True
    pages = list_pages(api, sim, 3)
    assert [len(p) for p in pages] == [100, 100, 52]  # 250 servers, two of them twice
    assert pages[1][0] == pages[0][-1] and pages[2][0] == pages[1][-1]
    ids = [s["server_id"] for page in pages for s in page]
    assert len(ids) == 252 and set(ids) == set(BY_ID)  # nothing lost, two repeated


def test_list_hook_runs_after_each_page_is_built(sim: CphSimulator, api: requests.Session) -> None:
    offsets: list[int] = []
    newest = max(FLEET, key=lambda s: (s["create_time"], s["server_id"]))

    def hook(offset: int) -> None:
        offsets.append(offset)
        sim.set_servers([s for s in FLEET if s is not newest])  # gone once the page is built

    sim.faults.list_hook = hook
    first = api.get(servers_url(sim), timeout=10).json()
    assert first["servers"][0]["server_id"] == newest["server_id"]
    assert detail(api, sim, newest["server_id"]).status_code == 404
    api.get(servers_url(sim), params={"offset": 100}, timeout=10)
    assert offsets == [0, 100]


def test_raw_details_are_served_byte_for_byte(sim: CphSimulator, api: requests.Session) -> None:
    raw = b'{"server_id": "x", "volumes": [], "volumes": [{"volume_id": "v"}], "n": NaN}'
    sim.faults.raw_details[NORMAL["server_id"]] = raw
    response = detail(api, sim, NORMAL["server_id"])
    assert (response.status_code, response.content) == (200, raw)
    assert response.headers["Content-Type"].startswith("application/json")


def test_awkward_values_in_the_fleet_are_served_as_json_allows() -> None:
    odd = dict(FLEET[0])
    odd.update(
        server_name='q"uo\\te\nnew\ud800' + "x" * 10_000,
        status="5",
        volumes=[
            {"volume_id": "v1", "volume_size": None},
            {"volume_id": "v2", "volume_size": 1e308},
        ],
        band_widths=[{"band_width_id": "b", "band_width_size": float("nan")}],
    )
    with CphSimulator([odd], {AK: SK}, PROJECT) as simulator, session() as s:
        response = detail(s, simulator, odd["server_id"])
        assert b"NaN" in response.content and b"\\ud800" in response.content
        # The stdlib reads NaN (simplejson, which requests prefers when installed, does not).
        body = json.loads(response.content)
        assert body["server_name"] == odd["server_name"] and body["status"] == "5"
        assert [v["volume_size"] for v in body["volumes"]] == [None, 1e308]
        listed = json.loads(s.get(servers_url(simulator), timeout=10).content)["servers"]
        assert listed[0]["server_name"] == odd["server_name"]


def test_phones_are_listed_by_page_and_by_server(api: requests.Session) -> None:
    from cph_exporter.simulator import generate_phones

    phones = generate_phones(FLEET)
    assert len({p["phone_id"] for p in phones}) == len(phones) > 100
    assert {p["status"] for p in phones} >= {0, 1, 2, 3, 4, 6, 7, 8, -5, -6, -7, -8, -9}
    with CphSimulator(FLEET, {AK: SK}, PROJECT, phones=phones) as sim:
        url = f"{sim.url}/v1/{PROJECT}/cloud-phone/phones"
        first = api.get(url, params={"offset": 0, "limit": 100}, timeout=10).json()
        second = api.get(url, params={"offset": 100, "limit": 100}, timeout=10).json()
        assert first["count"] == len(phones)
        listed = first["phones"] + second["phones"]
        assert [p["phone_id"] for p in listed] == [p["phone_id"] for p in phones[:200]]
        server_id = phones[0]["server_id"]
        own = api.get(url, params={"server_id": server_id}, timeout=10).json()["phones"]
        assert own and all(p["server_id"] == server_id for p in own)
        assert len(own) == sum(1 for p in phones if p["server_id"] == server_id)
        assert sim.calls["ListCloudPhones"] == 3
        sim.faults.phone_list_fault = "html_503"
        assert api.get(url, timeout=10).status_code == 503
        with pytest.raises(ValueError):
            sim.faults.phone_list_fault = "nonsense"


def test_runtime_control_is_off_unless_enabled(sim: CphSimulator) -> None:
    server_id = FLEET[0]["server_id"]
    response = requests.post(f"{sim.url}/_control/servers/{server_id}", json={"status": 2})
    assert response.status_code == 404
    assert sim.set_server_status(server_id, 5) is not None  # the Python API is always there


def test_runtime_control_changes_a_servers_status(api: requests.Session) -> None:
    server_id = FLEET[0]["server_id"]
    with CphSimulator(FLEET, {AK: SK}, PROJECT, control=True) as sim:
        before = detail(api, sim, server_id).json()
        response = requests.post(
            f"{sim.url}/_control/servers/{server_id}", json={"status": 2}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"server_id": server_id, "status": 2}
        after = detail(api, sim, server_id).json()
        assert after["status"] == 2 and after["update_time"] != before["update_time"]
        entries = []
        for offset in range(0, len(FLEET), 100):
            page = api.get(servers_url(sim), params={"offset": offset}, timeout=10).json()
            entries += [s for s in page["servers"] if s["server_id"] == server_id]
        assert [e["status"] for e in entries] == [2]
        # unknown server, bad body, wrong method
        missing = requests.post(f"{sim.url}/_control/servers/nope", json={"status": 2})
        assert missing.status_code == 404
        bad = requests.post(f"{sim.url}/_control/servers/{server_id}", json={"status": "x"})
        assert bad.status_code == 400
        assert requests.get(f"{sim.url}/_control/servers/{server_id}").status_code == 405


def test_runtime_control_sets_faults_and_refuses_others() -> None:
    with CphSimulator(FLEET, {AK: SK}, PROJECT, control=True) as sim:
        response = requests.post(
            f"{sim.url}/_control/faults", json={"list_fault": "html_503"}, timeout=10
        )
        assert response.status_code == 200 and sim.faults.list_fault == "html_503"
        unknown = requests.post(f"{sim.url}/_control/faults", json={"list_hook": 1})
        assert unknown.status_code == 400
        bad_kind = requests.post(f"{sim.url}/_control/faults", json={"list_fault": "boom"})
        assert bad_kind.status_code == 400
        assert requests.post(f"{sim.url}/_control/faults", json={"list_fault": None}).ok
        assert sim.faults.list_fault is None
        # Only loopback clients may steer it (this process only reaches it over loopback).
        refused = sim._control_request("POST", "/_control/faults", b"{}", "192.0.2.7")
        assert refused.status == 403
        assert sim._control_request("POST", "/_control/faults", b"{}", "::1").status == 200
