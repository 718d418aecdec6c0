"""--simulate: start the embedded CPH simulator and point the exporter's config at it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cph_exporter.config import Config
from cph_exporter.credentials import Credentials
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    Faults,
    simulated_project,
)


@dataclass
class SimulatedProject:
    simulator: CphSimulator
    config: Config
    credentials: Credentials
    servers: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return self.simulator.url

    @classmethod
    def start(cls, config: Config) -> SimulatedProject:
        servers, phones = simulated_project(config.simulate_servers, config.simulate_seed)
        simulator = CphSimulator(
            servers,
            {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY},
            SIMULATOR_PROJECT_ID,
            faults=Faults(latency=config.simulate_latency),
            phones=phones,
        )
        url = simulator.start()
        config = dataclasses.replace(
            config, region=SIMULATOR_REGION, project_id=SIMULATOR_PROJECT_ID, endpoint=url
        )
        credentials = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)
        return cls(simulator, config, credentials, servers)

    def stop(self) -> None:
        self.simulator.stop()
