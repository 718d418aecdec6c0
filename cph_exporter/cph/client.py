"""The CPH API client: one pooled session, signed requests, pagination and bounded retries."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode, urlsplit

import requests

from cph_exporter.cph.errors import ApiError, document_error_fields
from cph_exporter.cph.ratelimit import RateLimiter
from cph_exporter.cph.request_metrics import ApiMetrics
from cph_exporter.cph.signing import AkSkAuth, canonical_uri
from cph_exporter.cph.transport import (
    DEFAULT_MAX_RESPONSE_SIZE,
    Answer,
    ExchangeError,
    Sender,
    configure_session,
    exchange,
)
from cph_exporter.credentials.providers import CredentialError
from cph_exporter.credentials.values import scrub

log = logging.getLogger(__name__)

LIST_SERVERS = "ListCloudPhoneServers"
GET_SERVER = "GetCloudPhoneServerDetail"
LIST_PHONES = "ListCloudPhones"
LIST_SCHEDULED_EVENTS = "ListScheduledEvents"
LIST_ENCODE_SERVERS = "ListEncodeServers"
LIST_PHONE_MODELS = "ListCloudPhoneModels"
PAGE_SIZE = 100  # the API's largest page
T = TypeVar("T")


class DeadlineError(ApiError):
    """No time is left for this request before its deadline: retrying cannot help."""

    @property
    def is_retryable(self) -> bool:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first one included
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    # Huawei advises waiting 2-5 s after APIGW.0308 when no Retry-After is given.
    throttle_backoff: float = 2.0
    max_retry_after: float = 30.0

    def delay(self, retry: int, error: ApiError, rng: random.Random) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        if error.is_throttled:
            return self.throttle_backoff * rng.uniform(1.0, 2.5)
        # Full jitter keeps many exporters from retrying in lock-step.
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2**retry))


@dataclass
class ServerList:
    entries: list[Mapping[str, Any]] = field(default_factory=list)
    truncated: bool = False  # the page cap stopped the listing


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now)  # a date passed means now
    # A negative or NaN delay is no valid header: the caller's own backoff applies, not 0 s.
    if seconds != seconds or seconds < 0:
        return None
    return seconds


class CphClient:
    def __init__(
        self,
        endpoint: str,
        project_id: str,
        auth: requests.auth.AuthBase,
        *,
        metrics: ApiMetrics | None = None,
        read_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        max_pages: int = 1000,
        pool_size: int = 16,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] | None = None,
        on_auth_failure: Callable[[], None] | None = None,
        verify: bool | str = True,
        limiter: RateLimiter | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        base = f"{endpoint.rstrip('/')}/v1/{quote(project_id, safe='')}/cloud-phone"
        # The URL as requests would send it (host lower-cased, IDNA), normalised once here.
        prepared = requests.PreparedRequest()
        prepared.prepare_url(base, None)
        self._base = (prepared.url or base).rstrip("/")
        parts = urlsplit(self._base)
        self._host = parts.netloc.rpartition("@")[2]
        self._base_path = parts.path
        self._origin = self._base[: len(self._base) - len(parts.path)]
        self._canonical_base = canonical_uri(parts.path)[:-1]  # without the closing "/"
        self._canonical_paths: dict[str, str] = {}  # the fixed paths' canonical forms
        self._metrics = metrics
        self._read_timeout = read_timeout
        self._max_response_size = max_response_size
        self._retry = retry or RetryPolicy()
        self._max_pages = max_pages
        self._closed = threading.Event()
        # Waits between retries end at close(): a refresh must not outlive the exporter.
        self._sleep = sleep or self._closed.wait
        self._on_auth_failure = on_auth_failure
        self._limiter = limiter  # every request, retries included, takes a token first
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self.session = configure_session(
            session or requests.Session(), self._base, verify, pool_size
        )
        self.session.auth = auth
        # The lean path: signed from a precomputed canonical form, sent through the adapter.
        self._signer = auth if isinstance(auth, AkSkAuth) else None
        self._sender = Sender(self.session, self._base)
        # What the answers must never echo: the signer knows the credentials it last used.
        self._secrets: Callable[[], tuple[str, ...]] = getattr(auth, "secrets", tuple)

    def close(self) -> None:
        self._closed.set()
        self.session.close()

    def list_servers(self, deadline: float | None = None) -> ServerList:
        """All servers, de-duplicated by server_id: pages drift while servers come and go."""
        return self._list_all(LIST_SERVERS, "/servers", "servers", "server_id", {}, deadline)

    def list_servers_as(
        self, convert: Callable[[Mapping[str, Any]], T], deadline: float | None = None
    ) -> tuple[list[T], bool]:
        """`list_servers`, each entry converted as its page arrives (the raw page is dropped
        then); with whether the page cap stopped the listing."""
        result = self._list_all(
            LIST_SERVERS, "/servers", "servers", "server_id", {}, deadline, convert
        )
        return cast(list[T], result.entries), result.truncated  # converted, every one

    def list_phones(
        self, deadline: float | None = None, server_id: str | None = None
    ) -> ServerList:
        """All cloud phones (of one server when given), de-duplicated by phone_id."""
        params = {"server_id": server_id} if server_id else {}
        return self._list_all(LIST_PHONES, "/phones", "phones", "phone_id", params, deadline)

    def _list_all(
        self,
        operation: str,
        path: str,
        key: str,
        id_field: str,
        params: Mapping[str, Any],
        deadline: float | None,
        convert: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> ServerList:
        result = ServerList()
        seen: set[str] = set()
        offset = 0
        for _ in range(self._max_pages):
            answer = self._get(
                operation, path, {**params, "offset": offset, "limit": PAGE_SIZE}, deadline
            )
            size = _add_unique(result, answer, operation, key, id_field, seen, convert)
            if size < PAGE_SIZE:
                return result
            offset += PAGE_SIZE
            # `count` is the total: a list of exactly k full pages needs no empty page k+1.
            count = answer.get("count")
            if type(count) is int and offset >= count and len(result.entries) >= count:
                return result
        return _cut_short(result, operation, f"stopped at the page cap of {self._max_pages} pages")

    def list_scheduled_events(
        self, deadline: float | None = None, server_id: str | None = None
    ) -> ServerList:
        """Every scheduled maintenance event (of one server when given), by event_id.

        Paged by marker: each answer's page_info.next_marker names the next page and is absent
        or empty on the last. A marker seen before ends the listing rather than loop forever.
        """
        params = {"server_id": server_id} if server_id else {}
        result = ServerList()
        seen: set[str] = set()
        markers: set[str] = set()
        marker = ""
        for _ in range(self._max_pages):
            query = {**params, "limit": PAGE_SIZE, **({"marker": marker} if marker else {})}
            answer = self._get(LIST_SCHEDULED_EVENTS, "/scheduled-events", query, deadline)
            _add_unique(result, answer, LIST_SCHEDULED_EVENTS, "scheduled_events", "event_id", seen)
            page_info = answer.get("page_info")
            next_marker = page_info.get("next_marker") if isinstance(page_info, Mapping) else None
            if not isinstance(next_marker, str) or not next_marker:
                return result
            if next_marker in markers or next_marker == marker:
                why = "named a page marker it had named before"
                return _cut_short(result, LIST_SCHEDULED_EVENTS, why)
            markers.add(next_marker)
            marker = next_marker
        cap = f"stopped at the page cap of {self._max_pages} pages"
        return _cut_short(result, LIST_SCHEDULED_EVENTS, cap)

    def list_encode_servers(
        self, deadline: float | None = None, server_id: str | None = None
    ) -> ServerList:
        """Every encode server (of one server when given), de-duplicated by encode_server_id."""
        params = {"server_id": server_id} if server_id else {}
        return self._list_all(
            LIST_ENCODE_SERVERS,
            "/encode-servers",
            "encode_servers",
            "encode_server_id",
            params,
            deadline,
        )

    def list_phone_models(self, deadline: float | None = None) -> ServerList:
        """Every cloud phone model (flavour), de-duplicated by phone_model_name."""
        return self._list_all(
            LIST_PHONE_MODELS, "/phone-models", "phone_models", "phone_model_name", {}, deadline
        )

    def get_server(self, server_id: str, deadline: float | None = None) -> Mapping[str, Any]:
        return self._get(GET_SERVER, "/servers/" + quote(server_id, safe=""), None, deadline)

    def _get(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any] | None,
        deadline: float | None,
    ) -> Mapping[str, Any]:
        retry = 0
        reread_credentials = False
        while True:
            try:
                return self._get_once(operation, path, params, deadline)
            except ApiError as error:
                if error.is_auth_failure and self._on_auth_failure and not reread_credentials:
                    # Rotated keys: re-read the sources and try once more before giving up.
                    self._on_auth_failure()
                    reread_credentials = True
                    continue
                if not error.is_retryable or retry + 1 >= self._retry.attempts:
                    raise
                with self._rng_lock:
                    wait = self._retry.delay(retry, error, self._rng)
                # A retry that cannot finish before the deadline is not worth starting.
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise
                log.debug("retrying %s in %.2fs after: %s", operation, wait, error)
                self._sleep(wait)
                if self._closed.is_set():
                    raise ApiError(operation, "client closed while waiting to retry") from None
                retry += 1

    def _get_once(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any] | None,
        deadline: float | None,
    ) -> Mapping[str, Any]:
        permit = None
        if self._limiter is not None:
            permit = self._limiter.acquire(deadline)
            if permit is None:
                raise DeadlineError(operation, "rate limit: no request slot before the deadline")
        read_timeout = self._read_timeout
        if deadline is not None:
            read_timeout = min(read_timeout, deadline - time.monotonic())
            if read_timeout <= 0:
                raise DeadlineError(operation, "no time left before the deadline")
        started = time.monotonic()
        try:
            answer = self._exchange(path, params, read_timeout)
        except ExchangeError as exc:
            self._observe(operation, str(exc.status) if exc.status else "error", started)
            # Scrubbed: a Location or a cause may carry what the answer chose to put there.
            why = scrub(str(exc), self._secrets())
            if exc.deadline and deadline is not None and time.monotonic() >= deadline:
                raise DeadlineError(operation, f"{why} (the refresh deadline)") from None
            raise ApiError(operation, why, status=exc.status) from None
        except CredentialError as exc:  # raised while signing: no request was sent
            raise ApiError(operation, f"no credentials: {exc}") from None
        self._observe(operation, str(answer.status), started)
        try:
            # Parsed once, for the records and for the error fields alike. The stdlib parser,
            # not response.json(): that prefers simplejson when installed, which refuses NaN,
            # and one NaN in a list page must not cost the whole page. Deep nesting is
            # RecursionError, not ValueError.
            document: object = json.loads(answer.body)
        except (ValueError, RecursionError):
            document = None
        secrets = self._secrets()
        code, msg, request_id = document_error_fields(document, secrets)
        if permit is not None and self._limiter is not None:
            if answer.status == 429 or code == "APIGW.0308":
                self._limiter.throttled(permit)
            else:
                self._limiter.succeeded(permit)
        if answer.status != 200 or code:
            request_id = request_id or scrub(answer.headers.get("X-Request-Id", ""), secrets)[:100]
        if answer.status != 200:
            raise ApiError(
                operation,
                f"HTTP {answer.status}",
                status=answer.status,
                error_code=code,
                error_msg=msg,
                request_id=request_id,
                retry_after=parse_retry_after(answer.headers.get("Retry-After"), time.time()),
            )
        if document is None:
            raise ApiError(operation, "HTTP 200 with a body that is not JSON", status=200)
        if not isinstance(document, dict):
            raise ApiError(operation, "HTTP 200 with JSON that is not an object", status=200)
        if code:  # an error body behind a 200
            raise ApiError(
                operation,
                "HTTP 200 with an error body",
                status=200,
                error_code=code,
                error_msg=msg,
                request_id=request_id,
            )
        return document

    def _exchange(self, path: str, params: Mapping[str, Any] | None, timeout: float) -> Answer:
        if self._signer is None:  # another signer: requests prepares and signs the request
            return exchange(
                self.session,
                self._base + path,
                params=params,
                timeout=timeout,
                max_bytes=self._max_response_size,
            )
        query = [(key, str(value)) for key, value in params.items()] if params else []
        canonical = self._canonical_paths.get(path)
        if canonical is None:
            canonical = self._canonical_base + canonical_uri(path)
            if params is not None:  # a listing's fixed path, not one per server
                self._canonical_paths[path] = canonical
        target = self._base_path + path + ("?" + urlencode(query) if query else "")
        headers = self._signer.sign_get(self._host, canonical, query)
        return self._sender.get(
            self._origin + target,
            target,
            headers,
            timeout=timeout,
            max_bytes=self._max_response_size,
        )

    def _observe(self, operation: str, code: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.observe(operation, code, time.monotonic() - started)


def _cut_short(result: ServerList, operation: str, why: str) -> ServerList:
    """The listing as far as it went, marked as possibly incomplete, with one warning."""
    log.warning("%s %s; entries may be missing", operation, why)
    result.truncated = True
    return result


def _add_unique(
    result: ServerList,
    answer: Mapping[str, Any],
    operation: str,
    key: str,
    id_field: str,
    seen: set[str],
    convert: Callable[[Mapping[str, Any]], Any] | None = None,
) -> int:
    """The page's entries under `key` not seen before, appended to `result` (converted as
    they are read, so no page of raw JSON is kept); the page's size."""
    page = answer.get(key)
    if page is None:
        return 0
    if not isinstance(page, list):
        raise ApiError(operation, f"answer has no list of {key}", status=200)
    for entry in page:
        if not isinstance(entry, Mapping):
            continue
        entry_id = entry.get(id_field)
        if isinstance(entry_id, str):
            if entry_id in seen:
                continue
            seen.add(entry_id)
        result.entries.append(entry if convert is None else convert(entry))
    return len(page)
