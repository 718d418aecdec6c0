"""The CPH projects one exporter watches: each with its own client and refresher.

A scrape asks every target at once and waits no longer than its one deadline in all, so a
slow or failing project never holds up the others: its last data (or cph_up 0) is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cph_exporter.cph.client import CphClient
from cph_exporter.cph.models import Server
from cph_exporter.credentials.values import Credentials
from cph_exporter.refresh.refresher import Refresher
from cph_exporter.refresh.snapshot import Snapshot


@dataclass(frozen=True)
class TargetSpec:
    """One project to watch, as flags or the config file describe it."""

    region: str
    project_id: str
    endpoint: str
    credentials: Callable[[], Credentials]
    on_auth_failure: Callable[[], None] | None = None
    server_ids: tuple[str, ...] = ()
    server_filter: Callable[[Server], bool] | None = None
    name: str = ""
    credential_source: str = ""  # where the credentials come from, by kind: never a value


@dataclass(frozen=True)
class TargetView:
    """What the collectors see of one target at one moment."""

    region: str
    project_id: str
    snapshot: Snapshot


@dataclass
class Target:
    region: str
    project_id: str
    client: CphClient
    refresher: Refresher

    def view(self, snapshot: Snapshot) -> TargetView:
        return TargetView(self.region, self.project_id, snapshot)


class TargetSet:
    """Every target of one exporter, asked together so that one slow project holds none up."""

    def __init__(
        self, targets: Sequence[Target], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.targets = tuple(targets)
        self._monotonic = monotonic

    def views(self, timeout: float) -> tuple[TargetView, ...]:
        """Every target's freshest snapshot obtainable within `timeout` seconds in all."""
        deadline = self._monotonic() + timeout
        for target in self.targets:  # start every due refresh before waiting for any
            target.refresher.snapshot(timeout=0)
        return tuple(
            target.view(target.refresher.snapshot(max(0.0, deadline - self._monotonic())))
            for target in self.targets
        )

    def current(self) -> tuple[TargetView, ...]:
        return tuple(target.view(target.refresher.current()) for target in self.targets)

    @property
    def ready(self) -> bool:
        """Every target has finished its first refresh (successful or not)."""
        return all(target.refresher.ready for target in self.targets)

    def close(self) -> None:
        for target in self.targets:
            target.refresher.close()
            target.client.close()
