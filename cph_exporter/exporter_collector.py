"""The exporter's view of its own data: freshness, refresh cost and build, always live."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.snapshot import Snapshot


class ExporterCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        ttl: float,
        version: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot = snapshot
        self._ttl = ttl
        self._version = version
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        build = GaugeMetricFamily(
            "cph_exporter_build_info",
            "Version of the exporter and of the Python running it, value 1.",
            labels=("version", "python_version"),
        )
        build.add_metric((self._version, platform.python_version()), 1.0)
        yield build
        yield GaugeMetricFamily(
            "cph_exporter_cache_ttl_seconds",
            "How long fetched CPH data is served from the cache before a refresh.",
            value=self._ttl,
        )
        yield GaugeMetricFamily(
            "cph_exporter_refresh_duration_seconds",
            "Duration of the latest refresh from the CPH API.",
            value=snapshot.refresh_duration,
        )
        last = GaugeMetricFamily(
            "cph_exporter_last_refresh_success_timestamp_seconds",
            "When a refresh from the CPH API last succeeded, Unix time.",
        )
        if snapshot.last_success_at is not None:
            last.add_metric((), snapshot.last_success_at)
        yield last
        age = GaugeMetricFamily(
            "cph_exporter_data_age_seconds",
            "Age of the per-server data being served; grows while refreshes fail.",
        )
        if snapshot.data_at is not None:
            age.add_metric((), max(0.0, self._clock() - snapshot.data_at))
        yield age
        yield GaugeMetricFamily(
            "cph_exporter_servers_without_details",
            "Servers in the served data whose details could not be fetched.",
            value=snapshot.servers_without_details,
        )
