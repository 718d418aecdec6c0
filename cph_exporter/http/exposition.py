"""Renders a scrape: the per-server part once per snapshot, the exporter's own part live.

The per-server families change only when a refresh produces a new snapshot, so their
bytes are rendered once and served to every scrape until then; so is their compression.
A gzip answer is ONE gzip member (RFC 1952), because not every client reads more than one
(curl 7.88 silently stops after the first):

    gzip header | snapshot deflate, ended by a full flush | live deflate, final block | trailer

The snapshot part is raw deflate (no header of its own) that ends with Z_FULL_FLUSH: its
last block is not final, it ends on a byte boundary and nothing after it refers back into
it, so another raw deflate stream may follow it as the rest of the same stream. It is
cached with its CRC-32 and length. Per scrape only the small live part is compressed, and
the trailer is computed without touching the snapshot bytes: the CRC-32 continues from the
cached part's (`zlib.crc32(live, crc)`) and ISIZE is the sum of the lengths mod 2**32.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from cph_exporter.refresh.targets import TargetView

_EOF = b"# EOF\n"
# The snapshot part is compressed once per snapshot, so it can afford a better ratio; the
# live part is a few kB compressed on every scrape, so speed matters more there.
SNAPSHOT_GZIP_LEVEL = 6
LIVE_GZIP_LEVEL = 1
_RAW_DEFLATE = -15  # wbits: deflate without a zlib or gzip wrapper
# RFC 1952 header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class _Part:
    """The snapshot part as sent: text, or gzip header plus unfinished deflate."""

    data: bytes
    crc: int = 0  # CRC-32 of the uncompressed text (gzip only)
    size: int = 0  # its length in bytes (gzip only)


def gzip_tail(live: bytes, crc: int, size: int) -> bytes:
    """The live text's final deflate blocks and the one trailer of the whole member."""
    compressor = zlib.compressobj(LIVE_GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE)
    deflated = compressor.compress(live) + compressor.flush(zlib.Z_FINISH)
    trailer = struct.pack("<II", zlib.crc32(live, crc), (size + len(live)) & 0xFFFFFFFF)
    return deflated + trailer


@dataclass(frozen=True)
class Body:
    """One answer to a scrape: send `parts` one after the other, as one body."""

    parts: tuple[bytes, ...]
    content_type: str
    content_encoding: str | None = None  # "gzip", or None for identity


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when Accept-Encoding lists gzip without refusing it (q=0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip().lower().replace(" ", "")
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


_Key = tuple[tuple[int, bool, bool], ...]


def _cache_key(views: Sequence[TargetView]) -> _Key:
    # A stale-dropped snapshot shares its generation with the full one: key on both.
    return tuple((v.snapshot.generation, v.snapshot.up, bool(v.snapshot.servers)) for v in views)


class _OneFamily(Collector):
    """One metric family, in the shape the exposition encoders take."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def _age(key: _Key) -> int:
    return sum(generation for generation, _, _ in key)


class Exposition:
    def __init__(
        self,
        snapshot_collectors: Callable[[Sequence[TargetView]], Sequence[Collector]],
        live: CollectorRegistry,
    ) -> None:
        self._snapshot_collectors = snapshot_collectors
        self._live = live
        self._lock = threading.Lock()
        # One render at a time: concurrent first scrapes of a new snapshot (two Prometheus
        # replicas) wait for one render instead of each doing the same work.
        self._render_lock = threading.Lock()
        self._cache_key: _Key | None = None
        # What Prometheus asks for (OpenMetrics or text, gzip or not), remembered so that a
        # refresh can render its snapshot before the next scrape needs it.
        self._last_request: tuple[str | None, bool] | None = None
        self._cache: dict[tuple[str, bool], _Part] = {}

    def render(self, views: Sequence[TargetView], accept: str | None) -> tuple[bytes, str]:
        """The whole uncompressed exposition and its content type."""
        body = self.body(views, accept, gzip_ok=False)
        return b"".join(body.parts), body.content_type

    def prerender(self, views: Sequence[TargetView]) -> None:
        """Render new snapshots in the form the latest scrape asked for, ahead of the scrape."""
        if self._last_request is not None:
            self.body(views, *self._last_request)

    def body(self, views: Sequence[TargetView], accept: str | None, gzip_ok: bool) -> Body:
        self._last_request = (accept, gzip_ok)
        encoder, content_type = choose_encoder(accept or "")
        cached = self._snapshot_part(views, encoder, content_type, gzip_ok)
        live = encoder(self._live)
        if gzip_ok:
            tail = gzip_tail(live, cached.crc, cached.size)
            return Body((cached.data, tail), content_type, "gzip")
        return Body((cached.data, live), content_type)

    def _snapshot_part(
        self,
        views: Sequence[TargetView],
        encoder: Callable[[Collector], bytes],
        content_type: str,
        gzip_ok: bool,
    ) -> _Part:
        key = _cache_key(views)
        cached = self._cached(key, (content_type, gzip_ok))
        if cached is not None:
            return cached
        with self._render_lock:
            cached = self._cached(key, (content_type, gzip_ok))
            if cached is not None:
                return cached
            rendered = self._render(views, encoder, gzip_ok)
            self._store(key, (content_type, gzip_ok), rendered)
            return rendered

    def _render(
        self, views: Sequence[TargetView], encoder: Callable[[Collector], bytes], gzip_ok: bool
    ) -> _Part:
        """The snapshot part's families, rendered (and compressed) one family at a time.

        At 10,000 servers the text is over 50 MB: built whole, its lines, their join and
        its encoding would all be in memory at once. Family by family, only one family's
        text is, and with gzip (what Prometheus asks for) the whole text never is.
        """
        compressor = (
            zlib.compressobj(SNAPSHOT_GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE) if gzip_ok else None
        )
        chunks: list[bytes] = [GZIP_HEADER] if compressor else []
        crc = size = 0
        for collector in self._snapshot_collectors(views):
            for family in collector.collect():
                text = encoder(_OneFamily(family))
                if text.endswith(_EOF):  # OpenMetrics allows one EOF marker, at the very end
                    text = text[: -len(_EOF)]
                if compressor is None:
                    chunks.append(text)
                    continue
                crc, size = zlib.crc32(text, crc), size + len(text)
                chunks.append(compressor.compress(text))
        if compressor is None:
            return _Part(b"".join(chunks))
        # A full flush, not a finish: no final block, so the live part's deflate follows.
        chunks.append(compressor.flush(zlib.Z_FULL_FLUSH))
        return _Part(b"".join(chunks), crc, size & 0xFFFFFFFF)

    def _cached(self, key: _Key, variant: tuple[str, bool]) -> _Part | None:
        with self._lock:
            return self._cache.get(variant) if key == self._cache_key else None

    def _store(self, key: _Key, variant: tuple[str, bool], data: _Part) -> None:
        with self._lock:
            if key != self._cache_key:
                # Newer snapshots only ever replace older ones: drop the old bytes at once.
                if self._cache_key is not None and _age(key) < _age(self._cache_key):
                    return
                self._cache_key, self._cache = key, {}
            self._cache[variant] = data
