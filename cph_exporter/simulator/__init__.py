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
    "simulated_project",
]
