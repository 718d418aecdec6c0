"""What the exposition keeps between scrapes: compressed snapshot parts only, and the live
part for a moment; identity answers are inflated from the kept bytes while they are sent."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.cph.models import parse_details, parse_server
from cph_exporter.http import exposition as exposition_module
from cph_exporter.http.exposition import GZIP_HEADER, LIVE_TTL, Exposition
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot
from cph_exporter.refresh.targets import TargetView
from tests.helpers.fleet import fleet

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def views(generation: int = 1) -> tuple[TargetView, ...]:
    records = tuple(ServerRecord(parse_server(s), parse_details(s)) for s in fleet())
    return (
        TargetView("r", "p", Snapshot(records, True, 1.0, 0.1, 1.0, 1.0, generation=generation)),
    )


class StillClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingLive(Collector):
    """A live family whose value counts how often it was collected."""

    def __init__(self) -> None:
        self.collects = 0

    def collect(self) -> Iterator[Metric]:
        self.collects += 1
        yield GaugeMetricFamily("cph_exporter_test_collects", "Collects.", value=self.collects)


def make(clock: StillClock | None = None) -> tuple[Exposition, CountingLive]:
    live = CountingLive()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(live)
    exposition = Exposition(
        lambda v: [ServerCollector(lambda: v)], registry, clock=clock or StillClock()
    )
    return exposition, live


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_only_compressed_parts_are_kept_and_identity_is_their_text(accept: str | None) -> None:
    exposition, _ = make()
    plain = exposition.body(views(), accept, gzip_ok=False)
    assert not isinstance(plain.parts, (tuple, list))  # made while it is sent
    text = b"".join(plain.parts)
    assert plain.length == len(text)
    zipped = exposition.body(views(), accept, gzip_ok=True)
    joined = b"".join(zipped.parts)
    assert zipped.length == len(joined)
    assert gzip.decompress(joined) == text
    assert len(exposition._cache) == 1
    assert all(part.data.startswith(GZIP_HEADER) for part in exposition._cache.values())


def test_identity_is_inflated_in_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    exposition, _ = make()
    whole = b"".join(exposition.body(views(), None, gzip_ok=False).parts)
    monkeypatch.setattr(exposition_module, "_INFLATE_IN", 7)
    monkeypatch.setattr(exposition_module, "_INFLATE_OUT", 100)
    pieces = list(exposition.body(views(), None, gzip_ok=False).parts)
    assert len(pieces) > len(whole) // 100
    assert max(len(piece) for piece in pieces[:-1]) <= 100  # the last one is the live part
    assert b"".join(pieces) == whole


def test_the_live_part_is_encoded_once_a_moment_and_again_for_a_new_snapshot() -> None:
    clock = StillClock()
    exposition, live = make(clock)
    first = b"".join(exposition.body(views(), None, gzip_ok=False).parts)
    gzip.decompress(b"".join(exposition.body(views(), None, gzip_ok=True).parts))
    exposition.body(views(), None, gzip_ok=False)
    assert live.collects == 1
    clock.advance(LIVE_TTL)
    later = b"".join(exposition.body(views(), None, gzip_ok=False).parts)
    assert live.collects == 2 and later != first
    exposition.body(views(generation=2), None, gzip_ok=True)
    assert live.collects == 3  # the snapshot changed: cph_exporter_* may have too
    exposition.body(views(generation=2), OPENMETRICS, gzip_ok=True)
    assert live.collects == 4  # each format is encoded on its own
