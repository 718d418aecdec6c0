"""The exposition formats this exporter writes, and picking one for an Accept header."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from cph_exporter.http.text_writer import openmetrics_writer, text_writer


@dataclass(frozen=True)
class Format:
    """One exposition format this exporter writes."""

    content_type: str
    encoder: Callable[[Collector], bytes]  # a whole registry, as prometheus_client writes it
    # One family of the snapshot part, the same bytes as `encoder` writes for it (without
    # OpenMetrics' EOF marker), written directly where it can be.
    write_family: Callable[[Metric], Iterable[bytes]]


TEXT = Format(
    "text/plain; version=0.0.4; charset=utf-8", generate_latest, text_writer(generate_latest)
)
OPENMETRICS = Format(
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    generate_openmetrics,
    openmetrics_writer(generate_openmetrics),
)
# The same text: 1.0.0 changed nothing a gauge-only exporter writes.
OPENMETRICS_0_0_1 = Format(
    "application/openmetrics-text; version=0.0.1; charset=utf-8",
    generate_openmetrics,
    OPENMETRICS.write_family,
)


def negotiate(accept: str | None) -> Format:
    """The format for an Accept header, as Prometheus's own negotiation (expfmt) picks it.

    Media ranges are tried by falling quality; a range this exporter cannot write (another
    type, an unknown version, a malformed parameter) is passed over, and when none is left
    the answer is the text format 0.0.4. OpenMetrics without a version is 1.0.0.
    """
    ranges: list[tuple[float, int, str, str]] = []
    for position, item in enumerate((accept or "").split(",")):
        media, *params = item.split(";")
        quality, version = 1.0, ""
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0 <= quality <= 1:  # NaN included
                    quality = 0.0
            elif name == "version":
                version = value
        if quality > 0:
            ranges.append((-quality, position, media.strip().lower(), version))
    for _, _, media, version in sorted(ranges):
        if media == "text/plain" and version in ("", "0.0.4"):
            return TEXT
        if media == "application/openmetrics-text" and version in ("", "1.0.0"):
            return OPENMETRICS
        if media == "application/openmetrics-text" and version == "0.0.1":
            return OPENMETRICS_0_0_1
    return TEXT
