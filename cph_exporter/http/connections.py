"""Connections: a bounded pool of handler threads, a deep listen backlog, a quick 503 beyond.

One thread per connection lets any client that opens connections fast enough spend the
process's memory on threads and buffers. Here a fixed number of threads serve connections
taken from a bounded queue; the accept loop never blocks, so the kernel's listen queue keeps
draining. A connection that finds the queue full is answered ``503`` by one rejecting thread
(which reads at most one request head, briefly) and closed; if even that thread is behind,
the connection is closed at once. Threads are daemons and are never joined: a handler stuck
writing to a client that stopped reading must not hold up the exit.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from http.server import HTTPServer
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_HANDLER_THREADS = 64
LISTEN_BACKLOG = 128  # like Go's listener, which uses the kernel's somaxconn (4096 today)
# How long the rejecting thread spends on one connection beyond the pool: head and 503.
REJECT_TIMEOUT = 1.0
_REJECT_HEAD_LIMIT = 64 * 1024
_REJECTION = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 29\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
    b"Too many connections at once\n"
)

_Item = tuple[Any, Any] | None


class PooledHTTPServer(HTTPServer):
    """An HTTPServer whose connections are served by `handler_threads` threads.

    Up to `request_queue_size` accepted connections wait for a thread; the same number is
    the listen backlog. Set `handler_threads` (and `read_timeout`, used by the handlers)
    before the server is built, on a subclass or through the constructor.
    """

    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True
    handler_threads = DEFAULT_HANDLER_THREADS
    read_timeout = 30.0
    handshake_timeout = 10.0

    def __init__(
        self,
        server_address: tuple[str, int],
        handler_class: Any,
        bind_and_activate: bool = True,
        *,
        handler_threads: int | None = None,
        read_timeout: float | None = None,
    ) -> None:
        if handler_threads is not None:
            self.handler_threads = handler_threads
        if read_timeout is not None:
            self.read_timeout = read_timeout
        self._pending: queue.Queue[_Item] = queue.Queue(self.request_queue_size)
        self._rejects: queue.Queue[_Item] = queue.Queue(self.request_queue_size)
        self._threads: list[threading.Thread] = []
        super().__init__(server_address, handler_class, bind_and_activate)
        for number in range(self.handler_threads):
            self._spawn(self._serve_pending, f"cph-http-{number}")
        self._spawn(self._serve_rejects, "cph-http-reject")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def busy(self) -> bool:
        """Connections are waiting for a thread: idle keep-alive connections should go."""
        return not self._pending.empty()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self._pending.put_nowait((request, client_address))
        except queue.Full:
            try:
                self._rejects.put_nowait((request, client_address))
            except queue.Full:
                log.debug("closing a connection from %s: too many at once", client_address)
                self.shutdown_request(request)

    def _serve_pending(self) -> None:
        while (item := self._pending.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def _serve_rejects(self) -> None:
        while (item := self._rejects.get()) is not None:
            request, client_address = item
            try:
                reject(request, self.handshake_timeout)
            except (OSError, ValueError) as e:
                log.debug("rejecting a connection from %s: %s", client_address, e)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        for queued in (self._pending, self._rejects):
            while True:  # connections nobody will serve now: close them
                try:
                    item = queued.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self.shutdown_request(item[0])
        for _ in self._threads:  # wake the idle threads; busy ones end with their connection
            for queued in (self._pending, self._rejects):
                with contextlib.suppress(queue.Full):
                    queued.put_nowait(None)


def reject(sock: socket.socket, handshake_timeout: float) -> None:
    """Answer 503 to a connection beyond the pool, spending at most a few seconds on it."""
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(min(handshake_timeout, REJECT_TIMEOUT))
        sock.do_handshake()
    deadline = time.monotonic() + REJECT_TIMEOUT
    tail, total = b"", 0  # only the last bytes are kept: enough to see the blank line
    while total <= _REJECT_HEAD_LIMIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(16384)
        except TimeoutError:
            break
        window = tail + chunk
        if not chunk or b"\r\n\r\n" in window or b"\n\n" in window:
            break
        tail, total = window[-3:], total + len(chunk)
    sock.settimeout(REJECT_TIMEOUT)
    sock.sendall(_REJECTION)
