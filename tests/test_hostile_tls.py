"""Over TLS too, a client that says nothing after the handshake is let go."""

from __future__ import annotations

import socket
import ssl

from tests.test_webconfig import (  # noqa: F401  (pki and files are fixtures)
    TLS_CONFIG,
    Files,
    client_context,
    files,
    pki,
    serving,
)

PATIENCE = 60.0


def test_a_silent_client_after_the_tls_handshake_is_closed_after_the_read_timeout(
    files: Files,  # noqa: F811
) -> None:
    files.server_cert()
    with serving(files.config_text(TLS_CONFIG)) as server:
        server.read_timeout = 0.5
        port = int(server.server_address[1])
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as raw:
            context = client_context(files.pki)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                try:
                    closed = tls.recv(100) == b""
                except (ssl.SSLError, ConnectionResetError):
                    closed = True
    assert closed
