"""Warm restarts with --cache.dir: the stored details of unchanged servers are served at once;
a file that cannot be trusted is set aside with one warning and the start is cold."""

from __future__ import annotations

import copy
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cph_exporter.refresh.detail_store import DetailStore, file_name
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
)
from tests.helpers.fleet import fleet
from tests.helpers.samples import DETAIL, LIST, assert_complete, samples
from tests.helpers.scrape import ExporterFactory, scrape

STORE_LOG = "cph_exporter.refresh.detail_store"


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    # Its own simulator: these tests change the fleet.
    simulator = CphSimulator(
        fleet(), {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}, SIMULATOR_PROJECT_ID
    )
    simulator.start()
    yield simulator
    simulator.stop()


def run_once(make_exporter: ExporterFactory, sim: CphSimulator, cache: Path) -> dict[str, Any]:
    """Start an exporter on `cache`, scrape it once, stop it: the calls and samples it made."""
    sim.reset_counters()
    exporter = make_exporter(sim, cache_dir=str(cache), phones=False)
    got = samples(scrape(exporter))
    exporter.close()
    return {"calls": dict(sim.calls), "details": dict(sim.detail_calls), "samples": got}


def store_file(cache: Path, sim: CphSimulator) -> Path:
    return cache / file_name(sim.url, SIMULATOR_PROJECT_ID)


def store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == STORE_LOG and r.levelno >= logging.WARNING
    ]


def test_unchanged_fleet_makes_no_detail_call_at_start(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    written_before = time.time()
    cold = run_once(make_exporter, sim, tmp_path)
    assert cold["calls"] == {LIST: 1, DETAIL: len(fleet())}
    assert store_file(tmp_path, sim).exists()

    warm = run_once(make_exporter, sim, tmp_path)
    assert warm["calls"] == {LIST: 1}  # the list only: every detail came from the file
    got = warm["samples"]
    assert got["cph_up"][0][1] == 1
    assert_complete(got, fleet())  # bandwidths and volumes included
    # Marked with their age: as old as the stored details, not as new as the list.
    age = got["cph_exporter_data_age_seconds"][0][1]
    assert 0 < age <= time.time() - written_before


def test_a_changed_and_a_new_server_are_fetched(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    run_once(make_exporter, sim, tmp_path)
    servers = copy.deepcopy(fleet())
    changed = next(s for s in servers[2:] if s.get("volumes"))
    changed["update_time"] = "2031-01-01T00:00:00Z"
    changed["volumes"] = [dict(changed["volumes"][0], volume_size=999)]
    added = copy.deepcopy(servers[-1])
    added["server_id"] = "added-after-the-restart"
    servers.append(added)
    sim.set_servers(servers)

    warm = run_once(make_exporter, sim, tmp_path)
    assert warm["details"] == {changed["server_id"]: 1, added["server_id"]: 1}
    assert_complete(warm["samples"], servers)  # the changed volume, not the stored one


def test_a_server_gone_is_dropped_from_the_file(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    run_once(make_exporter, sim, tmp_path)
    sim.set_servers(fleet()[1:])
    run_once(make_exporter, sim, tmp_path)
    with sqlite3.connect(store_file(tmp_path, sim)) as db:
        stored = {row[0] for row in db.execute("SELECT server_id FROM details")}
    assert stored == {s["server_id"] for s in fleet()[1:]}


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x00garbage where a database was\xff" * 100)


def torn(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def foreign_sqlite(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE details (server_id TEXT, details TEXT)")


def newer_schema(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 2")


def garbled_row(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE details SET details = '[[[1, 2]], []]' WHERE rowid = 1")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (corrupt, "corrupt"),
        (torn, "corrupt"),
        (foreign_sqlite, "not a cph-exporter detail cache"),
        (newer_schema, "newer schema"),
        (garbled_row, "corrupt"),
    ],
)
def test_an_untrusted_file_is_set_aside_and_the_start_is_cold(
    sim: CphSimulator,
    make_exporter: ExporterFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Any,
    why: str,
) -> None:
    run_once(make_exporter, sim, tmp_path)
    path = store_file(tmp_path, sim)
    damage(path)
    caplog.clear()
    caplog.set_level(logging.WARNING)

    again = run_once(make_exporter, sim, tmp_path)
    assert again["calls"] == {LIST: 1, DETAIL: len(fleet())}  # cold: nothing trusted
    assert_complete(again["samples"], fleet())
    warnings = store_warnings(caplog)
    assert len(warnings) == 1 and why in warnings[0] and "starting cold" in warnings[0]
    assert [p.name for p in tmp_path.glob(path.name + ".set-aside-*")]
    # A fresh file was written, and the next start is warm again without a word.
    caplog.clear()
    assert run_once(make_exporter, sim, tmp_path)["calls"] == {LIST: 1}
    assert store_warnings(caplog) == []


def test_a_cache_of_another_project_is_never_served(
    sim: CphSimulator,
    make_exporter: ExporterFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = tmp_path / "other"
    run_once(make_exporter, sim, other)
    # Another project's file under this project's name (copied in by hand, say).
    with sqlite3.connect(store_file(other, sim)) as db:
        db.execute("UPDATE meta SET value = 'another-project' WHERE key = 'project_id'")
    mine = tmp_path / "mine"
    mine.mkdir()
    store_file(other, sim).rename(store_file(mine, sim))
    caplog.set_level(logging.WARNING)

    again = run_once(make_exporter, sim, mine)
    assert again["calls"] == {LIST: 1, DETAIL: len(fleet())}
    warnings = store_warnings(caplog)
    assert len(warnings) == 1 and "another endpoint or project" in warnings[0]


def test_projects_and_endpoints_have_files_of_their_own(tmp_path: Path) -> None:
    names = {
        file_name("https://cph.cn-north-4.myhuaweicloud.com", "p1"),
        file_name("https://cph.cn-north-4.myhuaweicloud.com", "p2"),
        file_name("https://cph.cn-east-3.myhuaweicloud.com", "p1"),
    }
    assert len(names) == 3
    store = DetailStore(tmp_path, "https://cph.cn-north-4.myhuaweicloud.com", "p1")
    assert store.load() == {}
    store.close()
    other = DetailStore(tmp_path, "https://cph.cn-north-4.myhuaweicloud.com", "p2")
    assert other.load() == {}  # its own file, cold; the first one is left alone
    other.close()
    assert len(list(tmp_path.glob("details-*.sqlite3"))) == 2


def test_the_file_holds_no_credentials(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    run_once(make_exporter, sim, tmp_path)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert SIMULATOR_SECRET_KEY.encode() not in data
    assert SIMULATOR_ACCESS_KEY.encode() not in data
    assert b"Authorization" not in data and b"SDK-HMAC" not in data


def test_off_by_default_writes_nothing(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    exporter = make_exporter(sim, phones=False)
    scrape(exporter)
    exporter.close()
    assert list(tmp_path.iterdir()) == []


def test_stored_details_older_than_the_staleness_bound_are_fetched_again(
    sim: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    run_once(make_exporter, sim, tmp_path)
    with sqlite3.connect(store_file(tmp_path, sim)) as db:
        db.execute("UPDATE details SET fetched_at = fetched_at - 700")  # older than 10 minutes
    sim.reset_counters()
    exporter = make_exporter(
        sim, cache_dir=str(tmp_path), phones=False, detail_max_age=3600.0, cache_max_stale=600.0
    )
    got = samples(scrape(exporter))
    exporter.close()
    assert dict(sim.calls) == {LIST: 1, DETAIL: len(fleet())}
    assert_complete(got, fleet())  # served, not withheld as too old
