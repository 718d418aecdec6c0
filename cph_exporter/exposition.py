"""Renders a scrape: the per-server part once per snapshot, the exporter's own part live.

The per-server families change only when a refresh produces a new snapshot, so their
bytes are rendered once and served to every scrape until then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from cph_exporter.snapshot import Snapshot

_EOF = b"# EOF\n"


class Exposition:
    def __init__(
        self, fleet_collector: Callable[[Snapshot], Collector], live: CollectorRegistry
    ) -> None:
        self._fleet_collector = fleet_collector
        self._live = live
        self._lock = threading.Lock()
        self._cache_key: tuple[int, bool, bool] | None = None
        self._cache: dict[str, bytes] = {}

    def render(self, snapshot: Snapshot, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        fleet = self._fleet_bytes(snapshot, encoder, content_type)
        live = encoder(self._live)
        if fleet.endswith(_EOF):  # OpenMetrics allows one EOF marker, at the very end
            fleet = fleet[: -len(_EOF)]
        return fleet + live, content_type

    def _fleet_bytes(
        self, snapshot: Snapshot, encoder: Callable[[Collector], bytes], content_type: str
    ) -> bytes:
        # A stale-dropped snapshot shares its generation with the full one: key on both.
        key = (snapshot.generation, snapshot.up, bool(snapshot.servers))
        with self._lock:
            if key != self._cache_key:
                self._cache_key, self._cache = key, {}
            cached = self._cache.get(content_type)
        if cached is not None:
            return cached
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._fleet_collector(snapshot))
        rendered = encoder(registry)
        with self._lock:
            if key == self._cache_key:
                self._cache[content_type] = rendered
        return rendered
