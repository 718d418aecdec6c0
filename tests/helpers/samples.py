"""Reading a scrape back: samples by family, and whether every server is there as the API says."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.cph.models import server_state

LIST = "ListCloudPhoneServers"
DETAIL = "GetCloudPhoneServerDetail"
PHONES = "ListCloudPhones"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(text: str) -> Samples:
    result: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[sample.name].append((sample.labels, sample.value))
    return result


def by_server(series: list[tuple[dict[str, str], float]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for labels, value in series:
        grouped[labels["server_id"]].append({**labels, "value": value})
    return grouped


def expected_bandwidths(server: dict[str, Any]) -> set[tuple[str, float]]:
    return {
        (bw["band_width_id"], float(bw["band_width_size"]) * 125000)
        for bw in server.get("band_widths") or []
    }


def expected_volumes(server: dict[str, Any]) -> set[tuple[str, float]]:
    return {(v["volume_id"], float(v["volume_size"]) * 2**30) for v in server.get("volumes") or []}


def assert_complete(got: Samples, servers: list[dict[str, Any]]) -> None:
    """Every server's status, state, info, addresses, times, bandwidths and volumes match."""
    status = by_server(got["cph_server_status"])
    states = by_server(got["cph_server_state"])
    info = by_server(got["cph_server_info"])
    addresses = by_server(got["cph_server_addresses"])
    created = by_server(got["cph_server_created_timestamp_seconds"])
    updated = by_server(got["cph_server_updated_timestamp_seconds"])
    bandwidths = by_server(got["cph_server_bandwidth_size_bytes_per_second"])
    volumes = by_server(got["cph_server_volume_size_bytes"])
    assert set(status) == {s["server_id"] for s in servers}
    for server in servers:
        sid = server["server_id"]
        assert status[sid][0]["value"] == server["status"]
        assert status[sid][0]["server_name"] == server["server_name"]
        assert status[sid][0]["availability_zone"] == server["availability_zone"]
        assert status[sid][0]["network_version"] == server["network_version"]
        current = [s["state"] for s in states[sid] if s["value"] == 1]
        assert current == [server_state(server["status"])]
        assert len(states[sid]) == 9
        assert info[sid][0]["vpc_id"] == server["vpc_id"]
        assert info[sid][0]["phone_model_name"] == server["phone_model_name"]
        assert addresses[sid][0]["value"] == len(server["addresses"])
        assert created[sid] and updated[sid]
        got_bw = {(b["bandwidth_id"], b["value"]) for b in bandwidths.get(sid, [])}
        assert got_bw == expected_bandwidths(server), sid
        got_vol = {(v["volume_id"], v["value"]) for v in volumes.get(sid, [])}
        assert got_vol == expected_volumes(server), sid
