"""Where the exporter's AK/SK come from, and how the project ID is found from a region.

Sources, in the order the official SDKs use (plus explicit flags first and `*_FILE` secrets):
explicit configuration, the environment, the SDK profile file, and the ECS metadata service
(temporary keys of the agency attached to the server). Every provider caches what it read;
`invalidate()` makes it read again, which is what the exporter does when the API rejects keys
that used to work (rotation).

Error messages and log lines name sources, variables and paths, never a secret value.
"""

from __future__ import annotations

import configparser
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, cast

import requests

from cph_exporter.credentials import Credentials
from cph_exporter.signing import AkSkAuth

log = logging.getLogger(__name__)

ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
ENV_CREDENTIALS_FILE = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
FILE_SUFFIX = "_FILE"

# The SDK's profile file: an INI file whose section is the lower-cased credential type;
# "basic" holds the project-scoped keys that regional services such as CPH use.
PROFILE_DIR = ".huaweicloud"
PROFILE_NAME = "credentials"
PROFILE_SECTION = "basic"

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

IAM_ENDPOINT = "https://iam.myhuaweicloud.com"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CredentialError(Exception):
    """A source failed; the message says which and why, never with a secret value in it."""


class CredentialsNotFound(CredentialError):
    """A source holds no credentials at all (not configured); a chain moves on to the next.

    Any other CredentialError means the source is configured but broken, and a chain stops
    there rather than silently use another identity.
    """


class CredentialProvider(Protocol):
    def get(self) -> Credentials:
        """The current credentials; cheap after the first call (cached)."""
        ...

    def invalidate(self) -> None:
        """The API rejected the credentials: read the source again on the next get()."""
        ...

    def describe(self) -> str:
        """A name of the source that is safe to log."""
        ...


class _CachedProvider:
    """Reads its source once and keeps the result until invalidated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: Credentials | None = None

    def _load(self) -> Credentials:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def get(self) -> Credentials:
        with self._lock:
            if self._cached is None:
                self._cached = self._load()
            return self._cached

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


class StaticCredentials(_CachedProvider):
    """Credentials given explicitly (flags or config file)."""

    def __init__(self, creds: Credentials, description: str = "explicit configuration") -> None:
        super().__init__()
        self._creds = creds
        self._description = description

    def describe(self) -> str:
        return self._description

    def _load(self) -> Credentials:
        if not self._creds.access_key or not self._creds.secret_key:
            raise CredentialError(f"{self._description}: access key or secret key is empty")
        return self._creds


def _read_secret_file(variable: str, path: str) -> str:
    """Stripped content of a Docker/Kubernetes secret file named by `variable`."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except UnicodeDecodeError:
        raise CredentialError(
            f"environment: file {path!r} named by {variable} is not UTF-8 text"
        ) from None
    except OSError as exc:
        raise CredentialError(
            f"environment: cannot read file {path!r} named by {variable}: "
            f"{exc.strerror or type(exc).__name__}"
        ) from None
    if not value:
        raise CredentialError(f"environment: file {path!r} named by {variable} is empty")
    return value


class EnvCredentials(_CachedProvider):
    """`HUAWEICLOUD_SDK_AK`/`_SK`/`_SECURITY_TOKEN`, each also as a `*_FILE` variant.

    Empty variables count as unset, as in the SDK.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__()
        self._environ = environ

    def describe(self) -> str:
        return "environment"

    def _value(self, name: str) -> str | None:
        file_name = name + FILE_SUFFIX
        direct = self._environ.get(name) or None
        path = self._environ.get(file_name) or None
        if direct is not None and path is not None:
            # Which one would win is a guess; refuse rather than guess.
            raise CredentialError(f"environment: both {name} and {file_name} are set; set one")
        if path is not None:
            return _read_secret_file(file_name, path)
        return direct

    def _load(self) -> Credentials:
        ak = self._value(ENV_AK)
        sk = self._value(ENV_SK)
        token = self._value(ENV_SECURITY_TOKEN)
        if ak is None and sk is None:
            if token is not None:
                raise CredentialError(
                    f"environment: {ENV_SECURITY_TOKEN} is set without {ENV_AK} and {ENV_SK}"
                )
            raise CredentialsNotFound(f"environment: {ENV_AK} and {ENV_SK} are not set")
        if ak is None or sk is None:
            missing = ENV_AK if ak is None else ENV_SK
            raise CredentialError(
                f"environment: {missing} (or {missing}{FILE_SUFFIX}) is not set, the other key is"
            )
        return Credentials(access_key=ak, secret_key=sk, security_token=token)


def default_profile_path(environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The SDK's profile path and whether it was named explicitly.

    An explicitly named file that is missing is an error; a missing default file is not.
    """
    named = environ.get(ENV_CREDENTIALS_FILE)
    if named:
        return named, True
    home = environ.get("HOME") or environ.get("USERPROFILE")
    if not home:
        return None, False
    return os.path.join(home, PROFILE_DIR, PROFILE_NAME), False


class ProfileCredentials(_CachedProvider):
    """The SDK's profile file: `[basic]` with `ak`, `sk` and optionally `security_token`."""

    def __init__(self, path: str, required: bool = False) -> None:
        super().__init__()
        self._path = path
        self._required = required

    def describe(self) -> str:
        return f"profile file {self._path}"

    def _fail(self, reason: str, *, absent: bool = False) -> CredentialError:
        message = f"{self.describe()}: {reason}"
        if absent and not self._required:
            return CredentialsNotFound(message)
        return CredentialError(message)

    def _load(self) -> Credentials:
        # The SDK's parser, interpolation included, so that a file means the same to both.
        parser = configparser.ConfigParser()
        try:
            with open(self._path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError:
            raise self._fail("does not exist", absent=True) from None
        except UnicodeDecodeError:
            raise self._fail("is not UTF-8 text") from None
        except OSError as exc:
            raise self._fail(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
        except configparser.Error as exc:
            # configparser quotes the offending line, which may hold a key: give the line only.
            raise self._fail(f"is not a valid INI file ({_config_error_where(exc)})") from None
        if not parser.has_section(PROFILE_SECTION):
            raise self._fail(f"has no [{PROFILE_SECTION}] section", absent=True)
        try:
            values = {
                key: parser.get(PROFILE_SECTION, key, fallback=None) or None
                for key in ("ak", "sk", "security_token", "idp_id", "id_token_file")
            }
        except configparser.Error:
            # Interpolation errors quote the raw value.
            raise self._fail(
                f"has a value in [{PROFILE_SECTION}] with a bad '%' interpolation"
            ) from None
        ak, sk = values["ak"], values["sk"]
        if ak and sk:
            return Credentials(
                access_key=ak, secret_key=sk, security_token=values["security_token"]
            )
        if values["idp_id"] and values["id_token_file"]:
            raise self._fail("federated credentials (idp_id, id_token_file) are not supported")
        raise self._fail(f"[{PROFILE_SECTION}] needs both ak and sk")


def _config_error_where(exc: configparser.Error) -> str:
    lineno = getattr(exc, "lineno", None)
    errors = getattr(exc, "errors", None)
    if lineno is None and errors:
        lineno = errors[0][0]
    return f"line {lineno}" if lineno is not None else type(exc).__name__


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
        clock: Callable[[], datetime] = _utcnow,
        refresh_margin: timedelta = timedelta(minutes=5),
        timeout: float = 3.0,
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
        self._timeout = timeout
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

    def _request(self, method: str, path: str, headers: dict[str, str]) -> requests.Response:
        url = self._base + path
        try:
            return self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxies=_NO_PROXY,
            )
        except requests.RequestException as exc:
            # Not on an ECS (or no route to the service): nothing here, not a broken source.
            raise CredentialsNotFound(
                f"{self.describe()}: {method} {url} failed ({type(exc).__name__})"
            ) from None

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
                f"{self.describe()}: PUT {METADATA_TOKEN_PATH} answered HTTP {resp.status_code}"
            )
        self._token = resp.text.strip()
        # Renew a minute early so that a token never expires between PUT and GET.
        self._token_expires_at = now + self._token_ttl - timedelta(minutes=1)
        return self._token

    def _get_securitykey(self, token: str | None) -> requests.Response:
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
            raise CredentialError(f"{where} answered HTTP {resp.status_code}{hint}")
        try:
            document = resp.json()
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


class ChainCredentials:
    """The first source that yields complete credentials wins, and is remembered.

    Sources without credentials are skipped; a source that is configured but broken stops
    the chain with its error. `invalidate()` (or a failure of the remembered source) makes the
    next get() start again from the first source, so rotated keys are picked up wherever they
    now live.
    """

    def __init__(self, providers: Sequence[CredentialProvider]) -> None:
        if not providers:
            raise ValueError("a credential chain needs at least one source")
        self._providers = tuple(providers)
        self._lock = threading.Lock()
        self._active: CredentialProvider | None = None

    @property
    def providers(self) -> tuple[CredentialProvider, ...]:
        return self._providers

    @property
    def active(self) -> CredentialProvider | None:
        """The source the current credentials come from, once one has worked."""
        return self._active

    def describe(self) -> str:
        active = self._active
        if active is not None:
            return active.describe()
        return "credential chain (" + ", ".join(p.describe() for p in self._providers) + ")"

    def get(self) -> Credentials:
        with self._lock:
            failed: tuple[CredentialProvider, CredentialError] | None = None
            if self._active is not None:
                try:
                    return self._active.get()
                except CredentialError as exc:
                    log.warning(
                        "credentials from %s failed, trying all sources: %s",
                        self._active.describe(),
                        exc,
                    )
                    failed = (self._active, exc)
                    self._active = None
            reasons: list[str] = []
            for provider in self._providers:
                try:
                    if failed is not None and provider is failed[0]:
                        # Just failed: asking again at once would only double the wait.
                        raise failed[1]
                    creds = provider.get()
                except CredentialsNotFound as exc:
                    reasons.append(str(exc))
                    continue
                self._active = provider
                log.info("using credentials from %s", provider.describe())
                return creds
            raise CredentialsNotFound("no credentials found: " + "; ".join(reasons))

    def invalidate(self) -> None:
        with self._lock:
            self._active = None
            for provider in self._providers:
                provider.invalidate()


def default_chain(
    environ: Mapping[str, str],
    explicit: Credentials | None,
    metadata_url: str | None,
    use_metadata: bool,
    session: requests.Session | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> ChainCredentials:
    """Explicit configuration, environment (+ _FILE), profile file, ECS metadata service."""
    providers: list[CredentialProvider] = []
    if explicit is not None:
        providers.append(StaticCredentials(explicit))
    providers.append(EnvCredentials(environ))
    path, required = default_profile_path(environ)
    if path is not None:
        providers.append(ProfileCredentials(path, required=required))
    if use_metadata:
        providers.append(
            MetadataCredentials(metadata_url or METADATA_URL, session=session, clock=clock)
        )
    return ChainCredentials(providers)


class ProjectLookupError(Exception):
    """The project ID of a region could not be found; the message says why (no secrets)."""


def iam_endpoint_from(environ: Mapping[str, str]) -> str:
    """The IAM endpoint: `HUAWEICLOUD_SDK_IAM_ENDPOINT` as in the SDK, else the global one."""
    return (environ.get(ENV_IAM_ENDPOINT) or IAM_ENDPOINT).rstrip("/")


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _iam_error_detail(resp: requests.Response, secrets: Sequence[str]) -> str:
    """IAM's own error text (keystone or API gateway shape), scrubbed and shortened."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code, message = body.get("error_code"), body.get("error_msg")
    error = body.get("error")
    if isinstance(error, dict):
        code, message = error.get("code", code), error.get("message", message)
    detail = " ".join(str(part) for part in (code, message) if part is not None)
    detail = _scrub(detail, secrets)[:200]
    return f": {detail}" if detail else ""


def lookup_project_id(
    session: requests.Session,
    iam_endpoint: str,
    region: str,
    credentials: CredentialProvider,
    timeout: float = 10.0,
) -> str:
    """The ID of the project named after `region`, via IAM `GET /v3/projects?name=REGION`.

    When IAM rejects the credentials (401), the sources are re-read and the call is tried
    once more. Raises ProjectLookupError unless exactly one project matches.
    """
    url = iam_endpoint.rstrip("/") + "/v3/projects"
    # No project ID yet: the call is signed without X-Project-Id.
    auth = AkSkAuth(credentials.get)
    for attempt in range(2):
        try:
            resp = session.get(url, params={"name": region}, auth=auth, timeout=timeout)
        except requests.RequestException as exc:
            raise ProjectLookupError(
                f"IAM {url} failed for region {region!r} ({type(exc).__name__})"
            ) from None
        if resp.status_code == 401 and attempt == 0:
            log.warning(
                "IAM rejected the credentials from %s; re-reading the sources",
                credentials.describe(),
            )
            credentials.invalidate()
            continue
        break
    if resp.status_code != 200:
        try:
            secrets = credentials.get().secrets()
        except CredentialError:
            secrets = ()
        raise ProjectLookupError(
            f"IAM {url} answered HTTP {resp.status_code} for region {region!r}"
            + _iam_error_detail(resp, secrets)
        )
    try:
        body = resp.json()
    except ValueError:
        raise ProjectLookupError(f"IAM {url} answered something that is not JSON") from None
    projects = body.get("projects") if isinstance(body, dict) else None
    if not isinstance(projects, list):
        raise ProjectLookupError(f"IAM {url} answered no 'projects' list")
    # Filter again: the name query must be an exact match, whatever the server did with it.
    ids = [
        p["id"]
        for p in projects
        if isinstance(p, dict)
        and p.get("name") == region
        and isinstance(p.get("id"), str)
        and p["id"]
    ]
    if not ids:
        raise ProjectLookupError(
            f"no project named {region!r} is visible to these credentials; "
            "check the region or set the project ID"
        )
    if len(ids) > 1:
        raise ProjectLookupError(
            f"{len(ids)} projects are named {region!r} ({', '.join(ids)}); set the project ID"
        )
    return str(ids[0])


class ProjectIdResolver:
    """Looks a region's project ID up once and remembers it; failures are not remembered."""

    def __init__(
        self,
        session: requests.Session,
        credentials: CredentialProvider,
        iam_endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._iam = iam_endpoint or iam_endpoint_from(os.environ if environ is None else environ)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}

    @property
    def iam_endpoint(self) -> str:
        return self._iam

    def resolve(self, region: str) -> str:
        # One lock for all regions: concurrent first scrapes wait instead of asking IAM twice.
        with self._lock:
            found = self._ids.get(region)
            if found is None:
                found = lookup_project_id(
                    self._session, self._iam, region, self._credentials, timeout=self._timeout
                )
                log.info("project ID of region %s is %s (from IAM)", region, found)
                self._ids[region] = found
            return found
