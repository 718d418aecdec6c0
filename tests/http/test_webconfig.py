"""The web config: strict loading, TLS with real clients, basic auth, headers, reloading."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cph_exporter.http.base_server import (
    WebConfigHTTPServer,
    WebConfigRequestHandler,
    response_headers,
)
from cph_exporter.http.reload import ReloadingWebConfig
from cph_exporter.http.web_config import WebConfig, WebConfigError
from cph_exporter.settings.web_config_file import load_web_config, load_web_config_file
from tests.helpers.pki import HASH, PASSWORD, TLS_CONFIG, Files, Issued, Pki, key_pem

# --- a tiny server using the module ----------------------------------------------------------


class _Handler(WebConfigRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus uses it

    def do_GET(self) -> None:
        if not self.authorized():
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output for failures


@contextmanager
def serving(config: Path, handshake_timeout: float = 10.0) -> Iterator[WebConfigHTTPServer]:
    server = WebConfigHTTPServer(
        ("127.0.0.1", 0), _Handler, ReloadingWebConfig(str(config), load_web_config_file)
    )
    server.handshake_timeout = handshake_timeout
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _port(server: WebConfigHTTPServer) -> int:
    return int(server.server_address[1])


def client_context(pki: Pki, cert: Issued | None = None, tmp: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
    if cert is not None:
        assert tmp is not None
        (tmp / "client.crt").write_bytes(cert.cert_pem)
        (tmp / "client.key").write_bytes(cert.key_pem)
        ctx.load_cert_chain(tmp / "client.crt", tmp / "client.key")
    return ctx


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    server_serial: int | None


def get(
    server: WebConfigHTTPServer,
    ctx: ssl.SSLContext | None = None,
    authorization: str | None = None,
) -> Reply:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", _port(server), timeout=10, context=ctx)
    try:
        headers = {"Authorization": authorization} if authorization else {}
        conn.request("GET", "/metrics", headers=headers)
        serial = None
        if isinstance(conn.sock, ssl.SSLSocket):  # read it before the response closes it
            der = conn.sock.getpeercert(binary_form=True)
            assert der is not None
            serial = x509.load_der_x509_certificate(der).serial_number
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read(), serial)
    finally:
        conn.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- TLS with real clients -------------------------------------------------------------------


def test_tls_serves_the_configured_certificate(files: Files) -> None:
    issued = files.server_cert()
    with serving(files.config_text(TLS_CONFIG)) as server:
        reply = get(server, client_context(files.pki))
        assert (reply.status, reply.body, reply.server_serial) == (200, b"ok\n", issued.serial)
        # A client that does not trust our CA refuses the server.
        with pytest.raises(ssl.SSLCertVerificationError):
            get(server, ssl.create_default_context())


def test_require_and_verify_client_cert(files: Files, other_pki: Pki, tmp_path: Path) -> None:
    files.server_cert()
    config = files.config_text(
        TLS_CONFIG + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    )
    with serving(config) as server:
        with pytest.raises(OSError):  # an alert, a reset or a closed connection
            get(server, client_context(files.pki))
        stranger = other_pki.issue("stranger", server=False)
        with pytest.raises(OSError):
            get(server, client_context(files.pki, stranger, tmp_path))
        ours = files.pki.issue("prometheus", server=False)
        assert get(server, client_context(files.pki, ours, tmp_path)).status == 200


def test_verify_client_cert_if_given(files: Files, other_pki: Pki, tmp_path: Path) -> None:
    files.server_cert()
    config = files.config_text(
        TLS_CONFIG + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
    )
    with serving(config) as server:
        assert get(server, client_context(files.pki)).status == 200
        with pytest.raises(OSError):
            get(server, client_context(files.pki, other_pki.issue("x", server=False), tmp_path))


def test_min_version_tls13_refuses_a_tls12_client(files: Files) -> None:
    files.server_cert()
    with serving(files.config_text(TLS_CONFIG + "  min_version: TLS13\n")) as server:
        old = client_context(files.pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            get(server, old)
        assert get(server, client_context(files.pki)).status == 200


def test_default_min_version_is_tls12(files: Files) -> None:
    files.server_cert()
    config = load_web_config(str(files.config_text(TLS_CONFIG)))
    ctx = config.ssl_context()
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE


def test_cipher_suites_apply_to_tls12(files: Files) -> None:
    files.server_cert()
    config = files.config_text(
        TLS_CONFIG
        + "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
        + "  prefer_server_cipher_suites: false\n"
    )
    with serving(config) as server:
        ctx = client_context(files.pki)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        port = _port(server)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            cipher = tls.cipher()
            assert cipher is not None
            assert cipher[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_bad_clients_do_not_hold_up_or_break_the_server(
    files: Files, capfd: pytest.CaptureFixture[str]
) -> None:
    files.server_cert()
    with serving(files.config_text(TLS_CONFIG), handshake_timeout=2.0) as server:
        port = _port(server)
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        # The silent client sits in its own thread; everybody else is served meanwhile.
        started = time.monotonic()
        assert get(server, client_context(files.pki)).status == 200
        assert time.monotonic() - started < 1.9  # blocked, it would wait out the 2 s
        # ...and it is dropped once the handshake timeout runs out.
        assert idle.recv(100) == b""
        idle.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = plain.recv(100)
            except ConnectionResetError:
                answer = b""
            assert b"HTTP/1" not in answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as rude:
            rude.sendall(b"\x16\x03\x01\x00\x05garbage")
            # Linger 0: close with a reset, as a crashing client would.
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # A client that resets half way through its second request on a kept-alive
        # connection: the server's thread meets the reset while reading the request.
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=client_context(files.pki)
        )
        conn.request("GET", "/metrics")
        assert conn.getresponse().read() == b"ok\n"
        assert conn.sock is not None
        conn.sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        time.sleep(0.3)  # let the server's thread meet the reset before stderr is read
        assert get(server, client_context(files.pki)).status == 200
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err


# --- basic auth and headers ------------------------------------------------------------------


def test_basic_auth_over_tls(files: Files) -> None:
    files.server_cert()
    config = files.config_text(
        TLS_CONFIG
        + f"basic_auth_users:\n  prometheus: '{HASH}'\n"
        + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        + "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=60\n"
    )
    configured = {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=60",
    }
    with serving(config) as server:
        ctx = client_context(files.pki)
        ok = get(server, ctx, basic("prometheus", PASSWORD))
        assert (ok.status, ok.body) == (200, b"ok\n")
        for authorization in (
            basic("prometheus", "wrong"),
            basic("nobody", PASSWORD),
            None,
            "Bearer abc",
            "Basic !!!not-base64",
            "Basic " + base64.b64encode(b"no-colon").decode(),
        ):
            denied = get(server, ctx, authorization)
            assert denied.status == 401, authorization
            assert denied.headers["WWW-Authenticate"] == "Basic"
            assert b"ok" not in denied.body
        for reply in (ok, denied):
            for name, value in configured.items():
                assert reply.headers.get_all(name) == [value]  # present, and only once


def test_basic_auth_over_plain_http(files: Files) -> None:
    config = files.config_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    with serving(config) as server:
        assert get(server, None, basic("prometheus", PASSWORD)).status == 200
        assert get(server, None, basic("prometheus", PASSWORD + "x")).status == 401


def test_no_users_lets_everyone_in(files: Files) -> None:
    config = load_web_config(str(files.config_text("")))
    assert config.tls is None and config.ssl_context() is None
    assert config.check_basic_auth(None)
    assert config.check_basic_auth("Basic garbage")


def test_unknown_user_pays_for_a_decoy_as_dear_as_the_real_hashes(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    dear = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5)).decode()
    config = load_web_config(
        str(files.config_text(f"basic_auth_users:\n  a: '{HASH}'\n  b: '{dear}'\n"))
    )
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    assert not config.check_basic_auth(basic("mallory", "pw"))
    assert len(checked) == 1
    assert checked[0][:7] == b"$2b$05$"  # the highest cost among the users
    assert checked[0] not in (HASH.encode(), dear.encode())


def test_successful_checks_are_cached_and_failures_are_not(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_web_config(str(files.config_text(f"basic_auth_users:\n  a: '{HASH}'\n")))
    calls = 0
    real_checkpw = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        nonlocal calls
        calls += 1
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    for _ in range(3):
        assert config.check_basic_auth(basic("a", PASSWORD))
    assert calls == 1
    for _ in range(2):
        assert not config.check_basic_auth(basic("a", "wrong"))
    assert calls == 3
    # A new config (a reload) starts with an empty cache, so a changed hash takes effect.
    again = load_web_config(str(files.config))
    calls = 0  # loading tried the hash once, to check its salt
    assert again.check_basic_auth(basic("a", PASSWORD))
    assert calls == 1


def test_overlong_password_is_refused_not_raised(files: Files) -> None:
    config = load_web_config(str(files.config_text(f"basic_auth_users:\n  a: '{HASH}'\n")))
    assert not config.check_basic_auth(basic("a", "x" * 100))
    assert not config.check_basic_auth(basic("nobody", "x" * 100))


def test_2y_hashes_from_htpasswd_work(files: Files) -> None:
    hashed = HASH.replace("$2b$", "$2y$", 1)
    config = load_web_config(str(files.config_text(f"basic_auth_users:\n  a: '{hashed}'\n")))
    assert config.check_basic_auth(basic("a", PASSWORD))


def test_headers_scalars_are_read_as_written_and_blank_means_unset(files: Files) -> None:
    config = load_web_config(
        str(
            files.config_text(
                "http_server_config:\n  http2: false\n  headers:\n"
                "    X-XSS-Protection: 0\n    Content-Security-Policy:\n"
            )
        )
    )
    assert config.headers == {"X-XSS-Protection": "0"}
    assert response_headers(config) == {"X-XSS-Protection": "0"}


# --- validation ------------------------------------------------------------------------------

NOT_A_HASH = "$2b$04$" + "z" * 53  # right shape, but a salt bcrypt refuses

INVALID = [
    ("bogus: 1\n", "bogus", "unknown key"),
    (TLS_CONFIG + "  bogus: 1\n", "tls_server_config.bogus", "unknown key"),
    ("http_server_config:\n  bogus: 1\n", "http_server_config.bogus", "unknown key"),
    ("rate_limit:\n  burst: 1\n", "rate_limit", "not supported"),
    (
        TLS_CONFIG + "  curve_preferences: [X25519]\n",
        "tls_server_config.curve_preferences",
        "not supported",
    ),
    (
        TLS_CONFIG + "  client_allowed_sans: [a]\n",
        "tls_server_config.client_allowed_sans",
        "not supported",
    ),
    (
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
        "tls_server_config.cert_file",
        "file not found: {dir}/missing.crt",
    ),
    (
        TLS_CONFIG + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.pem\n",
        "tls_server_config.client_ca_file",
        "file not found: {dir}/nope.pem",
    ),
    (
        TLS_CONFIG + "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file",
        "required with client_auth_type RequireAndVerifyClientCert",
    ),
    (TLS_CONFIG + "  client_ca_file: ca.crt\n", "tls_server_config.client_ca_file", "NoClientCert"),
    ("tls_server_config:\n  min_version: TLS13\n", "tls_server_config.cert_file", "required"),
    ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice", "not a bcrypt hash"),
    (
        f"basic_auth_users:\n  alice: '{NOT_A_HASH}'\n",
        "basic_auth_users.alice",
        "not a bcrypt hash",
    ),
    (f"basic_auth_users:\n  'a:b': '{HASH}'\n", "basic_auth_users.'a:b'", "cannot contain ':'"),
    ("basic_auth_users: [alice]\n", "basic_auth_users", "expected a mapping, got a list"),
    (
        TLS_CONFIG + "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type",
        "Sometimes",
    ),
    (TLS_CONFIG + "  min_version: TLS14\n", "tls_server_config.min_version", "TLS14 is not one of"),
    (TLS_CONFIG + "  max_version: '1.2'\n", "tls_server_config.max_version", "is not one of"),
    (
        TLS_CONFIG + "  min_version: TLS13\n  max_version: TLS12\n",
        "tls_server_config.max_version",
        "below min_version",
    ),
    (TLS_CONFIG + "  cipher_suites: [RC4]\n", "tls_server_config.cipher_suites[0]", "unknown"),
    (
        TLS_CONFIG + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        "tls_server_config.cipher_suites",
        "only TLS 1.3",
    ),
    (
        TLS_CONFIG + "  prefer_server_cipher_suites: maybe\n",
        "tls_server_config.prefer_server_cipher_suites",
        "expected true or false",
    ),
    (TLS_CONFIG + "  cert_file: [a, b]\n", "tls_server_config.cert_file", "duplicate key"),
    (
        "http_server_config:\n  headers:\n    X-Powered-By: me\n",
        "http_server_config.headers.X-Powered-By",
        "cannot be configured",
    ),
    (
        "http_server_config:\n  headers:\n    x-frame-options: deny\n",
        "http_server_config.headers.x-frame-options",
        "write it as X-Frame-Options",
    ),
    (
        "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
        "http_server_config.headers.X-Frame-Options",
        "must be one of deny, sameorigin",
    ),
    (
        'http_server_config:\n  headers:\n    Content-Security-Policy: "a\\nb"\n',
        "http_server_config.headers.Content-Security-Policy",
        "control characters",
    ),
    ("- tls_server_config\n", "top level", "expected a mapping, got a list"),
    ("just words\n", "top level", "expected a mapping, got a string"),
    ("basic_auth_users: hunter2\n", "basic_auth_users", "expected a mapping, got a string"),
    (TLS_CONFIG + "  min_version: 13\n", "tls_server_config.min_version", "13 is not one of"),
    (TLS_CONFIG + "  cipher_suites: {a: b}\n", "tls_server_config.cipher_suites", "got a mapping"),
    ("tls_server_config: [unclosed\n", "not valid YAML at line", ""),
    ("a: b\n  c: d\n", "not valid YAML at line 2", "mapping values are not allowed"),
]


@pytest.mark.parametrize(("text", "keypath", "fragment"), INVALID)
def test_invalid_configs_fail_with_one_line(
    files: Files, text: str, keypath: str, fragment: str
) -> None:
    files.server_cert()
    path = files.config_text(text, valid=False)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"web config {path}: {keypath}")
    assert fragment.format(dir=files.dir) in message
    assert "hunter2" not in message and NOT_A_HASH not in message and HASH not in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(
        WebConfigError, match=r"^web config .*absent\.yml: cannot read the file: No such file"
    ):
        load_web_config(str(path))


def test_invalid_utf8_is_one_line(files: Files) -> None:
    path = files.write("web.yml", b"tls_server_config: \xff\xfe\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"web config {path}: not valid YAML")


def test_key_that_does_not_match_the_cert(files: Files) -> None:
    files.server_cert()
    files.write("server.key", files.pki.issue("other", server=True).key_pem)
    with pytest.raises(
        WebConfigError, match=r"tls_server_config\.key_file: cannot load a private key"
    ):
        load_web_config(str(files.config_text(TLS_CONFIG, valid=False)))


def test_cert_file_without_a_certificate(files: Files) -> None:
    files.server_cert()
    files.write("server.crt", "not a certificate\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: no PEM certificate"):
        load_web_config(str(files.config_text(TLS_CONFIG, valid=False)))


def test_encrypted_key_fails_instead_of_prompting(files: Files) -> None:
    files.server_cert()
    key = ec.generate_private_key(ec.SECP256R1())
    files.write("server.key", key_pem(key, password=b"secret"))
    with pytest.raises(WebConfigError, match=r"tls_server_config\.key_file: .* is encrypted"):
        load_web_config(str(files.config_text(TLS_CONFIG, valid=False)))


def test_relative_paths_resolve_against_the_config_folder(
    files: Files, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (files.dir / "certs").mkdir()
    files.server_cert(prefix="certs/server")
    path = files.config_text(
        "tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_web_config(str(path))
    assert config.tls is not None
    assert config.tls.cert_file == str(files.dir / "certs" / "server.crt")
    assert config.tls.client_ca_file == str(files.dir / "ca.crt")
    # The same holds when the config itself is named by a relative path.
    monkeypatch.chdir(files.dir.parent)
    relative = load_web_config(os.path.join(files.dir.name, "web.yml"))
    assert relative.tls is not None and relative.tls.key_file.endswith("/certs/server.key")
    assert os.path.isabs(relative.tls.key_file)


def test_client_auth_mapping(files: Files) -> None:
    files.server_cert()
    expected = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_NONE,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "RequireClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
    for auth_type, mode in expected.items():
        ca = "" if auth_type == "NoClientCert" else "  client_ca_file: ca.crt\n"
        text = TLS_CONFIG + f"  client_auth_type: {auth_type}\n" + ca
        ctx = load_web_config(str(files.config_text(text))).ssl_context()
        assert ctx is not None and ctx.verify_mode == mode, auth_type


# --- reloading -------------------------------------------------------------------------------


def test_rotated_certificate_reaches_new_connections(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    first = files.server_cert()
    with serving(files.config_text(TLS_CONFIG)) as server:
        ctx = client_context(files.pki)
        assert get(server, ctx).server_serial == first.serial
        second = files.server_cert()  # new files at the same paths
        assert get(server, ctx).server_serial == second.serial

        # A broken rewrite keeps the last good config, with one warning and no secret in it.
        caplog.set_level(logging.INFO, logger="cph_exporter.http.reload")
        caplog.clear()
        files.config_text(
            TLS_CONFIG + f"  bogus: yes\nbasic_auth_users:\n  a: '{HASH}'\n", valid=False
        )
        for _ in range(3):
            reply = get(server, ctx)
            assert (reply.status, reply.server_serial) == (200, second.serial)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        text = warnings[0].getMessage()
        assert "\n" not in text and "tls_server_config.bogus" in text and HASH not in text

        # An emptied file (a rewrite caught half way) is not applied either.
        caplog.clear()
        files.config_text("", valid=False)
        assert get(server, ctx).server_serial == second.serial
        assert ["empty" in r.getMessage() for r in caplog.records] == [True]

        # Once the file is good again it is applied: basic auth switches on without a restart.
        files.config_text(TLS_CONFIG + f"basic_auth_users:\n  a: '{HASH}'\n")
        assert get(server, ctx).status == 401
        assert get(server, ctx, basic("a", PASSWORD)).status == 200


def test_turning_tls_off_needs_a_restart(files: Files, caplog: pytest.LogCaptureFixture) -> None:
    files.server_cert()
    reloading = ReloadingWebConfig(str(files.config_text(TLS_CONFIG)), load_web_config_file)
    files.config_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    with caplog.at_level(logging.WARNING, logger="cph_exporter.http.reload"):
        assert reloading.current().tls is not None
    assert "turning TLS on or off needs a restart" in caplog.text


def test_failed_reload_is_retried_for_files_that_appear_later(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    files.server_cert()
    now = [0.0]
    reloading = ReloadingWebConfig(
        str(files.config_text(TLS_CONFIG)),
        load_web_config_file,
        retry_interval=5.0,
        clock=lambda: now[0],
    )
    # The operator points the config at new files first, and copies them in afterwards.
    files.config_text(TLS_CONFIG.replace("server.", "new."), valid=False)
    with caplog.at_level(logging.WARNING, logger="cph_exporter.http.reload"):
        assert reloading.current().tls.cert_file.endswith("/server.crt")  # type: ignore[union-attr]
        new = files.server_cert(prefix="new")
        assert reloading.current().tls.cert_file.endswith("/server.crt")  # type: ignore[union-attr]
        now[0] = 5.0
        current = reloading.current()
    assert current.tls is not None and current.tls.cert_file.endswith("/new.crt")
    assert len(caplog.records) == 1 and "file not found" in caplog.records[0].getMessage()
    ctx = current.ssl_context()
    assert ctx is not None
    der = _serve_once_and_get_cert(ctx, files.pki)
    assert x509.load_der_x509_certificate(der).serial_number == new.serial


def _serve_once_and_get_cert(server_ctx: ssl.SSLContext, pki: Pki) -> bytes:
    """Handshake once with the context and return the certificate the client saw."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=accept)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"x")
        thread.join(5)
    assert der is not None
    return der


def test_web_config_repr_holds_no_hashes(files: Files) -> None:
    config = load_web_config(str(files.config_text(f"basic_auth_users:\n  a: '{HASH}'\n")))
    assert HASH not in repr(config)
    assert isinstance(config, WebConfig)


# --- over TLS too, a client that says nothing after the handshake is let go ---

TLS_PATIENCE = 60.0


def test_a_silent_client_after_the_tls_handshake_is_closed_after_the_read_timeout(
    files: Files,
) -> None:
    files.server_cert()
    with serving(files.config_text(TLS_CONFIG)) as server:
        server.read_timeout = 0.5
        port = int(server.server_address[1])
        with socket.create_connection(("127.0.0.1", port), timeout=TLS_PATIENCE) as raw:
            context = client_context(files.pki)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                try:
                    closed = tls.recv(100) == b""
                except (ssl.SSLError, ConnectionResetError):
                    closed = True
    assert closed
