"""Parsing real-shaped answers: the documented examples and what real answers do besides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cph_exporter.cph.models import (
    ParseError,
    clean_text,
    parse_details,
    parse_int,
    parse_number,
    parse_server,
    parse_time,
    server_state,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def load(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_first_documented_example_has_duplicate_key_and_no_arrays() -> None:
    raw = (FIXTURES / "detail_example_v1.json").read_text()
    assert raw.count('"subnet_cidr"') == 2  # the quirk is really in the fixture
    answer = json.loads(raw)
    server = parse_server(answer)
    assert server.server_id == "6edb89150bc742aa81fc8ac4ff047297"
    assert server.subnet_cidr == "172.31.0.0/16"
    assert server.status == 5
    assert server.network_version == "v1"
    assert server.address_count == 1
    assert server.created_at == 1577836800.0  # 2020-01-01T00:00:00Z
    details = parse_details(answer)
    assert details.bandwidths == ()
    assert details.volumes == ()


def test_second_documented_example_bandwidths_and_volumes() -> None:
    answer = load("detail_example_v2.json")
    server = parse_server(answer)
    assert (server.server_name, server.availability_zone) == ("cph-2ykg-asdv-2", "br-iaas-odin1a")
    assert server.address_count == 2
    assert server.updated_at == parse_time("2021-02-18T11:50:14Z")
    details = parse_details(answer)
    assert [b.bandwidth_id for b in details.bandwidths] == [
        "8b85d44b-ac6f-48fb-bbab-e876e9c3502a",
        "fa788f38-7198-44ec-867b-93d49e2c5c14",
    ]
    assert all(b.size_mbit_per_second == 300 for b in details.bandwidths)
    assert all((b.charge_mode, b.share_type) == (1, 0) for b in details.bandwidths)
    assert [v.size_gb for v in details.volumes] == [600, 600, 600]
    assert {v.volume_type for v in details.volumes} == {"SSD"}


def test_both_time_formats_are_utc() -> None:
    assert parse_time("2021-02-18T11:48:40Z") == parse_time("2021-02-18 11:48:40")
    assert parse_time("2021-02-18 11:48:40") == 1613648920.0
    for bad in ("", "yesterday", None, 12, "2021-02-30T00:00:00Z"):
        assert parse_time(bad) is None


@pytest.mark.parametrize("value", [None, [], "nope", {"a": 1}])
def test_absent_null_or_odd_arrays_are_empty(value: object) -> None:
    answer = {"server_id": "s1", "band_widths": value, "volumes": value, "addresses": value}
    assert parse_details(answer).bandwidths == ()
    assert parse_details(answer).volumes == ()
    assert parse_server(answer).address_count == 0
    answer_without = {"server_id": "s1"}
    assert parse_details(answer_without).volumes == ()


def test_strings_where_numbers_belong() -> None:
    answer = {
        "server_id": "s1",
        "status": "5",
        "band_widths": [
            {"band_width_id": "b", "band_width_size": "300", "band_width_charge_mode": "0"}
        ],
        "volumes": [{"volume_id": "v", "volume_size": None}, "not-an-object"],
    }
    assert parse_server(answer).status == 5
    details = parse_details(answer)
    assert details.bandwidths[0].size_mbit_per_second == 300
    assert details.bandwidths[0].charge_mode == 0
    assert len(details.volumes) == 1 and details.volumes[0].size_gb is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        ("5", 5),
        (5.0, 5),
        (" 7 ", 7),
        (5.5, None),
        (True, None),
        ("x", None),
        (math.nan, None),
        (math.inf, None),
        ("1e400", None),
        (None, None),
    ],
)
def test_parse_int(value: object, expected: int | None) -> None:
    assert parse_int(value) == expected


def test_parse_number_rejects_non_finite() -> None:
    assert parse_number(1e308) == 1e308
    assert parse_number(float("nan")) is None
    assert parse_number("-inf") is None
    # A JSON integer too large for a float: unknown, not an OverflowError.
    assert parse_number(10**400) is None and parse_int(-(10**400)) is None
    assert parse_server({"server_id": "s", "status": 10**400}).status is None


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0, "creating"),
        (1, "creating"),
        (3, "creating"),
        (4, "creating"),
        (2, "abnormal"),
        (5, "normal"),
        (8, "frozen"),
        (10, "stopped"),
        (11, "stopping"),
        (12, "stop_failed"),
        (13, "starting"),
        (6, "unknown"),
        (99, "unknown"),
        (-1, "unknown"),
        (None, "unknown"),
    ],
)
def test_every_documented_status_and_unknown(status: int | None, state: str) -> None:
    assert server_state(status) == state


def test_unknown_status_server_is_kept() -> None:
    assert parse_server({"server_id": "s1", "status": 42}).status == 42


def test_extra_fields_are_ignored() -> None:
    server = parse_server({"server_id": "s1", "share_volume_info": {"x": 1}, "new": [1]})
    assert server.server_name == ""


@pytest.mark.parametrize("answer", [{"server_id": ""}, {"server_name": "x"}, [], "x", None])
def test_no_identity_is_refused(answer: object) -> None:
    with pytest.raises(ParseError):
        parse_server(answer)


def test_lone_surrogate_and_odd_text_become_safe_labels() -> None:
    answer = json.loads('{"server_id": "s1", "server_name": "bad\\ud800name"}')
    name = parse_server(answer).server_name
    name.encode("utf-8")  # must not raise
    assert name.startswith("bad") and name.endswith("name")
    assert clean_text('quote " back \\ newline \n') == 'quote " back \\ newline \n'
    assert clean_text(12) == "12"
    assert clean_text({"a": 1}) == ""
    assert clean_text(float("nan")) == ""
