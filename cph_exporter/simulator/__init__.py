"""An embedded stand-in for the CPH API, for tests and local runs of the exporter.

The credentials below are fixed and public: they only ever open this simulator.
"""

import time

from cph_exporter.simulator.fleet import (
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    documented_examples,
    generate_fleet,
    list_entry,
)
from cph_exporter.simulator.phones import generate_phones, simulated_project
from cph_exporter.simulator.server import CphSimulator, Faults
from cph_exporter.simulator.watched import (
    MISSING_PHONE_MODEL,
    generate_encode_servers,
    generate_phone_models,
    generate_scheduled_events,
)

SIMULATOR_ACCESS_KEY = "SIMULATORACCESSKEY0001"
SIMULATOR_SECRET_KEY = "simulator-secret-key-not-a-real-one"


def project_simulator(
    count: int,
    seed: int = 0,
    faults: Faults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    examples: bool = True,
    phones: bool = True,
    control: bool = False,
    watched: bool = True,
    now: float | None = None,
) -> CphSimulator:
    """The simulated project of `--simulate` and `python -m cph_exporter.simulator`: the
    documented examples and `count` generated servers with their phones, not yet started.

    With `watched`, it also has scheduled events (times relative to `now`, default the wall
    clock), encode servers and phone models for all of its flavours but one."""
    servers, seeded = simulated_project(count, seed, examples=examples)
    at = time.time() if now is None else now
    return CphSimulator(
        servers,
        {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
        SIMULATOR_PROJECT_ID,
        faults,
        host,
        port,
        phones=seeded if phones else None,
        control=control,
        scheduled_events=generate_scheduled_events(servers, at, seed) if watched else None,
        encode_servers=generate_encode_servers(servers, seed) if watched else None,
        phone_models=generate_phone_models(servers) if watched else None,
    )


__all__ = [
    "MISSING_PHONE_MODEL",
    "SIMULATOR_ACCESS_KEY",
    "SIMULATOR_PROJECT_ID",
    "SIMULATOR_REGION",
    "SIMULATOR_SECRET_KEY",
    "CphSimulator",
    "Faults",
    "documented_examples",
    "generate_encode_servers",
    "generate_fleet",
    "generate_phone_models",
    "generate_phones",
    "generate_scheduled_events",
    "list_entry",
    "project_simulator",
    "simulated_project",
]
