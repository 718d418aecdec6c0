"""An embedded stand-in for the CPH API, for tests and local runs of the exporter.

The credentials below are fixed and public: they only ever open this simulator.
"""

from cph_exporter.simulator.fleet import (
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    documented_examples,
    generate_fleet,
    list_entry,
)
from cph_exporter.simulator.phones import generate_phones, simulated_project
from cph_exporter.simulator.server import CphSimulator, Faults

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
) -> CphSimulator:
    """The simulated project of `--simulate` and `python -m cph_exporter.simulator`: the
    documented examples and `count` generated servers with their phones, not yet started."""
    servers, seeded = simulated_project(count, seed, examples=examples)
    return CphSimulator(
        servers,
        {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
        SIMULATOR_PROJECT_ID,
        faults,
        host,
        port,
        phones=seeded if phones else None,
        control=control,
    )


__all__ = [
    "SIMULATOR_ACCESS_KEY",
    "SIMULATOR_PROJECT_ID",
    "SIMULATOR_REGION",
    "SIMULATOR_SECRET_KEY",
    "CphSimulator",
    "Faults",
    "documented_examples",
    "generate_fleet",
    "generate_phones",
    "list_entry",
    "project_simulator",
    "simulated_project",
]
