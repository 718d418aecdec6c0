"""The HTTP server base: TLS per the current web config, basic auth, configured headers."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any

from cph_exporter.http.connections import PooledHTTPServer
from cph_exporter.http.reload import ReloadingWebConfig
from cph_exporter.http.request_head import BoundedRequestHandler
from cph_exporter.http.web_config import WebConfig

log = logging.getLogger(__name__)


def _snapshot(config: WebConfig | ReloadingWebConfig | None) -> WebConfig | None:
    return config.current() if isinstance(config, ReloadingWebConfig) else config


def response_headers(config: WebConfig | ReloadingWebConfig | None) -> dict[str, str]:
    """The headers the config adds to every response."""
    snapshot = _snapshot(config)
    return dict(snapshot.headers) if snapshot else {}


def enforce(handler: BaseHTTPRequestHandler, config: WebConfig | ReloadingWebConfig | None) -> bool:
    """True when the request may go on; else answer 401 with ``WWW-Authenticate: Basic``."""
    snapshot = _snapshot(config)
    if snapshot is None or snapshot.check_basic_auth(handler.headers.get("Authorization")):
        return True
    body = b"Unauthorized\n"
    handler.send_response(401)
    handler.send_header("WWW-Authenticate", "Basic")
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    if not isinstance(handler, WebConfigRequestHandler):  # that one adds them itself
        for name, value in snapshot.headers.items():
            handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
    return False


class WebConfigHTTPServer(PooledHTTPServer):
    """A pooled HTTP server that serves TLS per the current web config.

    Each accepted socket is wrapped with the context current at accept time, so a rotated
    certificate reaches the next connection. The handshake runs in the connection's thread
    with a timeout, so a client that connects and stays silent holds up nobody else; failed
    handshakes and vanished clients are logged at debug level, without a traceback. After
    the handshake the request head must arrive within `read_timeout` (`request_head.py`).
    """

    def __init__(
        self,
        server_address: tuple[str, int],
        handler_class: type[BaseHTTPRequestHandler],
        web_config: ReloadingWebConfig | None,
        bind_and_activate: bool = True,
        *,
        handler_threads: int | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self.web_config = web_config
        super().__init__(
            server_address,
            handler_class,
            bind_and_activate,
            handler_threads=handler_threads,
            read_timeout=read_timeout,
        )

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        context = self.web_config.ssl_context() if self.web_config else None
        if context is None:
            return sock, address
        try:
            return context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            ), address
        except (OSError, ValueError) as e:
            sock.close()
            raise OSError(f"cannot wrap the connection: {e}") from None  # serve_forever skips it

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            previous = request.gettimeout()
            try:
                request.settimeout(self.handshake_timeout)
                request.do_handshake()
                request.settimeout(previous)
            except (OSError, ValueError) as e:
                log.debug("TLS handshake with %s failed: %s", _host(client_address), e)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # reset, timeout, TLS alert: the client's doing
            log.debug("connection from %s ended: %s", _host(client_address), error)
            return
        log.error("error while serving %s", _host(client_address), exc_info=True)


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class WebConfigRequestHandler(BoundedRequestHandler):
    """A handler base that adds the configured headers to every response it sends.

    Call ``self.authorized()`` first in each ``do_*`` method and return when it is False.
    A header the handler sets itself wins over the configured one.
    """

    _sent_headers: set[str]

    def web_config(self) -> ReloadingWebConfig | None:
        return self.server.web_config if isinstance(self.server, WebConfigHTTPServer) else None

    def authorized(self) -> bool:
        return enforce(self, self.web_config())

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self._sent_headers = set()
        super().send_response_only(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if not hasattr(self, "_sent_headers"):
            self._sent_headers = set()
        self._sent_headers.add(keyword.lower())
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        sent: set[str] = getattr(self, "_sent_headers", set())
        for name, value in response_headers(self.web_config()).items():
            if name.lower() not in sent:
                super().send_header(name, value)
        super().end_headers()
