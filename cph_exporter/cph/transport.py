"""One bounded HTTP exchange with the CPH or IAM API: no redirects, a wall-clock deadline on the
whole exchange (connect, head and every read of the body), and a cap on the decoded body.

requests' `timeout` bounds each socket operation, not the exchange: an answer dripping one
byte a second never times out. Every socket of an exchange is therefore registered with a
watch, and one watchdog thread shuts the sockets of an exchange down when its deadline
passes, which ends any read blocked on them. Bodies are read raw and decompressed here, with
a bound on each step's output, so that neither a huge nor a highly compressed answer can grow
the process.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

USER_AGENT = "cph-exporter"
CONNECT_TIMEOUT = 3.05
DEFAULT_MAX_RESPONSE_SIZE = 8 * 1024 * 1024
_CHUNK = 64 * 1024
# Only what this module can decode with a bound: no br or zstd, even when installed.
_ACCEPT_ENCODING = "gzip, deflate"


class ExchangeError(Exception):
    """An exchange that failed; the message says why in words, never with a secret."""

    def __init__(self, message: str, status: int | None = None, deadline: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.deadline = deadline  # the exchange's deadline passed


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


# ---------------------------------------------------------------------------------------------
# Deadlines: every socket of an exchange is shut down once its deadline has passed


class _Watch:
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


class _Watchdog:
    """One daemon thread firing the watches whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (watch.deadline, next(self._seq), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cph-deadline", daemon=True)
                self._thread.start()
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


def _attach(sock: socket.socket | None) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)  # before the TLS handshake: a dripping handshake is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection, reused
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """requests' adapter with connections whose sockets the exchange's watch can end."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


def configure_session(
    session: requests.Session, base_url: str, verify: bool | str, pool_size: int = 16
) -> requests.Session:
    """The session every API call uses: TLS settings, proxies read once, no retries below."""
    session.verify = verify
    if verify is False:
        # Said once, loudly, at start (by the caller); not once per request.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    # requests re-reads proxy and CA settings from the environment on every request, a walk
    # over os.environ costing a fifth of each call's CPU: read them once, here.
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    if verify is True:
        env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = env_ca or True
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = _ACCEPT_ENCODING
    adapter = BoundedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# ---------------------------------------------------------------------------------------------
# The exchange


def exchange(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    params: Mapping[str, Any] | None = None,
    auth: requests.auth.AuthBase | None = None,
) -> Answer:
    """GET `url` within `timeout` seconds of wall-clock time, redirects refused, the decoded
    body at most `max_bytes`. Raises ExchangeError; CredentialError from signing passes."""
    if timeout <= 0:
        raise ExchangeError("no time left before the deadline", deadline=True)
    watch = _Watch(time.monotonic() + timeout)
    _current.watch = watch
    _WATCHDOG.add(watch)
    try:
        try:
            response = session.get(
                url,
                params=params,
                auth=auth,
                stream=True,
                allow_redirects=False,
                timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            )
        except requests.RequestException as exc:
            raise ExchangeError(
                f"request to {_host_port(url)} failed: {describe(exc, timeout, watch.expired)}",
                deadline=watch.expired,
            ) from None
        try:
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                where = urlsplit(location).hostname or "(no Location)"
                raise ExchangeError(
                    f"HTTP {response.status_code} redirect to {where} refused "
                    "(the API does not redirect; nothing was sent there)",
                    status=response.status_code,
                )
            body = _read_body(response, max_bytes, watch, url, timeout)
            return Answer(response.status_code, response.headers, body)
        finally:
            response.close()
    finally:
        _current.watch = None
        watch.finish()


def _read_body(
    response: requests.Response, max_bytes: int, watch: _Watch, url: str, timeout: float
) -> bytes:
    status = response.status_code
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise _too_large(status, max_bytes, f" (Content-Length {length})")
        decoder = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        decoder = _Inflater()
    else:
        raise ExchangeError(f"HTTP {status} with unsupported Content-Encoding", status=status)
    # One growing buffer, not a list joined at the end: the peak stays near the answer's size.
    buffer = bytearray()
    size = 0
    try:
        for chunk in _raw_chunks(response):
            if watch.expired:
                break
            pieces = [chunk] if decoder is None else decoder.feed(chunk, max_bytes - size + 1)
            for piece in pieces:
                size += len(piece)
                if size > max_bytes:
                    raise _too_large(status, max_bytes, "")
                buffer += piece
    except (urllib3.exceptions.HTTPError, OSError, zlib.error) as exc:
        if not watch.expired:
            raise ExchangeError(
                f"HTTP {status}, reading the answer from {_host_port(url)} failed: "
                f"{describe(exc, timeout, False)}",
                status=None,
            ) from None
    if watch.expired:
        raise ExchangeError(
            f"HTTP {status}, answer from {_host_port(url)} not complete: "
            f"timed out after {_seconds(timeout)}",
            deadline=True,
        )
    return bytes(buffer)


def _raw_chunks(response: requests.Response) -> Iterator[bytes]:
    while True:
        chunk = response.raw.read(_CHUNK, decode_content=False)
        if not chunk:
            return
        yield chunk


class _Inflater:
    """gzip (several members too) or zlib deflate, never more than asked for at once."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 32)  # 32: detect gzip or zlib

    def feed(self, data: bytes, room: int) -> Iterator[bytes]:
        """The inflated data, in pieces of at most one block, until `room` bytes are out."""
        while data and room > 0:
            piece = self._d.decompress(data, min(room, _CHUNK))
            room -= len(piece)
            if self._d.eof:
                data = self._d.unused_data
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 32)
            else:
                data = self._d.unconsumed_tail
            yield piece


def _too_large(status: int, max_bytes: int, detail: str) -> ExchangeError:
    return ExchangeError(
        f"HTTP {status} answer larger than --cph.max-response-size of {_size(max_bytes)}"
        f"{detail}; abandoned",
        status=status,
    )


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _seconds(value: float) -> str:
    return f"{round(value, 1):g}s"


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)


def describe(exc: BaseException, timeout: float, expired: bool) -> str:
    """The cause of a failed request in words, from requests', urllib3's and the OS's errors."""
    if expired:
        return f"timed out after {_seconds(timeout)}"
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or "certificate verify failed"
            return f"TLS: certificate verify failed ({reason})"
    for cause in causes:
        if isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror):
            return "name not resolved"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    # After those: urllib3's NewConnectionError is a ConnectTimeoutError, whatever the cause.
    for cause in causes:
        if isinstance(cause, requests.Timeout | urllib3.exceptions.TimeoutError | socket.timeout):
            return f"timed out after {_seconds(timeout)}"
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or 'handshake failed'}"
        if isinstance(cause, urllib3.exceptions.ProtocolError | ConnectionError):
            return "connection closed without a complete answer"
    return type(exc).__name__
