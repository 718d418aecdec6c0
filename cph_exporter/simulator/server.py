"""A stand-in for the CPH API: a real HTTP server on loopback that checks signatures as the
gateway does, serves a fleet, and injects faults (latency, throttling, broken answers)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cph_exporter.cph.signing import SignatureError, verify_request
from cph_exporter.simulator.fleet import list_entry
from cph_exporter.simulator.watched import BadRequest, answer_watched, created_within

LIST_OPERATION = "ListCloudPhoneServers"
DETAIL_OPERATION = "GetCloudPhoneServerDetail"
PHONES_OPERATION = "ListCloudPhones"
# The calls beside servers and phones, by the last segment of their path.
WATCHED_OPERATIONS: Mapping[str, str] = {
    "scheduled-events": "ListScheduledEvents",
    "encode-servers": "ListEncodeServers",
    "phone-models": "ListCloudPhoneModels",
}
FAULT_KINDS = frozenset(
    {
        "not_found",
        "html_502",
        "html_503",
        "html_504",
        "garbage",
        "truncated",
        "json_error_200",
        "wrong_types",
        "reset",  # the connection is closed (RST) without any answer
    }
)
THROTTLE_MESSAGE = (
    "The throttling threshold has been reached: policy user over ratelimit,limit:200,time:5 minute"
)
_CONTROL_SERVER = re.compile(r"/_control/servers/(?P<server>[^/]+)")
_CONTROL_FAULTS = "/_control/faults"
_CONTROL_FAULT_KEYS = frozenset({"list_fault", "phone_list_fault", "latency", "throttle_every"})
_ROUTE = re.compile(r"/v1/(?P<project>[^/]+)/cloud-phone/servers(?:/(?P<server>[^/]+))?/?")
_PHONES_ROUTE = re.compile(r"/v1/(?P<project>[^/]+)/cloud-phone/phones/?")
_WATCHED_ROUTE = re.compile(
    r"/v1/(?P<project>[^/]+)/cloud-phone/(?P<what>scheduled-events|encode-servers|phone-models)/?"
)
_JSON = "application/json;charset=UTF-8"
_HTML_REASONS = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe<<not json>>"


class Faults:
    """Fault settings, changeable from any thread while the simulator runs.

    Assignments are validated and made under a lock; the server reads one consistent
    `snapshot()` per request. `broken_details` maps server_id -> fault kind and may also be
    mutated in place.

    For the list: `endless_list` makes every page full, with fresh server ids on each (whose
    details are served too); `repeat_on_pages` starts every page after the first with the
    last server of the previous one, as when a server is created while listing; `list_hook`
    is called with the offset after each page is built (to change the fleet between pages,
    or between the list and the details). `raw_details` maps server_id -> a body served
    as-is with 200, for what json.dumps cannot write (duplicate keys, say).
    """

    latency: float
    throttle_every: int
    retry_after: str | None
    broken_details: dict[str, str]
    list_fault: str | None
    max_rps: float
    endless_list: bool
    repeat_on_pages: bool
    list_hook: Callable[[int], None] | None
    raw_details: dict[str, bytes]
    phone_list_fault: str | None
    _lock: threading.Lock

    def __init__(
        self,
        latency: float = 0.0,
        throttle_every: int = 0,
        retry_after: str | None = None,
        broken_details: dict[str, str] | None = None,
        list_fault: str | None = None,
        max_rps: float = 0.0,
        endless_list: bool = False,
        repeat_on_pages: bool = False,
        list_hook: Callable[[int], None] | None = None,
        raw_details: dict[str, bytes] | None = None,
        phone_list_fault: str | None = None,
    ) -> None:
        object.__setattr__(self, "_lock", threading.Lock())
        self.latency = latency
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.broken_details = {} if broken_details is None else broken_details
        self.list_fault = list_fault
        # Like the gateway's per-user policy: calls beyond this many in any one second get
        # 429 APIGW.0308 (0: no limit).
        self.max_rps = max_rps
        self.endless_list = endless_list
        self.repeat_on_pages = repeat_on_pages
        self.list_hook = list_hook
        self.raw_details = {} if raw_details is None else raw_details
        self.phone_list_fault = phone_list_fault  # the list kinds, for ListCloudPhones

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("latency", "throttle_every", "max_rps") and value < 0:
            raise ValueError(f"{name} must be >= 0")
        if name in ("list_fault", "phone_list_fault") and value not in (None, *FAULT_KINDS):
            raise ValueError(f"unknown fault kind {value!r}")
        with self._lock:
            object.__setattr__(self, name, value)

    def snapshot(self) -> Faults:
        with self._lock:
            return Faults(
                self.latency,
                self.throttle_every,
                self.retry_after,
                dict(self.broken_details),
                self.list_fault,
                self.max_rps,
                self.endless_list,
                self.repeat_on_pages,
                self.list_hook,
                dict(self.raw_details),
                self.phone_list_fault,
            )

    def __repr__(self) -> str:
        return (
            f"Faults(latency={self.latency!r}, throttle_every={self.throttle_every!r}, "
            f"retry_after={self.retry_after!r}, broken_details={self.broken_details!r}, "
            f"list_fault={self.list_fault!r}, max_rps={self.max_rps!r}, "
            f"endless_list={self.endless_list!r}, repeat_on_pages={self.repeat_on_pages!r}, "
            f"list_hook={self.list_hook!r}, raw_details={self.raw_details!r}, "
            f"phone_list_fault={self.phone_list_fault!r})"
        )


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


_RESET = _Response(0, b"")  # no answer: the handler resets the connection
_ENDLESS_PREFIX = "endless-"


def _endless_server(fleet: _Fleet, position: int) -> dict[str, Any] | None:
    """The server at `position` of a list that never ends: the fleet again, with fresh ids."""
    if not fleet.newest_first or position < 0:
        return None
    name = f"{_ENDLESS_PREFIX}{position:010d}"
    return fleet.newest_first[position % len(fleet.newest_first)] | {
        "server_id": name,
        "server_name": name,
    }


@dataclass(frozen=True)
class _Fleet:
    newest_first: tuple[dict[str, Any], ...]
    by_id: Mapping[str, dict[str, Any]]

    @classmethod
    def of(cls, servers: list[dict[str, Any]]) -> _Fleet:
        by_id = {s["server_id"]: s for s in servers}
        if len(by_id) != len(servers):
            raise ValueError("server_id values must be unique")
        order = sorted(servers, key=lambda s: (s["create_time"], s["server_id"]), reverse=True)
        return cls(tuple(order), by_id)


def _request_id() -> str:
    return uuid.uuid4().hex


def _json(status: int, payload: Mapping[str, Any], *headers: tuple[str, str]) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers=headers)


def _error(status: int, code: str, message: str, *headers: tuple[str, str]) -> _Response:
    body = {"error_code": code, "error_msg": message, "request_id": _request_id()}
    return _json(status, body, *headers)


def _wrong_types_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """Status as a string, volume_size null, band_width_size a string; never a no-op."""
    volumes = [dict(v) for v in detail.get("volumes") or [{"volume_id": "wrong-types-volume"}]]
    bandwidths = [dict(b) for b in detail.get("band_widths") or [{"band_width_size": 300}]]
    for volume in volumes:
        volume["volume_size"] = None
    for bandwidth in bandwidths:
        bandwidth["band_width_size"] = str(bandwidth.get("band_width_size"))
    status = str(detail.get("status"))
    return detail | {"status": status, "volumes": volumes, "band_widths": bandwidths}


def _wrong_types_list(page: dict[str, Any]) -> dict[str, Any]:
    servers = [s | {"status": str(s.get("status"))} for s in page["servers"]]
    return page | {"servers": servers}


def _faulty(kind: str, payload: dict[str, Any] | None, not_found: _Response) -> _Response:
    """The answer for a fault `kind` in place of the normal `payload` (None: no such thing)."""
    if kind == "not_found" or (payload is None and kind == "wrong_types"):
        return not_found
    if kind in ("html_502", "html_503", "html_504"):
        code = int(kind[-3:])
        title = f"{code} {_HTML_REASONS[code]}"
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return _Response(code, page.encode(), "text/html")
    if kind == "garbage":
        return _Response(200, _GARBAGE)
    if kind == "truncated":
        body = json.dumps(payload or {"request_id": _request_id(), "count": 0}).encode()
        return _Response(200, body[: len(body) // 2])
    if kind == "json_error_200":
        return _error(200, "CPH.0100500", "System error, please try again later.")
    if kind == "reset":
        return _RESET
    return _error(500, "SIM.0500", f"simulator: unknown fault kind {kind!r}")


class CphSimulator:
    """Serves `servers` (detail dicts) under /v1/{project_id}/cloud-phone/servers.

    `credentials` (AK -> SK) is read on every request, so changing it rotates keys. `calls`
    counts every request routed to an operation, refused ones included.
    """

    def __init__(
        self,
        servers: list[dict[str, Any]],
        credentials: dict[str, str],
        project_id: str,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        phones: list[dict[str, Any]] | None = None,
        tls: ssl.SSLContext | None = None,
        control: bool = False,
        scheduled_events: list[dict[str, Any]] | None = None,
        encode_servers: list[dict[str, Any]] | None = None,
        phone_models: list[dict[str, Any]] | None = None,
    ) -> None:
        self.faults = Faults() if faults is None else faults
        # POST /_control/...: change the fleet and faults at run time, from loopback only.
        self.control = control
        self._tls = tls  # a server context: serve HTTPS, as the real endpoint does
        # Temporary keys: AK -> the security token the gateway demands with it (read live).
        self.security_tokens: dict[str, str] = {}
        self._phones = tuple(phones or ())  # newest first, as ListCloudPhones sorts them
        self._watched: dict[str, tuple[dict[str, Any], ...]] = {
            "ListScheduledEvents": tuple(scheduled_events or ()),
            "ListEncodeServers": tuple(encode_servers or ()),
            "ListCloudPhoneModels": tuple(phone_models or ()),
        }
        # Operation -> a fault kind (FAULT_KINDS, or "forbidden": 403 as from an IAM policy
        # without the action), for the calls beside servers and phones; read per request.
        self.operation_faults: dict[str, str] = {}
        self.project_id = project_id
        self._credentials = credentials
        self._address = (host, port)
        self._lock = threading.Lock()
        self._fleet = _Fleet.of(servers)
        self._calls: Counter[str] = Counter()
        self._detail_calls: Counter[str] = Counter()
        self._served = 0  # authenticated API calls, numbered for throttling
        self._recent: deque[float] = deque()  # arrival times of calls let through max_rps
        self._throttled = 0
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> str:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._httpd = _HttpServer(self._address, self)
        if self._tls is not None:
            self._httpd.socket = self._tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cph-simulator",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()  # kept-alive clients must see the API gone, too
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> CphSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        host, port = self._httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    # ---- fleet and accounting ----

    @property
    def server_count(self) -> int:
        with self._lock:
            return len(self._fleet.by_id)

    def set_servers(self, servers: list[dict[str, Any]]) -> None:
        fleet = _Fleet.of(servers)
        with self._lock:
            self._fleet = fleet

    def set_phones(self, phones: list[dict[str, Any]]) -> None:
        with self._lock:
            self._phones = tuple(phones)

    def set_scheduled_events(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._watched["ListScheduledEvents"] = tuple(events)

    def set_encode_servers(self, encode_servers: list[dict[str, Any]]) -> None:
        with self._lock:
            self._watched["ListEncodeServers"] = tuple(encode_servers)

    def set_phone_models(self, models: list[dict[str, Any]]) -> None:
        with self._lock:
            self._watched["ListCloudPhoneModels"] = tuple(models)

    def watched(self, operation: str) -> list[dict[str, Any]]:
        """What the call `operation` (ListScheduledEvents, ...) serves, as served."""
        with self._lock:
            return [dict(item) for item in self._watched[operation]]

    @property
    def calls(self) -> Counter[str]:
        with self._lock:
            return Counter(self._calls)

    @property
    def detail_calls(self) -> Counter[str]:
        with self._lock:
            return Counter(self._detail_calls)

    @property
    def throttled(self) -> int:
        """Calls answered 429, by throttle_every or by max_rps."""
        with self._lock:
            return self._throttled

    def reset_counters(self) -> None:
        with self._lock:
            self._calls.clear()
            self._detail_calls.clear()
            self._served = 0
            self._recent.clear()
            self._throttled = 0

    # ---- runtime control (off unless control=True) ----

    def set_server_status(self, server_id: str, status: int) -> dict[str, Any] | None:
        """Give one server a new status (and update_time); None if there is no such server."""
        with self._lock:
            fleet = self._fleet
            server = fleet.by_id.get(server_id)
            if server is None:
                return None
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            changed = server | {"status": status, "update_time": now}
            servers = [changed if s is server else s for s in fleet.newest_first]
            self._fleet = _Fleet.of(servers)
        return changed

    def _control_request(self, method: str, path: str, body: bytes, client: str) -> _Response:
        if not self.control:
            return _error(404, "APIGW.0101", "The API does not exist or has not been published")
        if not _loopback(client):
            return _error(403, "SIM.0403", "simulator control is for loopback clients only")
        if method != "POST":
            return _error(405, "SIM.0405", "use POST")
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "SIM.0400", "the body must be JSON")
        if not isinstance(payload, dict):
            return _error(400, "SIM.0400", "the body must be a JSON object")
        route = _CONTROL_SERVER.fullmatch(path)
        if route is not None:
            status = payload.get("status")
            if set(payload) != {"status"} or not isinstance(status, int):
                return _error(400, "SIM.0400", 'expected {"status": CODE}')
            changed = self.set_server_status(unquote(route["server"]), status)
            if changed is None:
                return _error(404, "SIM.0404", "no such server")
            return _json(200, {"server_id": changed["server_id"], "status": status})
        if path == _CONTROL_FAULTS:
            unknown = set(payload) - _CONTROL_FAULT_KEYS
            if unknown:
                return _error(400, "SIM.0400", f"unknown fault settings {sorted(unknown)}")
            try:
                for name, value in payload.items():
                    setattr(self.faults, name, value)
            except (TypeError, ValueError) as exc:
                return _error(400, "SIM.0400", str(exc))
            return _json(200, {name: getattr(self.faults, name) for name in _CONTROL_FAULT_KEYS})
        return _error(404, "SIM.0404", "no such control")

    # ---- request handling ----

    def _respond(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """The answer to one HTTP request; `target` is the raw path with query."""
        url = urlsplit(target)
        route = (
            _ROUTE.fullmatch(url.path)
            or _PHONES_ROUTE.fullmatch(url.path)
            or _WATCHED_ROUTE.fullmatch(url.path)
        )
        if route is None or method != "GET":
            return _error(404, "APIGW.0101", "The API does not exist or has not been published")
        phones = route.re is _PHONES_ROUTE
        watched = WATCHED_OPERATIONS[route["what"]] if route.re is _WATCHED_ROUTE else None
        server_id = None if phones or watched or not route["server"] else unquote(route["server"])
        operation = watched or (
            PHONES_OPERATION if phones else DETAIL_OPERATION if server_id else LIST_OPERATION
        )
        with self._lock:
            self._calls[operation] += 1
            if server_id:
                self._detail_calls[server_id] += 1
            fleet = self._fleet
        refused = self._refusal(method, target, headers, body, unquote(route["project"]))
        if refused is not None:
            return refused
        faults = self.faults.snapshot()
        retry = (("Retry-After", faults.retry_after),) if faults.retry_after else ()
        if faults.max_rps and self._over_rate(faults.max_rps):
            return _error(429, "APIGW.0308", THROTTLE_MESSAGE, *retry)  # at the gateway: fast
        if faults.latency:
            time.sleep(faults.latency)
        with self._lock:
            self._served += 1
            served = self._served
        if faults.throttle_every and served % faults.throttle_every == 0:
            with self._lock:
                self._throttled += 1
            return _error(429, "APIGW.0308", THROTTLE_MESSAGE, *retry)
        query = parse_qs(url.query, keep_blank_values=True)
        if watched is not None:
            return self._answer_watched(watched, query)
        if phones:
            return self._list_phones(query, faults)
        if server_id is None:
            return self._list(query, fleet, faults)
        return self._detail(server_id, fleet, faults)

    def _list_phones(self, query: dict[str, list[str]], faults: Faults) -> _Response:
        try:
            offset = _int_param(query, "offset", 0, low=0)
            limit = _int_param(query, "limit", 100, low=1, high=100)
            status = _int_param(query, "status", 0) if "status" in query else None
            phone_type = _int_param(query, "type", 0) if "type" in query else None
        except ValueError as exc:
            return _error(400, "CPH.0100400", f"Invalid parameter: {exc}")
        server_id = query.get("server_id", [None])[-1]
        name = query.get("phone_name", [None])[-1]  # a fuzzy match, as the API documents
        with self._lock:
            matching = [
                p
                for p in self._phones
                if server_id in (None, p["server_id"])
                and (status is None or p.get("status") == status)
                and (phone_type is None or p.get("type") == phone_type)
                and (name is None or name in str(p.get("phone_name", "")))
            ]
        page = {
            "request_id": _request_id(),
            "count": len(matching),
            "phones": matching[offset : offset + limit],
        }
        if faults.phone_list_fault is not None:
            not_found = _error(404, "APIGW.0101", "The API does not exist")
            return _faulty(faults.phone_list_fault, page, not_found)
        return _json(200, page)

    def _answer_watched(self, operation: str, query: dict[str, list[str]]) -> _Response:
        with self._lock:
            items = self._watched[operation]
            kind = self.operation_faults.get(operation)
        if kind == "forbidden":
            message = "The IAM or app authorization policy does not allow the request"
            return _error(403, "APIGW.0302", message)
        try:
            page = answer_watched(operation, query, items, _request_id())
        except BadRequest as exc:
            return _error(400, "CPH.0100400", f"Invalid parameter: {exc}")
        if kind is not None:
            return _faulty(kind, page, _error(404, "APIGW.0101", "The API does not exist"))
        return _json(200, page)

    def _over_rate(self, max_rps: float) -> bool:
        """True, and counted, when this call exceeds max_rps in the last second."""
        with self._lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= max_rps:
                self._throttled += 1
                return True
            self._recent.append(now)
            return False

    def _refusal(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, project: str
    ) -> _Response | None:
        try:
            verified = verify_request(method, target, headers, body, self._credentials.get)
        except SignatureError as exc:  # the reason only: never the secret or the signature
            return _error(401, "APIGW.0301", f"Incorrect IAM authentication information: {exc}")
        expected_token = self.security_tokens.get(verified.access_key)
        if expected_token is not None and verified.security_token != expected_token:
            reason = "the security token is missing or does not belong to the access key"
            return _error(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}")
        header_project = {k.lower(): v for k, v in headers.items()}.get("x-project-id")
        if header_project is not None and header_project != project:
            reason = "X-Project-Id does not match the project in the path"
            return _error(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}")
        if project != self.project_id:
            message = "The IAM or app authorization policy does not allow the request"
            return _error(403, "APIGW.0302", message)
        return None

    def _list(self, query: dict[str, list[str]], fleet: _Fleet, faults: Faults) -> _Response:
        try:
            offset = _int_param(query, "offset", 0, low=0)
            limit = _int_param(query, "limit", 100, low=1, high=100)
            status = _int_param(query, "status", 0) if "status" in query else None
            since = _int_param(query, "create_since", 0) if "create_since" in query else None
            until = _int_param(query, "create_until", 0) if "create_until" in query else None
        except ValueError as exc:
            return _error(400, "CPH.0100400", f"Invalid parameter: {exc}")
        server_id = query.get("server_id", [None])[-1]
        version = query.get("network_version", [None])[-1]
        name = query.get("server_name", [None])[-1]  # a fuzzy match, as the API documents
        phone_model = query.get("phone_model_name", [None])[-1]
        matching = [
            s
            for s in fleet.newest_first
            if (server_id is None or s["server_id"] == server_id)
            and (status is None or s.get("status") == status)
            and (version is None or s.get("network_version") == version)
            and (name is None or name in str(s.get("server_name", "")))
            and (phone_model is None or s.get("phone_model_name") == phone_model)
            and created_within(s, since, until)
        ]
        # Repeating: page k starts one server earlier than the one before it did.
        start = offset - offset // limit if faults.repeat_on_pages else offset
        chosen = matching[start : start + limit]
        count = len(matching)
        if faults.endless_list:
            endless = (_endless_server(fleet, offset + i) for i in range(limit))
            chosen = [s for s in endless if s is not None]
            count = offset + 2 * limit  # always more to come
        page = {
            "request_id": _request_id(),
            "count": count,
            "servers": [list_entry(s) for s in chosen],
        }
        if faults.list_hook is not None:
            faults.list_hook(offset)
        not_found = _error(404, "APIGW.0101", "The API does not exist or has not been published")
        if faults.list_fault == "wrong_types":
            return _json(200, _wrong_types_list(page))
        if faults.list_fault is not None:
            return _faulty(faults.list_fault, page, not_found)
        return _json(200, page)

    def _detail(self, server_id: str, fleet: _Fleet, faults: Faults) -> _Response:
        found = fleet.by_id.get(server_id)
        if found is None and faults.endless_list and server_id.startswith(_ENDLESS_PREFIX):
            found = _endless_server(fleet, _int_or(server_id[len(_ENDLESS_PREFIX) :], -1))
        raw = faults.raw_details.get(server_id)
        if raw is not None:
            return _Response(200, raw)
        detail = None if found is None else found | {"request_id": _request_id()}
        not_found = _error(404, "CPH.0100404", f"The cloud phone server {server_id} does not exist")
        kind = faults.broken_details.get(server_id)
        if kind == "wrong_types" and detail is not None:
            return _json(200, _wrong_types_detail(detail))
        if kind is not None:
            return _faulty(kind, detail, not_found)
        return not_found if detail is None else _json(200, detail)


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _int_param(
    query: dict[str, list[str]],
    name: str,
    default: int,
    low: int | None = None,
    high: int | None = None,
) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name][-1])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}")
    return value


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # Exporters open up to --cph.concurrency connections at once; the default backlog of 5
    # would drop connection attempts under a benchmark at 64 in flight.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: CphSimulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, stop()) are normal here; anything else is a bug to show.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoint and requests.Session use
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, adding ~40 ms to every call on loopback.
    disable_nagle_algorithm = True
    server_version = "cph-simulator"
    timeout = 60.0
    server: _HttpServer

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        headers = dict(self.headers.items())
        simulator = self.server.simulator
        if self.path.startswith("/_control/"):
            client = str(self.client_address[0])
            response = simulator._control_request(self.command, self.path, body, client)
        else:
            response = simulator._respond(self.command, self.path, headers, body)
        if response is _RESET:
            # Linger 0: closing sends RST at once, and the client sees a reset connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the exporter's own logs should not drown in access lines."""
