"""The exporter's view of its own data: freshness, refresh cost and build, always live."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.cph.ratelimit import RateLimiter
from cph_exporter.refresh.targets import TargetView


class ExporterCollector(Collector):
    """One value for the whole exporter: the worst of its targets (cph_up tells them apart)."""

    def __init__(
        self,
        views: Callable[[], Sequence[TargetView]],
        ttl: float,
        version: str,
        clock: Callable[[], float] = time.time,
        revision: str = "",
    ) -> None:
        self._views = views
        self._ttl = ttl
        self._version = version
        self._revision = revision
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snapshots = [view.snapshot for view in self._views()]
        build = GaugeMetricFamily(
            "cph_exporter_build_info",
            "Version and git revision of the exporter and the Python running it, value 1.",
            labels=("version", "revision", "python_version"),
        )
        build.add_metric((self._version, self._revision, platform.python_version()), 1.0)
        yield build
        yield GaugeMetricFamily(
            "cph_exporter_cache_ttl_seconds",
            "How long fetched CPH data is served from the cache before a refresh.",
            value=self._ttl,
        )
        yield GaugeMetricFamily(
            "cph_exporter_refresh_duration_seconds",
            "Duration of the latest refresh from the CPH API (the slowest target's).",
            value=max((s.refresh_duration for s in snapshots), default=0.0),
        )
        last = GaugeMetricFamily(
            "cph_exporter_last_refresh_success_timestamp_seconds",
            "When a refresh from the CPH API last succeeded, Unix time (the oldest target's).",
        )
        successes = [s.last_success_at for s in snapshots if s.last_success_at is not None]
        if successes:
            last.add_metric((), min(successes))
        yield last
        age = GaugeMetricFamily(
            "cph_exporter_data_age_seconds",
            "Age of the per-server data being served (the oldest target's); grows while "
            "refreshes fail.",
        )
        fetched = [s.data_at for s in snapshots if s.data_at is not None]
        if fetched:
            age.add_metric((), max(0.0, self._clock() - min(fetched)))
        yield age
        yield GaugeMetricFamily(
            "cph_exporter_servers_without_details",
            "Servers in the served data whose details could not be fetched.",
            value=sum(s.servers_without_details for s in snapshots),
        )


class RateLimitCollector(Collector):
    """The rate in force, live: it drops while the API throttles and recovers after."""

    def __init__(self, limiter: RateLimiter | None) -> None:
        self._limiter = limiter

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "cph_exporter_api_rate_limit_requests_per_second",
            "CPH API requests per second allowed now (0: unlimited): the configured maximum, "
            "halved by throttling answers and recovered after runs of successes.",
            value=0.0 if self._limiter is None else self._limiter.rate,
        )
