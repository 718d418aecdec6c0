"""The ``--web.config.file`` of exporter-toolkit: TLS, basic auth and response headers.

The file format is exporter-toolkit's (``docs/web-configuration.md``), validated strictly at
start so that a mistake stops the exporter with one line instead of serving something weaker
than the operator asked for. Keys that exporter-toolkit knows but this exporter cannot honour
with Python's ``ssl`` module are rejected by name rather than silently ignored.

Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, the mapping errs on the strict
side (see ``_CLIENT_AUTH``): no configuration here accepts a client that exporter-toolkit would
refuse.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import bcrypt
import yaml

from cph_exporter.yaml_nodes import NULL_TAG, NodeParser, show

log = logging.getLogger(__name__)

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type -> (verify_mode, needs client_ca_file). Python's ssl cannot request or
# require a client certificate without verifying it, so:
# - RequestClientCert asks for nothing: Go never looks at an unverified certificate either,
#   so who gets in is the same, and a client Go accepts is never refused here.
# - RequireAnyClientCert verifies against client_ca_file: stricter than Go, never weaker.
# Verifying modes need client_ca_file: Go would fall back to the system's public CAs, which
# would let anyone holding a publicly trusted certificate in.
_CLIENT_AUTH: dict[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
_CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}  # kept by exporter-toolkit

# Go's crypto/tls.CipherSuites() names -> OpenSSL names. None: a TLS 1.3 suite, which Go (and
# OpenSSL's cipher list) does not let one configure; accepted and, like Go, not applied.
_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# exporter-toolkit's extraHTTPHeaders: the headers that may be set, and for some the only
# values allowed (compared exactly, as exporter-toolkit does).
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("headers", "http2")
# Valid for some exporter-toolkit version, not honoured here: refused by name, never ignored.
_NOT_SUPPORTED: dict[str, str] = {
    "rate_limit": "not supported by cph-exporter",
    "tls_server_config.cert": "inline certificates are not supported by cph-exporter; "
    "use cert_file",
    "tls_server_config.key": "inline keys are not supported by cph-exporter; use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported by cph-exporter; "
    "use client_ca_file",
    "tls_server_config.client_allowed_sans": "not supported by cph-exporter",
    "tls_server_config.curve_preferences": "not supported by cph-exporter "
    "(Python's ssl module cannot set a curve preference list)",
}

# $2a$/$2b$/$2y$, a two-digit cost, 22 characters of salt and 31 of digest.
_BCRYPT_RE = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_AUTH_CACHE_SIZE = 100
# bcrypt is deliberately CPU-heavy: one check at a time, so a flood of bad passwords costs one
# core, not all of them (exporter-toolkit serialises them too).
_BCRYPT_LOCK = threading.Lock()


class WebConfigError(Exception):
    """A web config that cannot be used. The message is one line and holds no secret."""


def _show(text: str) -> str:
    """A user-written key or value, made safe for a one-line message."""
    return show(text)


@dataclass(frozen=True)
class TlsSettings:
    """``tls_server_config``; file paths are absolute (resolved by the loader)."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        """Every file the settings read, for noticing changes."""
        extra = (self.client_ca_file,) if self.client_ca_file else ()
        return (self.cert_file, self.key_file, *extra)


@dataclass(frozen=True)
class WebConfig:
    """A validated web config. Building one loads the certificates, so it fails early."""

    source: str
    tls: TlsSettings | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    # repr=False: hashes are not for logs either.
    basic_auth_users: dict[str, str] = field(default_factory=dict, hash=False, repr=False)
    _context: ssl.SSLContext | None = field(init=False, default=None, repr=False, compare=False)
    _auth: _BasicAuth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in self.headers.items():
            _check_header(self.source, name, value)
        for user, hashed in self.basic_auth_users.items():
            _check_user(self.source, user, hashed)
        if self.tls is not None:
            object.__setattr__(self, "_context", _server_context(self.source, self.tls))
        object.__setattr__(self, "_auth", _BasicAuth(self.basic_auth_users))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context built (and so checked) when the config was loaded."""
        return self._context

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """Whether the ``Authorization`` header lets the request in."""
        return self._auth.check(authorization_header)

    def files(self) -> tuple[str, ...]:
        """The config file and every file it refers to."""
        return (self.source, *(self.tls.files() if self.tls else ()))


def _fail(source: str, keypath: str, message: str) -> NoReturn:
    raise WebConfigError(f"web config {source}: {keypath}: {message}")


def _check_header(source: str, name: str, value: str) -> None:
    keypath = f"http_server_config.headers.{_show(name)}"
    if name not in _HEADERS:
        spelled = next((h for h in _HEADERS if h.lower() == name.lower()), None)
        hint = f"write it as {spelled}" if spelled else f"allowed: {', '.join(_HEADERS)}"
        _fail(source, keypath, f"this header cannot be configured ({hint})")
    allowed = _HEADERS[name]
    if allowed and value not in allowed:
        _fail(source, keypath, f"must be one of {', '.join(allowed)}, not {_show(value)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        _fail(source, keypath, "control characters are not allowed in a header value")


def _check_user(source: str, user: str, hashed: str) -> None:
    keypath = f"basic_auth_users.{_show(user)}"
    if ":" in user:
        _fail(source, keypath, "a user name cannot contain ':' (basic auth splits on it)")
    # Never echo the value: an operator may have pasted a plain password by mistake.
    bad = "not a bcrypt hash (expected $2a$, $2b$ or $2y$, a cost of 04-31, 53 characters)"
    match = _BCRYPT_RE.fullmatch(hashed)
    if not match or not 4 <= int(match.group(1)) <= 31:
        _fail(source, keypath, bad)
    # bcrypt refuses some salts the pattern allows; try the hash at the lowest cost, which
    # checks the salt for the price of a millisecond.
    try:
        bcrypt.checkpw(b"", (hashed[:4] + "04" + hashed[6:]).encode())
    except ValueError:
        _fail(source, keypath, bad)


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang the start.
    raise _EncryptedKeyError


def _readable(source: str, keypath: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        _fail(source, keypath, f"file not found: {path}")
    except IsADirectoryError:
        _fail(source, keypath, f"not a file: {path}")
    except OSError as e:
        _fail(source, keypath, f"cannot read {path}: {e.strerror or e}")


def _ssl_reason(e: ssl.SSLError) -> str:
    return str(e.reason or e.strerror or e)


def _server_context(source: str, tls: TlsSettings) -> ssl.SSLContext:
    """Build the server context, turning every failure into a one-line WebConfigError."""
    key = "tls_server_config"
    if not tls.cert_file:
        _fail(source, f"{key}.cert_file", "required when tls_server_config is set")
    if not tls.key_file:
        _fail(source, f"{key}.key_file", "required when tls_server_config is set")
    for name in ("min_version", "max_version"):
        value = getattr(tls, name)
        if value not in _TLS_VERSIONS:
            _fail(
                source, f"{key}.{name}", f"{_show(value)} is not one of {', '.join(_TLS_VERSIONS)}"
            )
    if _TLS_VERSIONS[tls.max_version] < _TLS_VERSIONS[tls.min_version]:
        _fail(
            source,
            f"{key}.max_version",
            f"{tls.max_version} is below min_version {tls.min_version}",
        )
    auth_type = _CLIENT_AUTH_ALIASES.get(tls.client_auth_type, tls.client_auth_type)
    if auth_type not in _CLIENT_AUTH:
        _fail(
            source,
            f"{key}.client_auth_type",
            f"{_show(tls.client_auth_type)} is not one of {', '.join(_CLIENT_AUTH)}",
        )
    verify_mode, needs_ca = _CLIENT_AUTH[auth_type]
    if tls.client_ca_file and auth_type == "NoClientCert":
        _fail(source, f"{key}.client_ca_file", "set, but client_auth_type is NoClientCert")
    if needs_ca and not tls.client_ca_file:
        _fail(
            source,
            f"{key}.client_ca_file",
            f"required with client_auth_type {auth_type} "
            "(the system's public CAs are not trusted for client certificates)",
        )
    openssl_ciphers: list[str] = []
    for i, suite in enumerate(tls.cipher_suites):
        if suite not in _CIPHER_SUITES:
            _fail(
                source,
                f"{key}.cipher_suites[{i}]",
                f"unknown or insecure cipher suite {_show(suite)} "
                f"(known: {', '.join(_CIPHER_SUITES)})",
            )
        openssl_name = _CIPHER_SUITES[suite]
        if openssl_name:
            openssl_ciphers.append(openssl_name)
    if tls.cipher_suites and not openssl_ciphers:
        _fail(
            source,
            f"{key}.cipher_suites",
            "lists only TLS 1.3 suites, which cannot be chosen; to allow TLS 1.3 only, "
            "set min_version: TLS13",
        )

    _readable(source, f"{key}.cert_file", tls.cert_file)
    _readable(source, f"{key}.key_file", tls.key_file)
    if tls.client_ca_file:
        _readable(source, f"{key}.client_ca_file", tls.client_ca_file)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if openssl_ciphers:
        try:
            ctx.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError as e:
            _fail(source, f"{key}.cipher_suites", f"not available here: {_ssl_reason(e)}")
    # Load the certificate alone first, so that an error names the file at fault.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.cert_file)
    except ssl.SSLError as e:
        _fail(
            source, f"{key}.cert_file", f"no PEM certificate in {tls.cert_file}: {_ssl_reason(e)}"
        )
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except _EncryptedKeyError:
        _fail(source, f"{key}.key_file", f"{tls.key_file} is encrypted; give an unencrypted key")
    except ssl.SSLError as e:
        _fail(
            source,
            f"{key}.key_file",
            f"cannot load a private key matching cert_file from {tls.key_file}: {_ssl_reason(e)}",
        )
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as e:
            _fail(
                source,
                f"{key}.client_ca_file",
                f"no PEM certificate in {tls.client_ca_file}: {_ssl_reason(e)}",
            )
    ctx.verify_mode = verify_mode
    return ctx


@functools.lru_cache(maxsize=8)
def _decoy_hash(cost: int) -> bytes:
    """A hash nobody knows the password of, as slow to check as the real ones."""
    return bcrypt.hashpw(secrets.token_urlsafe(24).encode(), bcrypt.gensalt(rounds=cost))


def _parse_basic(header: str | None) -> tuple[str | None, bytes] | None:
    """(user or None if not UTF-8, password) from ``Basic base64(user:password)``."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None, password


class _BasicAuth:
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # The decoy costs as much as the dearest real hash, so timing shows nothing.
        self._decoy_cost = max((int(h[4:6]) for h in self._users.values()), default=4)
        # Successful checks only: a wrong password always pays bcrypt's price. Keys are
        # keyed digests so the cache holds no password and nothing to look up offline.
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)

    def _cache_key(self, user: str, password: bytes, hashed: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod="sha256")
        for part in (user.encode(), password, hashed):
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        creds = _parse_basic(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user) if user is not None else None
        if hashed is None:
            _checkpw(password, _decoy_hash(self._decoy_cost))
            return False
        assert user is not None
        key = self._cache_key(user, password, hashed)
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if not _checkpw(password, hashed):
            return False
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > _AUTH_CACHE_SIZE:
                self._ok.popitem(last=False)
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        with _BCRYPT_LOCK:
            return bcrypt.checkpw(password, hashed)
    except ValueError:  # a password over bcrypt's 72 bytes can never match
        return False


# ---------------------------------------------------------------------------------------------
# Loading: walk YAML nodes rather than loaded values, to see duplicate keys and to read scalars
# as written (exporter-toolkit's Go YAML reads `X-XSS-Protection: 0` as the string "0").


class _Parser(NodeParser):
    error = WebConfigError
    label = "web config"

    def unknown_key(self, key: str, dotted: str, allowed: tuple[str, ...]) -> str:
        return _NOT_SUPPORTED.get(dotted) or super().unknown_key(key, dotted, allowed)

    def string(self, node: yaml.Node, keypath: str) -> str:
        """A scalar as written; null is the empty string, as in Go."""
        if self.is_null(node):
            return ""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(keypath, f"expected a string, got {self.kind(node)}")
        return str(node.value)

    def strings(self, node: yaml.Node, keypath: str) -> tuple[str, ...]:
        if self.is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(keypath, f"expected a list, got {self.kind(node)}")
        return tuple(self.string(item, f"{keypath}[{i}]") for i, item in enumerate(node.value))

    def path(self, node: yaml.Node, keypath: str) -> str:
        value = self.string(node, keypath)
        return os.path.join(self.folder, value) if value else ""

    def tls(self, node: yaml.Node) -> TlsSettings | None:
        keypath = "tls_server_config"
        entries = self.mapping(node, keypath, _TLS_KEYS)
        if not entries:
            return None
        # Any key at all means TLS: exporter-toolkit would quietly serve plain HTTP for, say,
        # a lone min_version; here the missing cert_file is an error instead.
        null = yaml.ScalarNode(NULL_TAG, "")

        def get(key: str) -> yaml.Node:
            return entries.get(key, null)

        def where(key: str) -> str:
            return f"{keypath}.{key}"

        for required in ("cert_file", "key_file"):
            if not self.string(get(required), where(required)):
                self.fail(where(required), "required when tls_server_config is set")
        return TlsSettings(
            cert_file=self.path(get("cert_file"), where("cert_file")),
            key_file=self.path(get("key_file"), where("key_file")),
            client_auth_type=self.string(get("client_auth_type"), where("client_auth_type"))
            or "NoClientCert",
            client_ca_file=self.path(get("client_ca_file"), where("client_ca_file")) or None,
            min_version=self.string(get("min_version"), where("min_version")) or "TLS12",
            max_version=self.string(get("max_version"), where("max_version")) or "TLS13",
            cipher_suites=self.strings(get("cipher_suites"), where("cipher_suites")),
            prefer_server_cipher_suites=self.boolean(
                get("prefer_server_cipher_suites"), where("prefer_server_cipher_suites"), True
            ),
        )

    def headers(self, node: yaml.Node) -> dict[str, str]:
        keypath = "http_server_config"
        entries = self.mapping(node, keypath, _HTTP_KEYS)
        if "http2" in entries:
            # Accepted for compatibility; this server speaks HTTP/1.1 only.
            self.boolean(entries["http2"], f"{keypath}.http2", True)
        if "headers" not in entries:
            return {}
        out: dict[str, str] = {}
        for name, value in self.mapping(entries["headers"], f"{keypath}.headers", None).items():
            text = self.string(value, f"{keypath}.headers.{_show(name)}")
            # Blank means unset, as documented; but not for an unknown header or one with
            # enumerated values, which validation then refuses as exporter-toolkit does.
            if text or name not in _HEADERS or _HEADERS[name]:
                out[name] = text
        return out

    def users(self, node: yaml.Node) -> dict[str, str]:
        keypath = "basic_auth_users"
        return {
            user: self.string(value, f"{keypath}.{_show(user)}")
            for user, value in self.mapping(node, keypath, None).items()
        }


def _load(path: str) -> tuple[WebConfig, bool]:
    """The config and whether the file was empty (no document, or only comments)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WebConfigError(
            f"web config {path}: cannot read the file: {e.strerror or e}"
        ) from None
    parser = _Parser(path)
    root = parser.compose(data)
    if parser.is_null(root):
        return WebConfig(source=path), True
    entries = parser.mapping(root, "top level", _TOP_KEYS)
    return (
        WebConfig(
            source=path,
            tls=parser.tls(entries["tls_server_config"])
            if "tls_server_config" in entries
            else None,
            headers=parser.headers(entries["http_server_config"])
            if "http_server_config" in entries
            else {},
            basic_auth_users=parser.users(entries["basic_auth_users"])
            if "basic_auth_users" in entries
            else {},
        ),
        False,
    )


def load_web_config(path: str) -> WebConfig:
    """Read and strictly validate the web config at ``path``; raise WebConfigError."""
    return _load(path)[0]


# ---------------------------------------------------------------------------------------------
# Reloading


_Stamp = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


def _stamp(paths: tuple[str, ...]) -> _Stamp:
    out: list[tuple[str, tuple[int, int, int, int] | None]] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks, so Kubernetes' ..data swaps count
        except OSError:
            out.append((path, None))
        else:
            out.append((path, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)))
    return tuple(out)


class ReloadingWebConfig:
    """A web config that follows its files, so certificates rotate without a restart.

    Every ``current()`` stats the config file and the files it names; when one changed, the
    config is loaded again. A config that fails to load leaves the last good one in place and
    logs one warning (again only when the error changes); it is retried on the next change or
    after ``retry_interval`` seconds, for files that appear without anything else changing.
    Two changes need a restart and are refused while running: turning TLS on or off, and an
    emptied file (most likely a rewrite in progress, which must not drop TLS and basic auth).
    """

    def __init__(
        self,
        path: str,
        *,
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._config = load_web_config(path)
        self._stamp = _stamp(self._config.files())
        self._failed_at: float | None = None
        self._last_error: str | None = None

    def current(self) -> WebConfig:
        """The config to use now, reloaded first if its files changed."""
        if not self._due(_stamp(self._config.files())):
            return self._config
        with self._lock:
            before = _stamp(self._config.files())
            if self._due(before):  # another thread may have reloaded meanwhile
                self._reload(before)
            return self._config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The current server context: wrap each new connection with this."""
        return self.current().ssl_context()

    def _due(self, stamp: _Stamp) -> bool:
        if stamp != self._stamp:
            return True
        return self._failed_at is not None and (
            self._clock() - self._failed_at >= self._retry_interval
        )

    def _reload(self, before: _Stamp) -> None:
        old = self._config
        try:
            new, empty = _load(self.path)
            if empty and (old.tls or old.headers or old.basic_auth_users):
                raise WebConfigError(
                    f"web config {self.path}: the file is empty; an emptied file is not applied "
                    "while running (restart to drop TLS and basic auth)"
                )
            if (new.tls is None) != (old.tls is None):
                raise WebConfigError(
                    f"web config {self.path}: tls_server_config: turning TLS on or off "
                    "needs a restart"
                )
        except WebConfigError as e:
            # `before` was taken ahead of the read: a change during it triggers another try.
            self._stamp = before
            self._failed_at = self._clock()
            if str(e) != self._last_error:
                self._last_error = str(e)
                log.warning("keeping the last good web config: %s", e)
            return
        # With the same files, `before` makes a change made during the load count next time.
        self._stamp = before if new.files() == old.files() else _stamp(new.files())
        self._config = new
        self._failed_at = None
        self._last_error = None
        log.info("web config %s reloaded", self.path)


# ---------------------------------------------------------------------------------------------
# Serving


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


class WebConfigHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that serves TLS per the current web config.

    Each accepted socket is wrapped with the context current at accept time, so a rotated
    certificate reaches the next connection. The handshake runs in the connection's thread
    with a timeout, so a client that connects and stays silent holds up nobody else; failed
    handshakes and vanished clients are logged at debug level, without a traceback.
    """

    handshake_timeout: float = 10.0

    def __init__(
        self,
        server_address: tuple[str, int],
        handler_class: type[BaseHTTPRequestHandler],
        web_config: ReloadingWebConfig | None,
        bind_and_activate: bool = True,
    ) -> None:
        self.web_config = web_config
        super().__init__(server_address, handler_class, bind_and_activate)

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


class WebConfigRequestHandler(BaseHTTPRequestHandler):
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
