"""Reading the ``--web.config.file`` (exporter-toolkit's format), strictly, at start.

Every mistake stops the exporter with one line instead of serving something weaker than the
operator asked for. Keys that exporter-toolkit knows but this exporter cannot honour with
Python's ``ssl`` module are rejected by name rather than silently ignored.
"""

from __future__ import annotations

import os
import re
from typing import NoReturn

import bcrypt
import yaml

from cph_exporter.http.tls import (
    CIPHER_SUITES,
    CLIENT_AUTH,
    CLIENT_AUTH_ALIASES,
    TLS_VERSIONS,
    TlsError,
    TlsSettings,
    server_context,
)
from cph_exporter.http.web_config import WebConfig, WebConfigError
from cph_exporter.settings.yaml_nodes import NULL_TAG, NodeParser, show

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


def _show(text: str) -> str:
    """A user-written key or value, made safe for a one-line message."""
    return show(text)


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


def _checked_tls(source: str, tls: TlsSettings) -> None:
    """Check every TLS setting that can be checked without loading the files."""
    key = "tls_server_config"
    if not tls.cert_file:
        _fail(source, f"{key}.cert_file", "required when tls_server_config is set")
    if not tls.key_file:
        _fail(source, f"{key}.key_file", "required when tls_server_config is set")
    for name in ("min_version", "max_version"):
        value = getattr(tls, name)
        if value not in TLS_VERSIONS:
            _fail(
                source, f"{key}.{name}", f"{_show(value)} is not one of {', '.join(TLS_VERSIONS)}"
            )
    if TLS_VERSIONS[tls.max_version] < TLS_VERSIONS[tls.min_version]:
        _fail(
            source,
            f"{key}.max_version",
            f"{tls.max_version} is below min_version {tls.min_version}",
        )
    auth_type = CLIENT_AUTH_ALIASES.get(tls.client_auth_type, tls.client_auth_type)
    if auth_type not in CLIENT_AUTH:
        _fail(
            source,
            f"{key}.client_auth_type",
            f"{_show(tls.client_auth_type)} is not one of {', '.join(CLIENT_AUTH)}",
        )
    needs_ca = CLIENT_AUTH[auth_type][1]
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
        if suite not in CIPHER_SUITES:
            _fail(
                source,
                f"{key}.cipher_suites[{i}]",
                f"unknown or insecure cipher suite {_show(suite)} "
                f"(known: {', '.join(CIPHER_SUITES)})",
            )
        openssl_name = CIPHER_SUITES[suite]
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


def load_web_config_file(path: str) -> tuple[WebConfig, bool]:
    """The config and whether the file was empty (no document, or only comments)."""
    parser = _Parser(path)
    data, _ = parser.read()
    root = parser.compose(data)
    if parser.is_null(root):
        return WebConfig(source=path), True
    entries = parser.mapping(root, "top level", _TOP_KEYS)
    tls = parser.tls(entries["tls_server_config"]) if "tls_server_config" in entries else None
    headers = (
        parser.headers(entries["http_server_config"]) if "http_server_config" in entries else {}
    )
    users = parser.users(entries["basic_auth_users"]) if "basic_auth_users" in entries else {}
    for name, value in headers.items():
        _check_header(path, name, value)
    for user, hashed in users.items():
        _check_user(path, user, hashed)
    context = None
    if tls is not None:
        _checked_tls(path, tls)
        try:
            context = server_context(tls)  # loads the files now, so a bad one stops the start
        except TlsError as e:
            _fail(path, e.keypath, e.message)
    return WebConfig(path, tls, headers, users, context), False


def load_web_config(path: str) -> WebConfig:
    """Read and strictly validate the web config at ``path``; raise WebConfigError."""
    return load_web_config_file(path)[0]
