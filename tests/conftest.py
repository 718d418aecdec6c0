"""Shared fixtures: a real simulator on loopback and a real exporter in front of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cph_exporter.app import Exporter
from cph_exporter.credentials.values import Credentials
from cph_exporter.settings.config import Config
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_phones,
)
from tests.helpers.clock import TtlClock
from tests.helpers.fleet import GOOD_CREDENTIALS, fleet
from tests.helpers.pki import Files, Pki, make_ca
from tests.helpers.scrape import ExporterFactory


@pytest.fixture
def simulator() -> Iterator[CphSimulator]:
    sim = CphSimulator(
        fleet(),
        {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
        SIMULATOR_PROJECT_ID,
        phones=generate_phones(fleet()),
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_ca("test CA")


@pytest.fixture(scope="session")
def other_pki() -> Pki:
    return make_ca("some other CA")


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> Files:
    files = Files(tmp_path, pki)
    files.write("ca.crt", pki.ca.cert_pem)
    return files


@pytest.fixture
def make_exporter() -> Iterator[ExporterFactory]:
    """Builds started exporters pointed at a simulator; all are closed after the test."""
    started: list[Exporter] = []

    def build(
        sim: CphSimulator, credentials: Credentials = GOOD_CREDENTIALS, **settings: Any
    ) -> Exporter:
        # The rate cap has its own tests; elsewhere it would only slow the suite down.
        settings.setdefault("max_requests_per_second", 0.0)
        clock = settings.pop("cache_timer", None) or TtlClock()
        # So do the listings beside servers and phones; off here, the older tests' call
        # counts stay exact.
        for collector in ("scheduled_events", "encode_servers", "phone_capacity"):
            settings.setdefault(collector, False)
        config = dataclasses.replace(
            Config(),
            listen_address="127.0.0.1:0",
            region=SIMULATOR_REGION,
            project_id=SIMULATOR_PROJECT_ID,
            endpoint=sim.url,
            **settings,
        )
        exporter = Exporter(config, lambda: credentials, cache_timer=clock)
        TtlClock.of[exporter] = clock
        exporter.start()
        started.append(exporter)
        return exporter

    yield build
    for exporter in started:
        exporter.close()
