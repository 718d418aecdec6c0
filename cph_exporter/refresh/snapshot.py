"""An immutable picture of one target as one refresh saw it; scrapes only ever read these."""

from __future__ import annotations

from dataclasses import dataclass

from cph_exporter.cph.events import EncodeServer, PhoneModel, ScheduledEvent
from cph_exporter.cph.models import Phone, Server, ServerDetails


@dataclass(frozen=True, slots=True)
class ServerRecord:
    server: Server
    details: ServerDetails | None  # None: the detail call failed, status still comes from the list


@dataclass(frozen=True)
class Watched:
    """The listings beside servers and phones, each on its own TTL and failing alone.

    A listing is None when it is not collected or was never listed; its `_up` says whether
    its latest listing succeeded (on failure the last listing stays).
    """

    scheduled_events: tuple[ScheduledEvent, ...] | None = None
    scheduled_events_up: bool = False
    encode_servers: tuple[EncodeServer, ...] | None = None
    encode_servers_up: bool = False
    phone_models: tuple[PhoneModel, ...] | None = None
    phone_models_up: bool = False


NOT_WATCHED = Watched()


@dataclass(frozen=True)
class Snapshot:
    servers: tuple[ServerRecord, ...]
    up: bool  # the latest refresh reached the API and listed (or fetched) the servers
    completed_at: float | None  # wall clock of the refresh behind this; None: none yet
    refresh_duration: float
    last_success_at: float | None  # wall clock of the latest successful refresh
    data_at: float | None  # wall clock at which `servers` were fetched
    error: str = ""  # why the latest refresh failed, for logs; never a label
    generation: int = 0  # grows with every refresh, so renderers can cache by it
    phones: tuple[Phone, ...] | None = None  # None: not collected, or never listed yet
    phones_up: bool = False  # the latest phone listing succeeded
    watched: Watched = NOT_WATCHED  # scheduled events, encode servers, phone models

    @property
    def servers_without_details(self) -> int:
        return sum(1 for record in self.servers if record.details is None)


EMPTY = Snapshot(
    servers=(),
    up=False,
    completed_at=None,
    refresh_duration=0.0,
    last_success_at=None,
    data_at=None,
    error="no refresh has completed yet",
)
