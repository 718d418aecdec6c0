"""A small snapshot with the documented answers and awkward cases, for rendering tests."""

from __future__ import annotations

import json
from pathlib import Path

from cph_exporter.cph.models import parse_details, parse_server
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot

HERE = Path(__file__).resolve().parents[1]  # tests/, where the fixtures live


def record(answer: object, with_details: bool = True) -> ServerRecord:
    return ServerRecord(parse_server(answer), parse_details(answer) if with_details else None)


def sample_snapshot() -> Snapshot:
    v1 = json.loads((HERE / "fixtures" / "detail_example_v1.json").read_text())
    v2 = json.loads((HERE / "fixtures" / "detail_example_v2.json").read_text())
    odd = {
        "server_id": "odd0000000000000000000000000001",
        "server_name": 'we"ird\\name\nwith ünïcode \ud800',
        "availability_zone": "az-1",
        "network_version": "v2",
        "status": 99,
        "band_widths": None,
        "volumes": [
            {"volume_id": "v1", "volume_name": "n", "volume_size": "40", "volume_type": "SSD"},
            {"volume_id": "v1", "volume_name": "dup", "volume_size": 1, "volume_type": "SSD"},
            {"volume_id": "v2", "volume_size": None},
        ],
        "create_time": "2021-02-18 11:48:40",
    }
    failed = {
        "server_id": "fail000000000000000000000000001",
        "server_name": "no-details",
        "status": "2",
        "availability_zone": "az-2",
        "network_version": "v1",
    }
    records = (record(v1), record(v2), record(odd), record(failed, with_details=False))
    return Snapshot(
        servers=tuple(sorted(records, key=lambda r: r.server.server_id)),
        up=True,
        completed_at=1700000000.0,
        refresh_duration=0.5,
        last_success_at=1700000000.0,
        data_at=1700000000.0,
        generation=1,
    )
