"""Temporary AK/SK of the ECS agency, from the metadata service (with its token dance)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import urlsplit

import requests

from cph_exporter.credentials.providers import CredentialError, CredentialsNotFound
from cph_exporter.credentials.values import Credentials

log = logging.getLogger(__name__)

METADATA_URL = "http://169.254.169.254"
METADATA_TOKEN_PATH = "/meta-data/latest/api/token"
METADATA_SECURITYKEY_PATH = "/openstack/latest/securitykey"
METADATA_TOKEN_HEADER = "X-Metadata-Token"
METADATA_TOKEN_TTL_HEADER = "X-Metadata-Token-Ttl-Seconds"
# What the metadata service says when no agency is attached to the server.
_NO_AGENCY_TEXT = "Please configure Cloud Service Agency first"
# Formats of `expires_at` seen from Huawei Cloud: the SDK parses the first; IAM also answers
# without fractional seconds.
_EXPIRES_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")
# Link-local and loopback addresses must never go through HTTP(S)_PROXY from the environment:
# a None entry overrides the environment's proxy (requests drops None values after merging),
# which types-requests does not model, hence the cast.
_NO_PROXY = cast("dict[str, str]", {"http": None, "https": None})
# An answer is a token or a small JSON document: anything longer is not the metadata service.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Answer:
    status_code: int
    headers: Mapping[str, str]
    text: str


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_expires_at(text: str) -> datetime:
    """`expires_at` as an aware UTC datetime; raises ValueError for anything else."""
    for fmt in _EXPIRES_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    # Last resort: an ISO 8601 time with an explicit offset.
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("expires_at has no time zone")
    return parsed.astimezone(timezone.utc)


def _status(resp: _Answer) -> str:
    """HTTP status for an error; a redirect (never followed) names where it pointed."""
    if 300 <= resp.status_code < 400:
        where = urlsplit(resp.headers.get("Location", "")).hostname or "(no Location)"
        return f"HTTP {resp.status_code} (a redirect to {where}, not followed)"
    return f"HTTP {resp.status_code}"


def _first_str(mapping: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class MetadataCredentials:
    """Temporary AK/SK and security token of the ECS agency, from the metadata service.

    Cached until `refresh_margin` before `expires_at` (at most half the lifetime, so short-lived
    keys are not fetched on every call). If a refresh fails while the cached keys are still
    valid, those keep being used and the refresh is retried after `retry_interval`.
    """

    def __init__(
        self,
        base_url: str = METADATA_URL,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_margin: timedelta = timedelta(minutes=5),
        timeout: float = 3.0,
        answer_timeout: float = 10.0,
        token_ttl: timedelta = timedelta(hours=6),
        retry_interval: timedelta = timedelta(seconds=30),
    ) -> None:
        self._base = base_url.rstrip("/")
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies or .netrc for a link-local address
        self._session = session
        self._clock = clock
        self._margin = refresh_margin
        self._timeout = timeout  # each socket operation
        self._answer_timeout = answer_timeout  # a whole exchange, in wall-clock time
        self._token_ttl = token_ttl
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._cached: Credentials | None = None
        self._expires_at = datetime.min.replace(tzinfo=timezone.utc)
        self._refresh_at = self._expires_at
        self._token: str | None = None
        self._token_expires_at = self._expires_at

    def describe(self) -> str:
        return "ECS metadata service"

    @property
    def expires_at(self) -> datetime | None:
        """When the cached keys expire, or None when nothing is cached."""
        return self._expires_at if self._cached is not None else None

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None
            self._token = None

    def get(self) -> Credentials:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._refresh_at:
                return self._cached
            try:
                creds, expires_at = self._fetch()
            except CredentialError as exc:
                if self._cached is not None and now < self._expires_at:
                    log.warning(
                        "refreshing credentials from %s failed, using the current ones until "
                        "%s: %s",
                        self.describe(),
                        self._expires_at.isoformat(),
                        exc,
                    )
                    self._refresh_at = min(now + self._retry_interval, self._expires_at)
                    return self._cached
                raise
            lifetime = expires_at - now
            self._cached = creds
            self._expires_at = expires_at
            self._refresh_at = expires_at - min(self._margin, lifetime / 2)
            log.debug(
                "temporary credentials from %s expire at %s",
                self.describe(),
                expires_at.isoformat(),
            )
            return creds

    def _request(self, method: str, path: str, headers: dict[str, str]) -> _Answer:
        url = self._base + path
        deadline = time.monotonic() + self._answer_timeout
        try:
            with self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxies=_NO_PROXY,
                stream=True,
            ) as resp:
                body = self._read(resp, f"{method} {url}", deadline)
        except requests.RequestException as exc:
            # Not on an ECS (or no route to the service): nothing here, not a broken source.
            raise CredentialsNotFound(
                f"{self.describe()}: {method} {url} failed ({type(exc).__name__})"
            ) from None
        return _Answer(resp.status_code, resp.headers, body.decode("utf-8", "replace"))

    def _read(self, resp: requests.Response, what: str, deadline: float) -> bytes:
        """The decoded body, at most MAX_ANSWER_BYTES and within the exchange's deadline.

        Read a byte at a time (from the socket's buffer, a few kB per system call), so that
        an answer dripping a byte at a time is stopped at its deadline, not held by it.
        """
        body = bytearray()
        for piece in resp.iter_content(chunk_size=1):
            body += piece
            if len(body) > MAX_ANSWER_BYTES:
                raise CredentialError(
                    f"{self.describe()}: {what} answered more than {MAX_ANSWER_BYTES} bytes"
                )
            if time.monotonic() > deadline:
                raise CredentialError(
                    f"{self.describe()}: {what} took longer than {self._answer_timeout:g} s"
                )
        return bytes(body)

    def _metadata_token(self, force: bool = False) -> str | None:
        """A session token for the metadata service, or None where it wants none."""
        now = self._clock()
        if not force and self._token is not None and now < self._token_expires_at:
            return self._token
        self._token = None
        resp = self._request(
            "PUT",
            METADATA_TOKEN_PATH,
            {METADATA_TOKEN_TTL_HEADER: str(int(self._token_ttl.total_seconds()))},
        )
        if resp.status_code in (404, 405):
            return None  # an older metadata service: no token dance
        if resp.status_code != 200 or not resp.text.strip():
            raise CredentialError(
                f"{self.describe()}: PUT {METADATA_TOKEN_PATH} answered {_status(resp)}"
            )
        self._token = resp.text.strip()
        # Renew a minute early so that a token never expires between PUT and GET.
        self._token_expires_at = now + self._token_ttl - timedelta(minutes=1)
        return self._token

    def _get_securitykey(self, token: str | None) -> _Answer:
        headers = {METADATA_TOKEN_HEADER: token} if token else {}
        return self._request("GET", METADATA_SECURITYKEY_PATH, headers)

    def _fetch(self) -> tuple[Credentials, datetime]:
        token = self._metadata_token()
        resp = self._get_securitykey(token)
        if resp.status_code == 401 and _NO_AGENCY_TEXT not in resp.text:
            # The session token may have expired on the service's side: get a new one, once.
            resp = self._get_securitykey(self._metadata_token(force=True))
        where = f"{self.describe()}: GET {METADATA_SECURITYKEY_PATH}"
        if resp.status_code != 200:
            hint = " (no agency is attached to this server)" if _NO_AGENCY_TEXT in resp.text else ""
            raise CredentialError(f"{where} answered {_status(resp)}{hint}")
        try:
            document = json.loads(resp.text)
        except ValueError:
            raise CredentialError(f"{where} answered something that is not JSON") from None
        if not isinstance(document, dict):
            raise CredentialError(f"{where} answered JSON that is not an object")
        inner = document.get("credential", document.get("credentials"))
        if not isinstance(inner, dict):
            raise CredentialError(f"{where} answered no 'credential' object")
        access = _first_str(inner, "access", "accessKeyId", "access_key_id")
        secret = _first_str(inner, "secret", "secretAccessKey", "secret_access_key")
        token_value = _first_str(inner, "securitytoken", "securityToken", "security_token")
        expires_text = _first_str(inner, "expires_at", "expiration")
        missing = [
            name
            for name, value in (
                ("access", access),
                ("secret", secret),
                ("securitytoken", token_value),
                ("expires_at", expires_text),
            )
            if value is None
        ]
        if missing or access is None or secret is None or expires_text is None:
            raise CredentialError(f"{where} answered a credential without {', '.join(missing)}")
        try:
            expires_at = parse_expires_at(expires_text)
        except ValueError:
            raise CredentialError(f"{where} answered an unreadable expires_at") from None
        if expires_at <= self._clock():
            raise CredentialError(
                f"{where} answered credentials that expired at {expires_at.isoformat()} "
                "(is the local clock right?)"
            )
        return Credentials(access, secret, token_value), expires_at
