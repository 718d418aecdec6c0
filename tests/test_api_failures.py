"""A failed API or IAM request says which call, which host and port, and why in words; the
IAM lookup goes out as the API client does; the scrubber blanks pieces of secrets too."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cph_exporter.cli import build_parser, config_from_args
from cph_exporter.cph.client import CphClient
from cph_exporter.cph.errors import ApiError, error_fields
from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.credentials.values import Credentials, scrub
from cph_exporter.settings.config import Config, ConfigError
from cph_exporter.settings.target_config import flag_target
from cph_exporter.startup import resolve_targets
from tests.helpers.net import free_port
from tests.helpers.pki import Pki, make_ca

AK, SK = "FAILURESACCESSKEY0001", "failures-sk-Zq81mW02nXv7"
AUTH = AkSkAuth(lambda: Credentials(AK, SK), project_id="p1")


def closed_port() -> int:
    return free_port()  # free now: nothing listens there


def list_error(endpoint: str, **settings: Any) -> ApiError:
    client = CphClient(endpoint, "p1", AUTH, **settings)
    try:
        with pytest.raises(ApiError) as caught:
            client.list_servers(deadline=time.monotonic() + 30)
    finally:
        client.close()
    assert SK not in str(caught.value)
    return caught.value


def test_a_closed_port_is_named_with_its_host_and_port() -> None:
    port = closed_port()
    error = list_error(f"http://127.0.0.1:{port}")
    assert str(error) == (
        f"ListCloudPhoneServers: request to 127.0.0.1:{port} failed: connection refused"
    )


def test_a_name_that_does_not_resolve_says_so() -> None:
    error = list_error("https://cph.nowhere.invalid")
    assert str(error) == (
        "ListCloudPhoneServers: request to cph.nowhere.invalid:443 failed: name not resolved"
    )


def test_an_api_that_never_answers_times_out_after_the_request_timeout() -> None:
    with socket.socket() as silent:  # accepts (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        error = list_error(f"http://127.0.0.1:{port}", read_timeout=1.0)
    assert f"request to 127.0.0.1:{port} failed: timed out after 1s" in str(error)


# ---------------------------------------------------------------------------------------------
# IAM


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_ca("IAM test CA")


class Iam(BaseHTTPRequestHandler):
    agents: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        type(self).agents.append(self.headers.get("User-Agent", ""))
        body = json.dumps({"projects": [{"name": "cn-north-4", "id": "proj-from-iam"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_iam(pki: Pki, tmp_path: Path) -> Iterator[str]:
    issued = pki.issue("iam", server=True)
    (tmp_path / "iam.crt").write_bytes(issued.cert_pem)
    (tmp_path / "iam.key").write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "iam.crt", tmp_path / "iam.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Iam)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    Iam.agents = []
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _resolve(iam: str, **settings: Any) -> str:
    config = dataclasses.replace(Config(), region="cn-north-4", iam_endpoint=iam)
    environ = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
    (spec,) = resolve_targets(
        [flag_target(config)], environ, SecretLedger(), from_flags=True, **settings
    )
    return spec.project_id


def test_the_iam_lookup_trusts_the_ca_file_and_says_who_it_is(
    tls_iam: str, pki: Pki, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.cert_pem)
    assert _resolve(tls_iam, verify=str(ca)) == "proj-from-iam"
    assert Iam.agents == ["cph-exporter"]


def test_the_iam_lookup_refuses_an_unknown_certificate(tls_iam: str) -> None:
    with pytest.raises(ConfigError, match="TLS: certificate verify failed"):
        _resolve(tls_iam)


def test_the_iam_lookup_honours_insecure_skip_verify(tls_iam: str) -> None:
    assert _resolve(tls_iam, verify=False) == "proj-from-iam"


# ---------------------------------------------------------------------------------------------
# The scrubber, and the error parser


TOKEN = "".join(f"T{i:03d}x" for i in range(80))


def test_the_scrubber_blanks_long_pieces_of_a_secret() -> None:
    text = f"a {TOKEN[7:30]} b {TOKEN[100:115]} c {TOKEN} d"
    got = scrub(text, [TOKEN])
    assert got == f"a [REDACTED] b {TOKEN[100:115]} c [REDACTED] d"  # 15 characters stay


def test_fields_are_scrubbed_before_they_are_cut() -> None:
    body = json.dumps({"error_code": "E", "error_msg": "x" * 290 + TOKEN}).encode()
    _, msg, _ = error_fields(body, [TOKEN])
    assert msg == "x" * 290 + "[REDACTED]"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errorCode": "IAM.0001", "errorMsg": "camel"}, ("IAM.0001", "camel")),
        ({"code": "APIG.0101", "message": "plain"}, ("APIG.0101", "plain")),
        ({"error": {"code": 401, "message": "nested"}}, ("401", "nested")),
        ({"error_code": "CPH.0001", "error_msg": "snake"}, ("CPH.0001", "snake")),
    ],
)
def test_every_error_body_shape_keeps_its_code(body: Any, expected: tuple[str, str]) -> None:
    assert error_fields(json.dumps(body).encode())[:2] == expected


# ---------------------------------------------------------------------------------------------
# The flag


def test_the_response_size_flag_takes_sizes() -> None:
    def parsed(*argv: str) -> int:
        args = build_parser().parse_args(["--simulate", *argv])
        return config_from_args(args, {}).max_response_size

    assert parsed() == 8 << 20
    assert parsed("--cph.max-response-size=512KiB") == 512 << 10
    assert parsed("--cph.max-response-size", "2000000") == 2_000_000
    with pytest.raises(ConfigError, match=r"--cph\.max-response-size"):
        parsed("--cph.max-response-size=10")
    with pytest.raises(SystemExit):
        parsed("--cph.max-response-size=lots")
