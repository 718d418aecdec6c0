"""The simulated fleet most tests run against: the documented examples and 30 generated."""

from __future__ import annotations

from typing import Any

from cph_exporter.credentials.values import Credentials
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_SECRET_KEY,
    documented_examples,
    generate_fleet,
)

GOOD_CREDENTIALS = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)


def fleet(count: int = 30) -> list[dict[str, Any]]:
    return documented_examples() + generate_fleet(count)
