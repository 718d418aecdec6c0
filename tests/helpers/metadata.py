"""A stand-in for the ECS metadata service: the session-token dance, then temporary keys."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.helpers.net import serve

# Secret-looking prefixes, so that the tests' scans for leaked secrets find any piece.
META_PREFIX_SK = "metask-SECRET-"
META_PREFIX_TOKEN = "metatoken-SECRET-"


@dataclass
class MetadataState:
    token_mode: str = "token"  # "token": PUT issues tokens; "404"/"405": PUT answers that
    key_status: int | None = None  # force this status on GET securitykey
    key_body: bytes | None = None  # force this body on GET securitykey
    drip: float | None = None  # when set, the keys' body goes out a byte per this many seconds
    expires_at: str = "2030-01-01T13:00:00.000000Z"
    tokens: set[str] = field(default_factory=set)
    issued: int = 0
    fetches: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # When set, the credentials each GET of the security key answers, in turn (the last one
    # again after that); when empty, numbered keys: TMPAK1 with meta_secret(1), and so on.
    credentials: list[dict[str, str]] = field(default_factory=list)

    def keys(self, path: str) -> list[str]:
        return [m for m, p, _ in self.requests if p == path]


def meta_secret(n: int) -> str:
    return f"{META_PREFIX_SK}{n}"


def meta_token(n: int) -> str:
    return f"{META_PREFIX_TOKEN}{n}"


class MetadataHandler(BaseHTTPRequestHandler):
    state: MetadataState

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        st = self.state
        with st.lock:
            st.requests.append(("PUT", self.path, dict(self.headers)))
            if self.path != "/meta-data/latest/api/token":
                self._send(404, b"not found", "text/plain")
                return
            if st.token_mode != "token":
                self._send(int(st.token_mode), b"", "text/plain")
                return
            if not self.headers.get("X-Metadata-Token-Ttl-Seconds", "").isdigit():
                self._send(400, b"ttl missing", "text/plain")
                return
            st.issued += 1
            token = f"mdtoken-{st.issued}"
            st.tokens.add(token)
        self._send(200, token.encode(), "text/plain")

    def do_GET(self) -> None:
        st = self.state
        with st.lock:
            st.requests.append(("GET", self.path, dict(self.headers)))
            if self.path != "/openstack/latest/securitykey":
                self._send(404, b"{}")
                return
            if st.token_mode == "token" and self.headers.get("X-Metadata-Token") not in st.tokens:
                self._send(401, b'{"message": "bad metadata token"}')
                return
            if st.key_status is not None or st.key_body is not None:
                self._send(st.key_status or 200, st.key_body or b"{}")
                return
            st.fetches += 1
            n = st.fetches
            if st.credentials:
                credential = st.credentials[min(n, len(st.credentials)) - 1]
            else:
                credential = {
                    "access": f"TMPAK{n}",
                    "secret": meta_secret(n),
                    "securitytoken": meta_token(n),
                    "expires_at": st.expires_at,
                }
            body = {"credential": credential}
        if st.drip is None:
            self._send(200, json.dumps(body).encode())
            return
        self._drip(json.dumps(body).encode(), st.drip)

    def _drip(self, body: bytes, interval: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass  # the client gave up: what the drip is for


@dataclass
class StandIn:
    url: str
    state: Any


def metadata_service(state: MetadataState | None = None) -> Iterator[StandIn]:
    """`yield from` it in a fixture: the service on loopback for the test's duration."""
    state = state or MetadataState()
    handler = type("Handler", (MetadataHandler,), {"state": state})
    for url in serve(handler):
        yield StandIn(url, state)
