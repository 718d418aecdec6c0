"""Turns API calls into snapshots: TTL-cached, single-flight, stale-while-revalidate.

Data flows one way: client -> refresher -> snapshot -> collector. A scrape asks for the
snapshot; within the TTL it gets the cached one without any API call. When the cache is cold
or expired, one refresh runs in the background and every concurrent scrape waits on that same
refresh (single flight) for as long as its own deadline allows, then falls back to the last
snapshot. Details are fetched again only for servers that are new or whose update_time
changed, or whose cached details have outlived `detail_max_age`.

Records are built as the answers arrive, on the detail threads, and each raw answer is dropped
at once: a refresh never holds the whole fleet's JSON. With a detail store (`--cache.dir`),
the first refresh after a start serves the stored details whose update_time the list
confirms, and the snapshot's data age says how old they are until they are fetched again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cachetools import TLRUCache, TTLCache

from cph_exporter.cph.client import CphClient, DeadlineError
from cph_exporter.cph.errors import ApiError
from cph_exporter.cph.models import (
    ParseError,
    Phone,
    Server,
    ServerDetails,
    parse_details,
    parse_phone,
    parse_server,
)
from cph_exporter.cph.request_metrics import ApiMetrics
from cph_exporter.refresh.detail_store import DetailStore, StoredDetails
from cph_exporter.refresh.executor import DaemonExecutor
from cph_exporter.refresh.listings import WatchedListings
from cph_exporter.refresh.shard import WHOLE, Shard
from cph_exporter.refresh.snapshot import EMPTY, NOT_WATCHED, ServerRecord, Snapshot

log = logging.getLogger(__name__)

_KEY = "snapshot"
# Bounds memory even if server ids churn faster than the pruning below sees them go.
_MAX_CACHED_DETAILS = 200_000


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one detail call gave, built on the detail thread as the answer arrived."""

    server: Server | None  # only when the details also describe the server (static mode)
    details: ServerDetails | None  # None: unusable details (already logged and counted)


class Refresher:
    def __init__(
        self,
        client: CphClient,
        *,
        ttl: float,
        max_stale: float,
        detail_max_age: float,
        refresh_timeout: float,
        concurrency: int,
        metrics: ApiMetrics,
        server_ids: tuple[str, ...] = (),
        shard: Shard = WHOLE,
        server_filter: Callable[[Server], bool] | None = None,
        phones: bool = False,
        phones_ttl: float = 60.0,
        watched: WatchedListings | None = None,
        on_refresh: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cache_timer: Callable[[], float] | None = None,
        store: DetailStore | None = None,
    ) -> None:
        self._client = client
        self._shard = shard
        self._server_filter = server_filter
        self._on_refresh = on_refresh
        self._server_ids = tuple(s for s in server_ids if shard.owns(s))
        self._max_stale = max_stale
        self._detail_max_age = detail_max_age
        self._refresh_timeout = refresh_timeout
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        # What the TTLs count with; tests move it forward instead of sleeping.
        timer = cache_timer or monotonic
        self._fresh: TTLCache[str, Snapshot] = TTLCache(maxsize=1, ttl=ttl, timer=timer)
        # Details expire `detail_max_age` after they were fetched, stored ones included.
        self._details: TLRUCache[str, StoredDetails] = TLRUCache(
            maxsize=_MAX_CACHED_DETAILS,
            ttu=lambda _key, value, now: (
                now + detail_max_age - max(0.0, clock() - value.fetched_at)
            ),
            timer=timer,
        )
        self._store = store
        self._store_loaded = store is None or bool(server_ids)  # the list is what it needs
        self._from_store: dict[str, float] = {}  # served from the store: when it was fetched
        # Phones have their own TTL: a server refresh lists them again only once it expired.
        self._phones_enabled = phones
        self._phones: TTLCache[str, tuple[Phone, ...]] = TTLCache(
            maxsize=1, ttl=phones_ttl, timer=timer
        )
        self._watched = watched  # scheduled events, encode servers, phone models
        self._current = EMPTY
        self._generation = 0
        self._lock = threading.Lock()
        self._inflight: concurrent.futures.Future[Snapshot] | None = None
        # Daemon threads: a refresh stuck on a dripping API must not keep a stopped process.
        self._runner = DaemonExecutor(1, thread_name_prefix="cph-refresh")
        self._concurrency = concurrency
        self._fetchers = DaemonExecutor(concurrency, thread_name_prefix="cph-detail")
        self._closing = threading.Event()

    @property
    def refreshing(self) -> bool:
        """A refresh is under way now."""
        with self._lock:
            return self._inflight is not None

    @property
    def ready(self) -> bool:
        return self._current.completed_at is not None

    def current(self) -> Snapshot:
        """The latest snapshot, without waiting and without starting a refresh."""
        return self._within_staleness(self._current)

    def snapshot(self, timeout: float | None = None) -> Snapshot:
        """The freshest snapshot obtainable within `timeout` seconds."""
        with self._lock:
            fresh = self._fresh.get(_KEY)
            if fresh is not None:
                return self._within_staleness(fresh)
            if self._inflight is None:
                self._inflight = self._runner.submit(self._refresh)
            inflight = self._inflight
        try:
            return self._within_staleness(inflight.result(timeout))
        except concurrent.futures.TimeoutError:
            # The refresh goes on in the background; its result lands in the cache.
            return self._within_staleness(self._current)

    def close(self) -> None:
        # A refresh cut short by the shutdown is expected: its failures are not warnings.
        self._closing.set()
        self._runner.shutdown(wait=False, cancel_futures=True)
        self._fetchers.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()  # waits for a write under way; later ones are not made

    def _warn(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self._closing.is_set() else logging.WARNING, message, *args)

    def _within_staleness(self, snapshot: Snapshot) -> Snapshot:
        """Past the maximum staleness, old per-server data is dropped rather than shown as true."""
        if not snapshot.servers or snapshot.data_at is None:
            return snapshot
        if self._clock() - snapshot.data_at <= self._max_stale:
            return snapshot
        return dataclasses.replace(snapshot, servers=(), up=False)

    def _refresh(self) -> Snapshot:
        started = self._monotonic()
        deadline = started + self._refresh_timeout
        previous = self._current
        try:
            if self._server_ids:
                records, error = self._fetch_static(deadline)
            else:
                records, error = self._fetch_listed(deadline)
        except Exception as exc:  # a bug must not stop refreshing for good
            if self._closing.is_set():  # the pools were shut down under the refresh
                log.debug("refresh cut short by the shutdown: %r", exc)
            else:
                log.exception("refresh failed unexpectedly")
            records, error = None, f"internal error: {type(exc).__name__}"
        phones, phones_up = self._refresh_phones(previous, deadline)
        watched = (
            NOT_WATCHED
            if self._watched is None
            else self._watched.refresh(previous.watched, deadline, self._warn)
        )
        now = self._clock()
        self._generation += 1
        if records is None:
            if previous.data_at is None:
                self._warn("refresh failed, and no data was ever fetched to serve: %s", error)
            else:
                self._warn("refresh failed, serving the last data: %s", error)
            snapshot = dataclasses.replace(
                previous,
                up=False,
                completed_at=now,
                refresh_duration=self._monotonic() - started,
                error=error,
                generation=self._generation,
                phones=phones,
                phones_up=phones_up,
                watched=watched,
            )
        else:
            # Stored details not fetched again since the start: the data is as old as they are.
            data_at = min(now, *self._from_store.values()) if self._from_store else now
            snapshot = Snapshot(
                servers=records,
                up=True,
                completed_at=now,
                refresh_duration=self._monotonic() - started,
                last_success_at=now,
                data_at=data_at,
                error=error,
                generation=self._generation,
                phones=phones,
                phones_up=phones_up,
                watched=watched,
            )
        with self._lock:
            self._current = snapshot
            self._fresh[_KEY] = snapshot
            self._inflight = None
        if self._on_refresh is not None:
            try:
                self._on_refresh()  # before the waiting scrapes resume: they find it done
            except Exception:  # rendering ahead is an optimisation; a scrape renders anyway
                log.exception("work after the refresh failed")
        return snapshot

    def _fetch_listed(self, deadline: float) -> tuple[tuple[ServerRecord, ...] | None, str]:
        if not self._store_loaded:
            self._load_store()
        try:
            listed, truncated = self._client.list_servers_as(self._listed_server, deadline)
        except ApiError as exc:
            return None, str(exc)
        servers: dict[str, Server] = {}
        for server in listed:
            # The list is read whole (cph_up speaks for the project) but only this
            # replica's servers get details and series.
            if (
                server is not None
                and self._shard.owns(server.server_id)
                and (self._server_filter is None or self._server_filter(server))
            ):
                servers[server.server_id] = server
        del listed
        for gone in set(self._details.keys()) - servers.keys():
            self._details.pop(gone, None)
        for gone in self._from_store.keys() - servers.keys():
            del self._from_store[gone]
        stale = [s for s in servers.values() if self._cached_details(s) is None]
        fetched = self._fetch_details([s.server_id for s in stale], deadline, with_server=False)
        records = []
        new: dict[str, StoredDetails] = {}
        for server_id, server in sorted(servers.items()):
            answer = fetched.get(server_id)
            if isinstance(answer, _Fetched) and answer.details is not None:
                details: ServerDetails | None = answer.details
                new[server_id] = self._remember(server, answer.details)
            else:  # the cache only for those not fetched: a cold refresh looks nothing up
                details = self._cached_details(server)
            records.append(ServerRecord(server, details))
        if self._store is not None:
            self._store.save(new, servers.keys())
        return tuple(records), "listing truncated at the page cap" if truncated else ""

    def _listed_server(self, entry: Mapping[str, object]) -> Server | None:
        try:
            return parse_server(entry)
        except ParseError as exc:
            log.warning("skipping a listed server: %s", exc)
            return None

    def _load_store(self) -> None:
        """The stored details, once, on the first refresh: those not yet past their age."""
        self._store_loaded = True
        assert self._store is not None
        now = self._clock()
        # Older than the staleness bound, they would drop every server from the snapshot.
        oldest = min(self._detail_max_age, self._max_stale)
        for server_id, stored in self._store.load().items():
            if 0 <= now - stored.fetched_at < oldest:
                self._details[server_id] = stored
                self._from_store[server_id] = stored.fetched_at

    def _fetch_static(self, deadline: float) -> tuple[tuple[ServerRecord, ...] | None, str]:
        """--cph.server-id mode: no list permission, every watched server fetched directly."""
        fetched = self._fetch_details(list(self._server_ids), deadline, with_server=True)
        records: dict[str, ServerRecord] = {}
        errors: list[ApiError] = []
        for server_id in self._server_ids:
            answer = fetched.get(server_id)
            if isinstance(answer, ApiError):
                errors.append(answer)
                continue
            if answer is None or answer.server is None:
                continue
            server = answer.server
            if answer.details is not None:
                self._remember(server, answer.details)
            records[server.server_id] = ServerRecord(server, answer.details)
        # Up unless every call failed for a reason other than the server being gone.
        if errors and not records and not all(e.is_not_found for e in errors):
            return None, str(errors[0])
        return tuple(r for _, r in sorted(records.items())), ""

    def _refresh_phones(
        self, previous: Snapshot, deadline: float
    ) -> tuple[tuple[Phone, ...] | None, bool]:
        """The phones, listed again once their TTL has run out; the last ones if that fails."""
        if not self._phones_enabled:
            return None, False
        cached = self._phones.get(_KEY)
        if cached is not None:
            return cached, True
        try:
            if self._server_ids:  # least privilege: only the watched servers' phones
                entries = [
                    entry
                    for server_id in self._server_ids
                    for entry in self._client.list_phones(deadline, server_id=server_id).entries
                ]
            else:
                entries = self._client.list_phones(deadline).entries
        except ApiError as exc:
            if previous.phones is None:
                self._warn("phones unavailable, and none were ever listed: %s", exc)
            else:
                self._warn("phones unavailable, serving the last ones: %s", exc)
            return previous.phones, False
        phones: dict[str, Phone] = {}
        for entry in entries:
            try:
                phone = parse_phone(entry)
            except ParseError as exc:
                log.warning("skipping a listed phone: %s", exc)
                continue
            phones[phone.phone_id] = phone
        listed = tuple(phone for _, phone in sorted(phones.items()))
        self._phones[_KEY] = listed
        return listed, True

    def _fetch_details(
        self, server_ids: list[str], deadline: float, with_server: bool
    ) -> dict[str, _Fetched | ApiError]:
        # A few long-running workers drain one shared deque rather than one future per call:
        # a future, its condition and the waiter that as_completed hangs on it cost about a
        # tenth of each call's CPU, and waking this thread for every answer costs more.
        todo = collections.deque(server_ids)
        results: dict[str, _Fetched | ApiError] = {}
        workers = [
            self._fetchers.submit(self._fetch_many, todo, results, deadline, with_server)
            for _ in range(min(self._concurrency, len(server_ids)))
        ]
        concurrent.futures.wait(workers)
        for worker in workers:
            worker.result()  # a bug in one of them, or cancelled by the shutdown
        if todo:  # the workers stopped early: the shutdown
            raise concurrent.futures.CancelledError("the refresh was cut short by the shutdown")
        out_of_time = 0
        for server_id in server_ids:
            exc = results.get(server_id)
            if not isinstance(exc, ApiError):
                continue
            self._metrics.detail_failures.inc()
            if isinstance(exc, DeadlineError):
                out_of_time += 1  # one line for all of them, not thousands
                log.debug("server %s: details unavailable: %s", server_id, exc)
            else:
                self._warn("server %s: details unavailable: %s", server_id, exc)
        if out_of_time:
            self._warn(
                "%d detail calls not made: the refresh deadline came first (rate limit or a slow "
                "API); the next refresh fetches them",
                out_of_time,
            )
        return results

    def _fetch_many(
        self,
        todo: collections.deque[str],
        results: dict[str, _Fetched | ApiError],
        deadline: float,
        with_server: bool,
    ) -> None:
        """One worker: detail calls for the servers it takes from `todo` (a deque's popleft
        and a dict's store are atomic), until none is left or the exporter shuts down."""
        while not self._closing.is_set():
            try:
                server_id = todo.popleft()
            except IndexError:
                return
            try:
                results[server_id] = self._fetch_one(server_id, deadline, with_server)
            except ApiError as exc:
                results[server_id] = exc

    def _fetch_one(self, server_id: str, deadline: float, with_server: bool) -> _Fetched:
        """One detail call, its answer turned into records here; the raw JSON goes at once."""
        answer = self._client.get_server(server_id, deadline)
        server = None
        if with_server:
            try:
                server = parse_server(answer)
            except ParseError as exc:
                log.warning("server %s: unusable details: %s", server_id, exc)
                return _Fetched(None, None)
        try:
            details = parse_details(answer)
        except ParseError as exc:
            self._metrics.detail_failures.inc()
            log.warning("server %s: unusable details: %s", server_id, exc)
            return _Fetched(server, None)
        return _Fetched(server, details)

    def _cached_details(self, server: Server) -> ServerDetails | None:
        cached = self._details.get(server.server_id)
        if cached is None or cached.update_time != server.update_time:
            return None
        return cached.details

    def _remember(self, server: Server, details: ServerDetails) -> StoredDetails:
        remembered = StoredDetails(server.update_time, self._clock(), details)
        self._details[server.server_id] = remembered
        self._from_store.pop(server.server_id, None)
        return remembered
