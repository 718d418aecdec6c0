"""The exporter's own instruments: API calls made, by operation and outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# *_created series double the exporter's own series for no use in Prometheus's text format.
disable_created_metrics()  # type: ignore[no-untyped-call]

# API round trips usually take tens to hundreds of ms; throttled retries take seconds.
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """Counters only grow, so updating them from refresh threads is safe and race-free."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cph_exporter_api_requests",
            "CPH API requests made, by operation and HTTP status code ('error' when no answer).",
            ["operation", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "cph_exporter_api_request_duration_seconds",
            "Duration of CPH API requests, retries counted separately.",
            ["operation"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.detail_failures = Counter(
            "cph_exporter_detail_fetch_failures",
            "Server detail fetches that failed after all retries.",
            registry=registry,
        )

    def observe(self, operation: str, code: str, seconds: float) -> None:
        self.requests.labels(operation, code).inc()
        self.duration.labels(operation).observe(seconds)
