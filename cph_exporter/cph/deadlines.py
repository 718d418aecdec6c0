"""Deadlines on whole exchanges: every socket of an exchange is shut down once its deadline
has passed, which wakes any read blocked on it; one daemon watchdog thread fires them.

The connection classes register their sockets with the exchange of the thread that opens or
reuses them, so that the connect, the TLS handshake and every read are bounded alike.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watch:
    """The sockets of one exchange, shut down once its deadline has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.done:
                self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, which close() would not


_COMPACT_AT = 1024  # heap entries before the finished ones are dropped


class _Watchdog:
    """One daemon thread firing the watches whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._compact_at = _COMPACT_AT

    def add(self, watch: Watch) -> None:
        with self._cond:
            heap = self._heap
            if len(heap) >= self._compact_at:
                # Finished watches stay until the watchdog reaches their deadline; drop them
                # here now and then, so that the heap holds about the exchanges under way.
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
                self._compact_at = max(_COMPACT_AT, 2 * len(heap))
            heapq.heappush(heap, (watch.deadline, next(self._seq), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cph-deadline", daemon=True)
                self._thread.start()
            # The watchdog sleeps until the earliest deadline: only a new earliest one needs
            # it awake. Waking it for every exchange would cost a thread switch per call.
            if heap[0][2] is watch:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                watch = heapq.heappop(self._heap)[2]
                watch.fire()


_WATCHDOG = _Watchdog()
_current = threading.local()


def watching(watch: Watch | None) -> None:
    """Make `watch` this thread's exchange (None: no exchange); its deadline starts to count."""
    _current.watch = watch
    if watch is not None:
        _WATCHDOG.add(watch)


def _attach(sock: socket.socket | None) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


class WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)  # before the TLS handshake: a dripping handshake is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection, reused
        super().request(*args, **kwargs)


class WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)
        super().request(*args, **kwargs)


class WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


WATCHED_POOLS = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}
