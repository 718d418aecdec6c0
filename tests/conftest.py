"""Shared fixtures: a real simulator on loopback and a real exporter in front of it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from cph_exporter.app import Exporter
from cph_exporter.credentials.values import Credentials
from cph_exporter.settings.config import Config
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    documented_examples,
    generate_fleet,
    generate_phones,
)

GOOD_CREDENTIALS = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)


def fleet(count: int = 30) -> list[dict[str, Any]]:
    return documented_examples() + generate_fleet(count)


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


ExporterFactory = Callable[..., Exporter]


@pytest.fixture
def make_exporter() -> Iterator[ExporterFactory]:
    """Builds started exporters pointed at a simulator; all are closed after the test."""
    started: list[Exporter] = []

    def build(
        sim: CphSimulator, credentials: Credentials = GOOD_CREDENTIALS, **settings: Any
    ) -> Exporter:
        # The rate cap has its own tests; elsewhere it would only slow the suite down.
        settings.setdefault("max_requests_per_second", 0.0)
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
        exporter = Exporter(config, lambda: credentials)
        exporter.start()
        started.append(exporter)
        return exporter

    yield build
    for exporter in started:
        exporter.close()


def scrape(exporter: Exporter, **headers: str) -> str:
    response = requests.get(exporter.url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in HTTP server on loopback for a fixture: `yield from serve(Handler)`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
