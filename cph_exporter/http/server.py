"""The HTTP side: /metrics within the scrape deadline, a landing page, health and readiness."""

from __future__ import annotations

import html
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from cph_exporter.http.base_server import WebConfigHTTPServer, WebConfigRequestHandler
from cph_exporter.http.exposition import Exposition, accepts_gzip
from cph_exporter.http.reload import ReloadingWebConfig
from cph_exporter.refresh.targets import TargetSet

log = logging.getLogger(__name__)

# Answer this much before Prometheus's own timeout runs out: network and rendering take time.
_DEADLINE_SHARE = 0.9
_DEADLINE_MARGIN = 0.25
_MIN_WAIT = 0.1
_PROBES = ("/-/healthy", "/-/ready")
# The most a scrape may ask to wait, whatever its header says (Prometheus allows no scrape
# timeout above its scrape interval, and intervals beyond two minutes are rare).
MAX_SCRAPE_TIMEOUT = 120.0


def scrape_budget(header: str | None, default: float) -> float:
    """Seconds a scrape may wait for a refresh, from X-Prometheus-Scrape-Timeout-Seconds.

    Capped at MAX_SCRAPE_TIMEOUT; a value that is not a positive number means the default.
    """
    timeout = default
    if header:
        try:
            value = float(header)
        except ValueError:
            value = math.nan
        if 0 < value < math.inf:  # False for NaN
            timeout = min(value, MAX_SCRAPE_TIMEOUT)
    return max(_MIN_WAIT, min(timeout, MAX_SCRAPE_TIMEOUT) * _DEADLINE_SHARE - _DEADLINE_MARGIN)


class ExporterHandlerContext:
    """What the request handler needs, injected once; handlers are created per request."""

    def __init__(
        self,
        targets: TargetSet,
        exposition: Exposition,
        telemetry_path: str,
        default_scrape_timeout: float,
        max_in_flight: int,
        max_waiting: int | None = None,
        version: str = "",
    ) -> None:
        self.targets = targets
        self.version = version  # shown on the landing page
        self.exposition = exposition
        self.telemetry_path = telemetry_path
        self.default_scrape_timeout = default_scrape_timeout
        # Held while a scrape renders and answers: beyond it, a quick 503.
        self.scrape_slots = threading.BoundedSemaphore(max_in_flight)
        # Held while a scrape waits for a refresh. Waiting scrapes share one refresh; one
        # that finds every waiting place taken is answered from the last data at once, so
        # clients asking for long timeouts can neither starve the others nor every thread.
        self.waiting_places = threading.BoundedSemaphore(max_waiting or max_in_flight)


class ExporterHandler(WebConfigRequestHandler):
    """Basic auth and the configured response headers come from the web config."""

    server_version = "cph-exporter"
    protocol_version = "HTTP/1.1"
    # Headers and body parts go out as separate writes: without this, Nagle's algorithm
    # and the client's delayed ACK can hold the last small part back for tens of ms.
    disable_nagle_algorithm = True
    context: ExporterHandlerContext  # set on a subclass by make_server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        # Probes reveal nothing and must work for kubelets and HEALTHCHECKs without a password.
        if path not in _PROBES and not self.authorized():  # has answered 401 itself
            return
        if path == self.context.telemetry_path:
            self._metrics()
        elif path == "/":
            self._landing()
        elif path == "/-/healthy":
            self._send(200, b"Healthy\n", "text/plain; charset=utf-8")
        elif path == "/-/ready":
            if self.context.targets.ready:
                self._send(200, b"Ready\n", "text/plain; charset=utf-8")
            else:
                self._send(
                    503, b"Not ready: no refresh has completed yet\n", "text/plain; charset=utf-8"
                )
        else:
            self._send(404, b"Not found\n", "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        context = self.context
        budget = scrape_budget(
            self.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            context.default_scrape_timeout,
        )
        deadline = time.monotonic() + budget
        if context.waiting_places.acquire(blocking=False):
            try:
                views = context.targets.views(timeout=budget)
            finally:
                context.waiting_places.release()
        else:
            views = context.targets.views(timeout=0)  # the last data, now
        if not context.scrape_slots.acquire(blocking=False):
            self._send(503, b"Too many concurrent scrapes\n", "text/plain; charset=utf-8")
            return
        try:
            body = context.exposition.body(
                views,
                self.headers.get("Accept"),
                gzip_ok=accepts_gzip(self.headers.get("Accept-Encoding")),
                timeout=max(_MIN_WAIT, deadline - time.monotonic()),
            )
        finally:
            context.scrape_slots.release()
        headers = {}
        if body.content_encoding is not None:
            headers["Content-Encoding"] = body.content_encoding
        self._send(200, body.parts, body.content_type, headers, length=body.length)

    def _landing(self) -> None:
        path = html.escape(self.context.telemetry_path)
        page = (
            "<!DOCTYPE html><html><head><title>CPH Exporter</title></head><body>"
            "<h1>CPH Exporter</h1><p>Prometheus exporter for Huawei Cloud Cloud Phone Host.</p>"
            f"<p>Version {html.escape(self.context.version)}</p>"
            f'<ul><li><a href="{path}">Metrics</a></li>'
            '<li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li>'
            "</ul></body></html>\n"
        )
        self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")

    def _send(
        self,
        code: int,
        body: bytes | Iterable[bytes],
        content_type: str,
        headers: dict[str, str] | None = None,
        length: int | None = None,  # of `body`'s parts, when they are made while sent
    ) -> None:
        parts = (body,) if isinstance(body, bytes) else body  # sent in turn: no joined copy
        if length is None:
            parts = tuple(parts)
            length = sum(len(part) for part in parts)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for part in parts:
                self.wfile.write(part)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ExporterHTTPServer(WebConfigHTTPServer):
    allow_reuse_address = True


class ExporterHTTPServer6(ExporterHTTPServer):
    address_family = socket.AF_INET6


def make_server(
    host: str,
    port: int,
    context: ExporterHandlerContext,
    web_config: ReloadingWebConfig | None = None,
    *,
    handler_threads: int | None = None,
    read_timeout: float | None = None,
) -> ExporterHTTPServer:
    handler = type("BoundExporterHandler", (ExporterHandler,), {"context": context})
    server_class = ExporterHTTPServer6 if ":" in host else ExporterHTTPServer
    return server_class(
        (host, port),
        handler,
        web_config,
        handler_threads=handler_threads,
        read_timeout=read_timeout,
    )
