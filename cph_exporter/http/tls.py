"""TLS for the exporter's own endpoint: exporter-toolkit's names, mapped onto Python's ssl.

Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, the mapping errs on the strict
side (see ``CLIENT_AUTH``): no configuration here accepts a client that exporter-toolkit would
refuse.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
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
CLIENT_AUTH: dict[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}  # kept by exporter-toolkit

# Go's crypto/tls.CipherSuites() names -> OpenSSL names. None: a TLS 1.3 suite, which Go (and
# OpenSSL's cipher list) does not let one configure; accepted and, like Go, not applied.
CIPHER_SUITES: dict[str, str | None] = {
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


class TlsError(Exception):
    """The certificates or keys cannot be used: ``keypath`` names the setting at fault."""

    def __init__(self, keypath: str, message: str) -> None:
        super().__init__(f"{keypath}: {message}")
        self.keypath = keypath
        self.message = message


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


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang the start.
    raise _EncryptedKeyError


def _ssl_reason(e: ssl.SSLError) -> str:
    return str(e.reason or e.strerror or e)


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server context for validated settings; a file that cannot be used is a TlsError."""
    key = "tls_server_config"
    auth_type = CLIENT_AUTH_ALIASES.get(tls.client_auth_type, tls.client_auth_type)
    verify_mode = CLIENT_AUTH[auth_type][0]
    openssl_ciphers = [name for s in tls.cipher_suites if (name := CIPHER_SUITES[s])]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if openssl_ciphers:
        try:
            ctx.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError as e:
            raise TlsError(
                f"{key}.cipher_suites", f"not available here: {_ssl_reason(e)}"
            ) from None
    # Load the certificate alone first, so that an error names the file at fault.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.cert_file)
    except ssl.SSLError as e:
        raise TlsError(
            f"{key}.cert_file", f"no PEM certificate in {tls.cert_file}: {_ssl_reason(e)}"
        ) from None
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except _EncryptedKeyError:
        raise TlsError(
            f"{key}.key_file", f"{tls.key_file} is encrypted; give an unencrypted key"
        ) from None
    except ssl.SSLError as e:
        raise TlsError(
            f"{key}.key_file",
            f"cannot load a private key matching cert_file from {tls.key_file}: {_ssl_reason(e)}",
        ) from None
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as e:
            raise TlsError(
                f"{key}.client_ca_file",
                f"no PEM certificate in {tls.client_ca_file}: {_ssl_reason(e)}",
            ) from None
    ctx.verify_mode = verify_mode
    return ctx
