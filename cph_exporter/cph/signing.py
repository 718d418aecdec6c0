"""AK/SK request signing (algorithm SDK-HMAC-SHA256) as Huawei Cloud's API gateway checks it.

The same canonical form serves both sides: `AkSkAuth` signs the exporter's requests and
`verify_request` lets the embedded simulator check them the way the gateway does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests

from cph_exporter.credentials.values import Credentials

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# The gateway rejects requests whose X-Sdk-Date is further off than this.
MAX_CLOCK_SKEW = timedelta(minutes=15)
# Headers we sign; others (User-Agent, Accept-Encoding, Connection) may be rewritten in transit.
_SIGNABLE = ("content-type", "host", "x-project-id", "x-sdk-date", "x-security-token")


def _encode(text: str) -> str:
    # Only unreserved characters (letters, digits, "-", ".", "_", "~") stay as they are.
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
) -> str:
    """`headers` must be keyed by lower-case names; `signed_headers` sorted and lower-case."""
    header_lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_lines,
            ";".join(signed_headers),
            body_hash,
        )
    )


def string_to_sign(sdk_date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    # The one-shot digest: no HMAC object built and finalised in Python for every request.
    return hmac.digest(secret_key.encode("utf-8"), to_sign.encode("utf-8"), "sha256").hex()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AkSkAuth(requests.auth.AuthBase):
    """Signs every request of a `requests.Session` with the current credentials.

    `credentials` is called once per request, so rotated or refreshed keys apply at once.
    """

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        project_id: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._credentials = credentials
        self._project_id = project_id
        self._clock = clock
        self._last: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        """The values of the credentials last signed with, for scrubbing what answers echo."""
        return self._last

    def sign_get(
        self, host: str, canonical_path: str, query: Sequence[tuple[str, str]] = ()
    ) -> dict[str, str]:
        """The headers that sign a bodiless GET, the same as `__call__` would add, from a
        canonical form whose fixed parts are known: `canonical_path` is already what
        `canonical_uri` makes of the path, and no request is prepared or parsed to sign it."""
        creds = self._credentials()
        self._last = creds.secrets()
        date = self._clock().strftime(DATE_FORMAT)
        headers = {"Host": host, "X-Sdk-Date": date}
        # Sorted by lower-case name, as the canonical form wants them.
        lines = f"host:{host.strip()}\n"
        names = "host"
        if self._project_id:
            headers["X-Project-Id"] = self._project_id
            lines += f"x-project-id:{self._project_id.strip()}\n"
            names += ";x-project-id"
        lines += f"x-sdk-date:{date}\n"
        names += ";x-sdk-date"
        if creds.security_token:
            headers["X-Security-Token"] = creds.security_token
            lines += f"x-security-token:{creds.security_token.strip()}\n"
            names += ";x-security-token"
        canonical = (
            f"GET\n{canonical_path}\n{canonical_query(query) if query else ''}\n"
            f"{lines}\n{names}\n{EMPTY_BODY_SHA256}"
        )
        sig = signature(creds.secret_key, string_to_sign(date, canonical))
        headers["Authorization"] = (
            f"{ALGORITHM} Access={creds.access_key}, SignedHeaders={names}, Signature={sig}"
        )
        return headers

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        creds = self._credentials()
        self._last = creds.secrets()
        url = urlsplit(request.url or "")
        request.headers["Host"] = url.netloc.rpartition("@")[2]
        request.headers["X-Sdk-Date"] = self._clock().strftime(DATE_FORMAT)
        if self._project_id:
            request.headers["X-Project-Id"] = self._project_id
        if creds.security_token:
            # Added before signing so that the token is signed too.
            request.headers["X-Security-Token"] = creds.security_token
        lowered = {k.lower(): v for k, v in request.headers.items()}
        signed = sorted(name for name in lowered if name in _SIGNABLE)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        canonical = canonical_request(
            request.method or "GET",
            url.path or "/",
            parse_qsl(url.query, keep_blank_values=True),
            lowered,
            signed,
            body,
        )
        sig = signature(creds.secret_key, string_to_sign(lowered["x-sdk-date"], canonical))
        request.headers["Authorization"] = (
            f"{ALGORITHM} Access={creds.access_key}, "
            f"SignedHeaders={';'.join(signed)}, Signature={sig}"
        )
        return request


class SignatureError(Exception):
    """Why the gateway would refuse a request (a reason, never a secret)."""


@dataclass(frozen=True)
class VerifiedRequest:
    access_key: str
    security_token: str | None


def verify_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
) -> VerifiedRequest:
    """Check a request as the API gateway does; `target` is the raw request path with query.

    Raises SignatureError with the reason when the request would be refused.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = lowered.get("authorization", "")
    algorithm, _, params = auth.partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("missing or unsupported Authorization algorithm")
    fields: dict[str, str] = {}
    for part in params.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    access_key, signed_list, given = (
        fields.get("Access", ""),
        fields.get("SignedHeaders", ""),
        fields.get("Signature", ""),
    )
    if not (access_key and signed_list and given):
        raise SignatureError("incomplete Authorization header")
    secret_key = secret_for(access_key)
    if secret_key is None:
        raise SignatureError("unknown access key")
    signed = signed_list.split(";")
    if "x-sdk-date" not in signed or "host" not in signed:
        raise SignatureError("X-Sdk-Date and Host must be signed")
    if any(name not in lowered for name in signed):
        raise SignatureError("a signed header is missing")
    try:
        sent_at = datetime.strptime(lowered["x-sdk-date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("malformed X-Sdk-Date") from None
    if abs((now or _utcnow()) - sent_at) > MAX_CLOCK_SKEW:
        raise SignatureError("X-Sdk-Date too far from the gateway's clock")
    token = lowered.get("x-security-token")
    if token is not None and "x-security-token" not in signed:
        raise SignatureError("X-Security-Token must be signed")
    url = urlsplit(target)
    canonical = canonical_request(
        method, url.path, parse_qsl(url.query, keep_blank_values=True), lowered, signed, body
    )
    expected = signature(secret_key, string_to_sign(lowered["x-sdk-date"], canonical))
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match")
    return VerifiedRequest(access_key=access_key, security_token=token)
