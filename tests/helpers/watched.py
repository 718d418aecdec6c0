"""What the tests of scheduled events, encode servers and phone capacity share: a simulated
project with all three listings, and an exporter with every collector on in front of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from cph_exporter.app import Exporter
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_encode_servers,
    generate_phone_models,
    generate_phones,
    generate_scheduled_events,
)
from tests.helpers.fleet import fleet
from tests.helpers.scrape import ExporterFactory

EVERY_COLLECTOR = dict.fromkeys(("scheduled_events", "encode_servers", "phone_capacity"), True)


def watched_simulator(now: float | None = None, count: int = 30) -> Iterator[CphSimulator]:
    """A started simulator of `fleet(count)` with events (relative to `now`), encode servers
    and phone models; `yield from` it in a fixture."""
    servers = fleet(count)
    at = time.time() if now is None else now
    sim = CphSimulator(
        servers,
        {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
        SIMULATOR_PROJECT_ID,
        phones=generate_phones(servers),
        scheduled_events=generate_scheduled_events(servers, at),
        encode_servers=generate_encode_servers(servers),
        phone_models=generate_phone_models(servers),
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def exporter_of(make_exporter: ExporterFactory, sim: CphSimulator, **settings: Any) -> Exporter:
    return make_exporter(sim, **{**EVERY_COLLECTOR, **settings})


def unix(text: str | None) -> float | None:
    """Unix seconds of any time form the simulator writes; parsed here, independently of
    the exporter's parser."""
    if text is None:
        return None
    return (
        datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
        .replace(tzinfo=timezone.utc)
        .timestamp()
    )
