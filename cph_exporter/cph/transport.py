"""One bounded HTTP exchange with the CPH or IAM API: no redirects, a wall-clock deadline on the
whole exchange (connect, head and every read of the body), and a cap on the decoded body.

requests' `timeout` bounds each socket operation, not the exchange: an answer dripping one
byte a second never times out. Every socket of an exchange is therefore registered with a
watch (`cph/deadlines.py`) that shuts them down when the deadline passes. Bodies are read
raw and decompressed here, with a bound on each step's output, so that neither a huge nor a
highly compressed answer can grow the process.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.response import BaseHTTPResponse

from cph_exporter.cph.deadlines import WATCHED_POOLS, Watch, watching

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


Headers = Mapping[str, str] | http.client.HTTPMessage  # urllib3's or http.client's, any case


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


class BoundedAdapter(HTTPAdapter):
    """requests' adapter with connections whose sockets the exchange's watch can end."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = WATCHED_POOLS
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


class Sender:
    """One session's way to its API, prepared once: its adapter's pool for the API's host (TLS
    and proxy as the adapter chose them) and the session's headers. `session.get` would merge
    settings, walk the environment, find proxy and pool, fill a cookie jar and dispatch
    hooks on every call; none of that changes between the calls of one client."""

    def __init__(self, session: requests.Session, base_url: str) -> None:
        self._session = session
        self._base_url = base_url
        self._headers = {k: str(v) for k, v in session.headers.items()}
        self._pool: HTTPConnectionPool | None = None
        self._absolute = False  # a plain HTTP proxy wants the whole URL in the request line
        self._lock = threading.Lock()

    def _connection_pool(self) -> HTTPConnectionPool:
        with self._lock:
            if self._pool is None:
                session = self._session
                adapter = session.get_adapter(self._base_url)
                assert isinstance(adapter, HTTPAdapter)
                probe = requests.PreparedRequest()
                probe.prepare(method="GET", url=self._base_url)
                verify, cert, proxies = session.verify, session.cert, dict(session.proxies)
                pool = adapter.get_connection_with_tls_context(probe, verify, proxies, cert)
                # What adapter.send does to the pool before every request; once is enough.
                adapter.cert_verify(pool, self._base_url, verify, cert)  # type: ignore[no-untyped-call]
                self._absolute = "://" in adapter.request_url(probe, proxies)
                assert isinstance(pool, HTTPConnectionPool)
                self._pool = pool
            return self._pool

    def get(
        self, url: str, path: str, headers: Mapping[str, str], *, timeout: float, max_bytes: int
    ) -> Answer:
        """GET `url` (already quoted; `path` is its path and query) with these headers besides
        the session's; bounded as `exchange` is."""
        pool = self._pool or self._connection_pool()
        merged = {**self._headers, **headers}
        if pool.proxy is None:
            return _direct(pool, url, path, merged, timeout, max_bytes)

        def send(connect: float) -> BaseHTTPResponse:
            return pool.urlopen(
                "GET",
                url if self._absolute else path,
                headers=merged,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=False,
                timeout=urllib3.Timeout(connect=connect, read=timeout),
            )

        return _bounded(url, timeout, max_bytes, send)


def _direct(
    pool: HTTPConnectionPool,
    url: str,
    path: str,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
) -> Answer:
    """One GET on a connection of `pool` (no proxy between) written and read with http.client,
    as urllib3 does below urlopen, whose layers cost as much CPU as the rest of the exchange;
    the pool still opens (TLS as the adapter set it), checks and reuses the connections."""
    conn: Any = None
    complete = False
    with _watched(timeout) as watch:
        try:
            try:
                conn = pool._get_conn()  # a dropped kept-alive connection is closed there
                connect = min(CONNECT_TIMEOUT, timeout)
                response = _request(conn, path, headers, connect, timeout, watch)
            except (http.client.HTTPException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _failed(url, exc, timeout, watch) from None
            if 300 <= (status := response.status) < 400:
                raise _redirect(status, response.msg.get("Location", ""))

            def read(size: int) -> bytes:
                chunk = response.read(size)
                if not chunk and response.length:  # closed before Content-Length said
                    raise http.client.IncompleteRead(b"", response.length)
                return chunk

            body = _read_body(status, response.msg, read, max_bytes, watch, url, timeout)
            complete = True
            return Answer(status, response.msg, body)
        finally:
            if conn is not None:
                if not complete:
                    conn.close()  # an answer cut short: its connection is not reused
                pool._put_conn(conn)  # read to its end, kept alive; closed, it reconnects


def _request(
    conn: Any, path: str, headers: Mapping[str, str], connect: float, read: float, watch: Watch
) -> http.client.HTTPResponse:
    if conn.sock is None:
        conn.timeout = connect
        conn.connect()  # its socket joins the watch as it is made, before any TLS handshake
    else:
        watch.attach(conn.sock)  # a kept-alive connection, reused
    if conn.sock.gettimeout() != read:
        conn.sock.settimeout(read)
    # As urllib3 writes it. http.client's putheader refuses what would split the head.
    names = {name.lower() for name in headers}
    base = http.client.HTTPConnection
    skip = {"skip_host": "host" in names, "skip_accept_encoding": "accept-encoding" in names}
    base.putrequest(conn, "GET", path, **skip)
    for name, value in headers.items():
        base.putheader(conn, name, value)
    base.endheaders(conn)
    return base.getresponse(conn)


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

    def send(connect: float) -> BaseHTTPResponse:
        response = session.get(
            url,
            params=params,
            auth=auth,
            stream=True,
            allow_redirects=False,
            timeout=(connect, timeout),
        )
        raw: BaseHTTPResponse = response.raw
        return raw

    return _bounded(url, timeout, max_bytes, send)


def _bounded(
    url: str, timeout: float, max_bytes: int, send: Callable[[float], BaseHTTPResponse]
) -> Answer:
    with _watched(timeout) as watch:
        try:
            response = send(min(CONNECT_TIMEOUT, timeout))
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _failed(url, exc, timeout, watch) from None
        complete = False
        try:
            if 300 <= response.status < 400:
                raise _redirect(response.status, response.headers.get("Location", ""))

            read = functools.partial(response.read, decode_content=False)
            status = response.status
            body = _read_body(status, response.headers, read, max_bytes, watch, url, timeout)
            complete = True
            return Answer(response.status, response.headers, body)
        finally:
            if complete:
                response.release_conn()  # read to its end: the connection is kept alive
            else:
                response.close()  # an answer cut short: its connection is not reused


@contextlib.contextmanager
def _watched(timeout: float) -> Iterator[Watch]:
    """The exchange's deadline, `timeout` from now: every socket it makes or reuses meanwhile
    joins the watch, which shuts them down when the deadline passes."""
    if timeout <= 0:
        raise ExchangeError("no time left before the deadline", deadline=True)
    watch = Watch(time.monotonic() + timeout)
    watching(watch)
    try:
        yield watch
    finally:
        watching(None)
        watch.finish()


def _failed(url: str, exc: BaseException, timeout: float, watch: Watch) -> ExchangeError:
    why = describe(exc, timeout, watch.expired)
    return ExchangeError(f"request to {_host_port(url)} failed: {why}", deadline=watch.expired)


def _redirect(status: int, location: str) -> ExchangeError:
    where = urlsplit(location).hostname or "(no Location)"
    why = "(the API does not redirect; nothing was sent there)"
    return ExchangeError(f"HTTP {status} redirect to {where} refused {why}", status=status)


def _read_body(
    status: int,
    headers: Headers,
    read: Callable[[int], bytes],
    max_bytes: int,
    watch: Watch,
    url: str,
    timeout: float,
) -> bytes:
    """The body, `read` a raw piece at a time (at most the size asked for, empty at its end)."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    known = None
    if encoding in ("", "identity"):
        length = headers.get("Content-Length", "")
        if length.isdigit():
            known = int(length)
            if known > max_bytes:
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
        if known is not None:
            # Its length known and within the cap: read whole, in one call and without a
            # copy, unless it comes short (then on, piece by piece, to the cap as below).
            body = read(known or 1)  # even an empty body is read: that ends the answer
            if len(body) == known and not watch.expired:
                return body
            buffer += body
            size = len(body)
        while not watch.expired:
            chunk = read(_CHUNK)
            if not chunk:
                break
            pieces = [chunk] if decoder is None else decoder.feed(chunk, max_bytes - size + 1)
            for piece in pieces:
                size += len(piece)
                if size > max_bytes:
                    raise _too_large(status, max_bytes, "")
                buffer += piece
    except (http.client.HTTPException, urllib3.exceptions.HTTPError, OSError, zlib.error) as exc:
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
        # urllib3 wraps http.client's errors in ProtocolError; the direct path meets them bare.
        if isinstance(
            cause, urllib3.exceptions.ProtocolError | http.client.HTTPException | ConnectionError
        ):
            return "connection closed without a complete answer"
    return type(exc).__name__
