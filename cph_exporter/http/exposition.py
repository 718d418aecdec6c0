"""Renders a scrape: the per-server part once per snapshot, the exporter's own part live.

The per-server families change only when a refresh produces a new snapshot, so their
bytes are rendered once and served to every scrape until then; so is their compression.
Only the compressed bytes are kept (at 10,000 servers the text is over 50 MB, its deflate
about 4 MB): an uncompressed answer is inflated from them while it is sent, a piece at a
time, so no whole text is ever held.
A gzip answer is ONE gzip member (RFC 1952), because not every client reads more than one
(curl 7.88 silently stops after the first):

    gzip header | snapshot deflate, ended by a full flush | live deflate, final block | trailer

The snapshot part is raw deflate (no header of its own) that ends with Z_FULL_FLUSH: its
last block is not final, it ends on a byte boundary and nothing after it refers back into
it, so another raw deflate stream may follow it as the rest of the same stream. It is
cached with its CRC-32 and length. Per scrape only the small live part is compressed, and
the trailer is computed without touching the snapshot bytes: the CRC-32 continues from the
cached part's (`zlib.crc32(live, crc)`) and ISIZE is the sum of the lengths mod 2**32.

The live part (the exporter's own families, process_* and python_*) is encoded, and
compressed, at most once per LIVE_TTL seconds and per snapshot: scrapes in between reuse
it, and a gzip scrape costs a CRC-32 of the live text and two small writes.

Rendering runs on its own thread, one per format at most, and a scrape waits for it only
within its deadline: past it, the scrape is answered with the last rendering of that format
(an older snapshot), or with every target's `cph_up 0` when there is none yet. Only the
formats that exist are rendered (`formats.negotiate`), so no Accept header can grow the cache.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from cph_exporter.http.formats import Format, negotiate
from cph_exporter.refresh.snapshot import EMPTY
from cph_exporter.refresh.targets import TargetView

_Key = tuple[tuple[int, bool, bool], ...]
_Variant = str  # the content type: only compressed bytes are kept, one per format

# Levels above 3 switch zlib to lazy matching: at 10,000 servers level 6 takes 2.6 times as
# long as level 3 for a tenth fewer bytes, and that CPU comes with every new snapshot.
SNAPSHOT_GZIP_LEVEL = 3
LIVE_GZIP_LEVEL = 1
LIVE_TTL = 1.0  # seconds the live part is reused for
_INFLATE_IN = 64 * 1024  # compressed bytes inflated at a time for an identity answer
_INFLATE_OUT = 1024 * 1024  # at most this much text at a time
_RAW_DEFLATE = -15  # wbits: deflate without a zlib or gzip wrapper
# RFC 1952 header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class _Part:
    """The snapshot part as kept: gzip header plus unfinished deflate."""

    data: bytes
    crc: int  # CRC-32 of the uncompressed text
    size: int  # its length in bytes


@dataclass(frozen=True)
class _Live:
    """The live part of one format, as encoded at `at` for the snapshots of `key`."""

    key: _Key
    at: float
    text: bytes
    deflated: bytes  # raw deflate of `text`, final block included


def deflate_live(live: bytes) -> bytes:
    """The live text as the final deflate blocks of a member."""
    compressor = zlib.compressobj(LIVE_GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE)
    return compressor.compress(live) + compressor.flush(zlib.Z_FINISH)


def gzip_tail(live: bytes, crc: int, size: int, deflated: bytes | None = None) -> bytes:
    """The live text's final deflate blocks and the one trailer of the whole member."""
    deflated = deflate_live(live) if deflated is None else deflated
    trailer = struct.pack("<II", zlib.crc32(live, crc), (size + len(live)) & 0xFFFFFFFF)
    return deflated + trailer


def inflated(part: _Part) -> Iterator[bytes]:
    """The text of a snapshot part, a piece at a time."""
    inflater = zlib.decompressobj(_RAW_DEFLATE)
    deflate = memoryview(part.data)[len(GZIP_HEADER) :]
    for start in range(0, len(deflate), _INFLATE_IN):
        pending: bytes | memoryview = deflate[start : start + _INFLATE_IN]
        while pending:
            text = inflater.decompress(pending, _INFLATE_OUT)
            if text:
                yield text
            pending = inflater.unconsumed_tail
    rest = inflater.flush()
    if rest:
        yield rest


@dataclass(frozen=True)
class Body:
    """One answer to a scrape: send `parts` one after the other, `length` bytes in all.

    Gzip answers are a tuple of bytes; identity ones are produced while they are sent.
    """

    parts: Iterable[bytes]
    length: int
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


class _Render:
    """One rendering in progress on its own thread; waiters read `result` once `done`."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.done = threading.Event()
        self.result: _Part | None = None
        self.error: BaseException | None = None


def _cache_key(views: Sequence[TargetView]) -> _Key:
    # A stale-dropped snapshot shares its generation with the full one: key on both.
    return tuple((v.snapshot.generation, v.snapshot.up, bool(v.snapshot.servers)) for v in views)


def _age(key: _Key) -> int:
    return sum(generation for generation, _, _ in key)


class Exposition:
    def __init__(
        self,
        snapshot_collectors: Callable[[Sequence[TargetView]], Sequence[Collector]],
        live: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot_collectors = snapshot_collectors
        self._live = live
        self._clock = clock
        self._live_parts: dict[str, _Live] = {}
        self._lock = threading.Lock()
        # One render at a time: concurrent first scrapes of a new snapshot (two Prometheus
        # replicas) wait for one render instead of each doing the same work.
        self._render_lock = threading.Lock()
        self._cache_key: _Key | None = None
        # The format Prometheus asks for (OpenMetrics or text), remembered so that a refresh
        # can render its snapshot before the next scrape needs it.
        self._last_request: str | None = None
        self._cache: dict[_Variant, _Part] = {}
        self._renders: dict[_Variant, _Render] = {}  # at most one per format, while it runs

    def render(self, views: Sequence[TargetView], accept: str | None) -> tuple[bytes, str]:
        """The whole uncompressed exposition and its content type."""
        body = self.body(views, accept, gzip_ok=False)
        return b"".join(body.parts), body.content_type

    def prerender(self, views: Sequence[TargetView]) -> None:
        """Render new snapshots in the form the latest scrape asked for, ahead of the scrape."""
        if self._last_request is not None:
            self._snapshot_bytes(views, negotiate(self._last_request), None)

    def body(
        self,
        views: Sequence[TargetView],
        accept: str | None,
        gzip_ok: bool,
        timeout: float | None = None,
    ) -> Body:
        """The answer to a scrape; the snapshot part waits at most `timeout` for a render."""
        fmt = negotiate(accept)
        self._last_request = fmt.content_type
        cached = self._snapshot_bytes(views, fmt, timeout)
        live = self._live_part(fmt, _cache_key(views))
        if gzip_ok:
            tail = gzip_tail(live.text, cached.crc, cached.size, live.deflated)
            return Body((cached.data, tail), len(cached.data) + len(tail), fmt.content_type, "gzip")
        parts = itertools.chain(inflated(cached), (live.text,))
        return Body(parts, cached.size + len(live.text), fmt.content_type)

    def _live_part(self, fmt: Format, key: _Key) -> _Live:
        """The live part, encoded again once it is LIVE_TTL old or the snapshots changed."""
        now = self._clock()
        with self._lock:
            live = self._live_parts.get(fmt.content_type)
        if live is None or live.key != key or not 0 <= now - live.at < LIVE_TTL:
            text = fmt.encoder(self._live)
            live = _Live(key, now, text, deflate_live(text))
            with self._lock:
                self._live_parts[fmt.content_type] = live
        return live

    def _snapshot_bytes(
        self, views: Sequence[TargetView], fmt: Format, timeout: float | None
    ) -> _Part:
        key, variant = _cache_key(views), fmt.content_type
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                cached = self._cache.get(variant) if key == self._cache_key else None
                if cached is not None:
                    return cached
                job = self._renders.get(variant)
                started = job is None  # else wait for the one running, perhaps of an older one
                if job is None:
                    job = self._renders[variant] = _Render(key)
            if started:
                args = (job, variant, tuple(views), fmt.write_family)
                if deadline is None:  # a caller that may wait (the refresh) renders itself
                    self._run(*args)
                else:
                    threading.Thread(
                        target=self._run, args=args, name="cph-render", daemon=True
                    ).start()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.done.wait(remaining):
                return self._what_is_ready(views, variant, fmt.write_family)
            if job.key == key:
                if job.result is None:
                    raise RuntimeError("rendering failed") from job.error
                return job.result

    def _run(
        self,
        job: _Render,
        variant: _Variant,
        views: Sequence[TargetView],
        write_family: Callable[[Metric], Iterable[bytes]],
    ) -> None:
        try:
            with self._render_lock:
                job.result = self._render(views, write_family)
            self._store(job.key, variant, job.result)
        except BaseException as exc:  # handed to the waiters
            job.error = exc
        finally:
            with self._lock:
                if self._renders.get(variant) is job:
                    del self._renders[variant]
            job.done.set()

    def _what_is_ready(
        self,
        views: Sequence[TargetView],
        variant: _Variant,
        write_family: Callable[[Metric], Iterable[bytes]],
    ) -> _Part:
        """While a render runs late: its format's last bytes, else every target's cph_up 0."""
        with self._lock:
            last = self._cache.get(variant)
        if last is not None:
            return last
        return self._render([dataclasses.replace(v, snapshot=EMPTY) for v in views], write_family)

    def _render(
        self, views: Sequence[TargetView], write_family: Callable[[Metric], Iterable[bytes]]
    ) -> _Part:
        """The snapshot part's families, written and compressed a piece at a time.

        At 10,000 servers the text is over 50 MB, and one family over 20 MB: built whole,
        its lines, their join and its encoding would all be in memory at once. Written in
        pieces of a few thousand series, only one piece's text is, and no family's whole
        text ever is.
        """
        compressor = zlib.compressobj(SNAPSHOT_GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE)
        chunks: list[bytes] = [GZIP_HEADER]
        crc = size = 0
        for collector in self._snapshot_collectors(views):
            for family in collector.collect():
                for text in write_family(family):
                    crc, size = zlib.crc32(text, crc), size + len(text)
                    chunks.append(compressor.compress(text))
        # A full flush, not a finish: no final block, so the live part's deflate follows.
        chunks.append(compressor.flush(zlib.Z_FULL_FLUSH))
        return _Part(b"".join(chunks), crc, size)

    def _store(self, key: _Key, variant: _Variant, data: _Part) -> None:
        with self._lock:
            if key != self._cache_key:
                # Newer snapshots only ever replace older ones: drop the old bytes at once.
                if self._cache_key is not None and _age(key) < _age(self._cache_key):
                    return
                self._cache_key, self._cache = key, {}
            self._cache[variant] = data
