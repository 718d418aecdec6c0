"""The metric contract, pinned by one golden exposition and checked by promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cph_exporter.http.exposition import Exposition
from cph_exporter.metrics.common import MAX_LABEL_VALUE_BYTES, label_value
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.snapshot import Snapshot
from cph_exporter.refresh.targets import TargetView
from tests.helpers.snapshots import record, sample_snapshot

HERE = Path(__file__).parent.parent  # tests/, where the golden files and fixtures live
GOLDEN = HERE / "golden" / "fleet.prom"


def render(snapshot: Snapshot, accept: str | None = None) -> bytes:
    exposition = Exposition(
        lambda views: [ServerCollector(lambda: views)],
        CollectorRegistry(auto_describe=False),
    )
    return exposition.render((TargetView("sim-region-1", "proj", snapshot),), accept)[0]


def test_golden_exposition() -> None:
    text = render(sample_snapshot()).decode("utf-8")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_values_follow_the_contract() -> None:
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            render(sample_snapshot(), "application/openmetrics-text").decode("utf-8")
        )
    }
    bandwidth = families["cph_server_bandwidth_size_bytes_per_second"].samples
    assert {s.value for s in bandwidth} == {300 * 125000}
    assert {s.labels["charge_mode"] for s in bandwidth} == {"traffic"}
    assert {s.labels["share_type"] for s in bandwidth} == {"dedicated"}
    volumes = families["cph_server_volume_size_bytes"].samples
    assert sorted(s.value for s in volumes) == [40 * 2**30] + [600 * 2**30] * 3
    states = families["cph_server_state"].samples
    current = {s.labels["server_name"]: s.labels["state"] for s in states if s.value == 1}
    assert current["no-details"] == "abnormal"
    assert current["cph-2ykg-asdv-2"] == "normal"
    assert sum(1 for s in states if s.value == 1) == 4  # exactly one current state each
    assert len(states) == 4 * 9
    status = {s.labels["server_name"]: s.value for s in families["cph_server_status"].samples}
    assert status["no-details"] == 2
    info = families["cph_server_info"].samples
    assert {s.labels["region"] for s in info} == {"sim-region-1"}
    assert all(
        set(s.labels) >= {"server_id", "server_name", "availability_zone", "network_version"}
        for f in families.values()
        for s in f.samples
        if f.name.startswith("cph_server_")
    )


def test_label_values_round_trip() -> None:
    families = text_string_to_metric_families(
        render(sample_snapshot(), "application/openmetrics-text").decode("utf-8")
    )
    names = {
        s.labels["server_name"]
        for f in families
        if f.name == "cph_server_addresses"
        for s in f.samples
    }
    assert 'we"ird\\name\nwith ünïcode \ufffd' in names


def test_down_snapshot_still_renders_up_zero() -> None:
    snapshot = Snapshot((), False, None, 0.0, None, None, "boom")
    text = render(snapshot).decode()
    assert 'cph_up{project_id="proj",region="sim-region-1"} 0.0' in text
    assert "boom" not in text  # an error message never becomes a label


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_long_label_values_are_cut_to_the_limit_on_a_character_boundary() -> None:
    assert label_value("x" * MAX_LABEL_VALUE_BYTES) == "x" * MAX_LABEL_VALUE_BYTES
    cut = label_value("é" * MAX_LABEL_VALUE_BYTES)  # 2 bytes each: twice the limit
    assert cut.endswith("…") and set(cut[:-1]) == {"é"}
    assert MAX_LABEL_VALUE_BYTES - 4 < len(cut.encode()) <= MAX_LABEL_VALUE_BYTES


def test_ids_equal_once_cut_and_overflowing_sizes_make_no_bad_series() -> None:
    long_id = "s" * 3000
    volume = {"volume_id": "v", "volume_size": 1e308}  # finite GB, infinite bytes
    answers = [
        {"server_id": long_id + "a", "server_name": "a", "volumes": [volume]},
        {"server_id": long_id + "b", "server_name": "b"},
    ]
    snapshot = Snapshot(tuple(record(a) for a in answers), True, 1.0, 0.0, 1.0, 1.0)
    text = render(snapshot, "application/openmetrics-text").decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families["cph_server_status"].samples) == 0  # no status in these answers
    assert len(families["cph_server_addresses"].samples) == 1  # one server per cut id
    assert not families["cph_server_volume_size_bytes"].samples
    assert "Inf" not in text
