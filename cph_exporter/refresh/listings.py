"""The listings beside servers and phones: scheduled events, encode servers, phone models.

Each is listed on its own TTL (phone models change rarely and are kept for hours), within
the refresh's deadline and through the same client (so the same rate cap), and fails alone:
a refused or broken call keeps that listing's last data, turns only its own `_up` to 0 and
is one log line per refresh. The servers' own refresh never sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

from cph_exporter.cph.client import CphClient
from cph_exporter.cph.errors import ApiError
from cph_exporter.cph.events import (
    EncodeServer,
    PhoneModel,
    ScheduledEvent,
    parse_encode_server,
    parse_phone_model,
    parse_scheduled_event,
)
from cph_exporter.cph.models import ParseError
from cph_exporter.refresh.shard import WHOLE, Shard
from cph_exporter.refresh.snapshot import Watched

log = logging.getLogger(__name__)

T = TypeVar("T")
_KEY = "listing"
Fetch = Callable[[float], Sequence[Mapping[str, Any]]]


class Listing(Generic[T]):
    """One list call on its own TTL: parsed, filtered and keyed; the last one on failure."""

    def __init__(
        self,
        name: str,
        fetch: Fetch,
        parse: Callable[[object], T],
        key: Callable[[T], str],
        ttl: float,
        *,
        keep: Callable[[T], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._parse = parse
        self._key = key
        self._keep = keep
        self._cache: TTLCache[str, tuple[T, ...]] = TTLCache(maxsize=1, ttl=ttl, timer=monotonic)

    def refresh(
        self,
        previous: tuple[T, ...] | None,
        deadline: float,
        warn: Callable[..., None] = log.warning,
    ) -> tuple[tuple[T, ...] | None, bool]:
        cached = self._cache.get(_KEY)
        if cached is not None:
            return cached, True
        try:
            entries = self._fetch(deadline)
        except ApiError as exc:
            warn("%s unavailable, serving the last ones: %s", self.name, exc)
            return previous, False
        except Exception:  # a bug here must cost this listing, never the refresh
            log.exception("%s: listing failed unexpectedly", self.name)
            return previous, False
        items: dict[str, T] = {}
        skipped = 0
        for entry in entries:
            try:
                item = self._parse(entry)
            except ParseError:
                skipped += 1
                continue
            if self._keep is None or self._keep(item):
                items.setdefault(self._key(item), item)  # the first of a repeated id wins
        if skipped:
            log.warning("%s: skipped %d entries without an identifier", self.name, skipped)
        listed = tuple(item for _, item in sorted(items.items()))
        self._cache[_KEY] = listed
        return listed, True


class WatchedListings:
    """The three listings of one target; None for a collector that is turned off."""

    def __init__(
        self,
        client: CphClient,
        *,
        scheduled_events_ttl: float | None,
        encode_servers_ttl: float | None,
        phone_models_ttl: float | None,
        server_ids: tuple[str, ...] = (),
        shard: Shard = WHOLE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # With --cph.server-id (least privilege), only the watched servers' entries are asked.
        watched = tuple(s for s in server_ids if shard.owns(s))

        def per_server(list_call: Callable[..., Any]) -> Fetch:
            def fetch(deadline: float) -> Sequence[Mapping[str, Any]]:
                if not watched:
                    return list(list_call(deadline).entries)
                return [e for s in watched for e in list_call(deadline, server_id=s).entries]

            return fetch

        def owned(item: ScheduledEvent | EncodeServer) -> bool:
            return shard.owns(item.server_id)  # another replica exports the others

        self.scheduled_events: Listing[ScheduledEvent] | None = None
        self.encode_servers: Listing[EncodeServer] | None = None
        self.phone_models: Listing[PhoneModel] | None = None
        if scheduled_events_ttl is not None:
            self.scheduled_events = Listing(
                "scheduled events",
                per_server(client.list_scheduled_events),
                parse_scheduled_event,
                lambda event: event.event_id,
                scheduled_events_ttl,
                keep=owned,
                monotonic=monotonic,
            )
        if encode_servers_ttl is not None:
            self.encode_servers = Listing(
                "encode servers",
                per_server(client.list_encode_servers),
                parse_encode_server,
                lambda encode_server: encode_server.encode_server_id,
                encode_servers_ttl,
                keep=owned,
                monotonic=monotonic,
            )
        if phone_models_ttl is not None:
            self.phone_models = Listing(
                "phone models",
                lambda deadline: client.list_phone_models(deadline).entries,
                parse_phone_model,
                lambda model: model.phone_model_name,
                phone_models_ttl,
                monotonic=monotonic,
            )

    def refresh(
        self, previous: Watched, deadline: float, warn: Callable[..., None] = log.warning
    ) -> Watched:
        """Each listing whose TTL ran out, listed again; `warn` reports the failures."""
        events, events_up = None, False
        if self.scheduled_events is not None:
            events, events_up = self.scheduled_events.refresh(
                previous.scheduled_events, deadline, warn
            )
        encoders, encoders_up = None, False
        if self.encode_servers is not None:
            encoders, encoders_up = self.encode_servers.refresh(
                previous.encode_servers, deadline, warn
            )
        models, models_up = None, False
        if self.phone_models is not None:
            models, models_up = self.phone_models.refresh(previous.phone_models, deadline, warn)
        return Watched(
            scheduled_events=events,
            scheduled_events_up=events_up,
            encode_servers=encoders,
            encode_servers_up=encoders_up,
            phone_models=models,
            phone_models_up=models_up,
        )
