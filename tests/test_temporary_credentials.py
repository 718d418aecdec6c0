"""Temporary keys of an ECS agency, end to end: metadata stand-in -> exporter -> simulator."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from cph_exporter.app import Exporter
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.settings.config import Config
from cph_exporter.settings.config_file import load_config_file
from cph_exporter.simulator import SIMULATOR_PROJECT_ID, CphSimulator
from cph_exporter.startup import resolve_targets
from tests.helpers.fleet import fleet
from tests.helpers.net import serve
from tests.helpers.samples import assert_complete, samples
from tests.helpers.scrape import scrape

TEMP_AK = "TEMPORARYACCESSKEY01"


class MetadataStandIn(BaseHTTPRequestHandler):
    """The ECS metadata service: a session token first, then the agency's temporary keys."""

    issued: list[dict[str, str]]  # what each GET of the security key answers, in turn
    fetches: list[str]  # the X-Metadata-Token of each such GET

    def do_PUT(self) -> None:
        assert self.path == "/meta-data/latest/api/token"
        self._answer(b"session-token-1", "text/plain")

    def do_GET(self) -> None:
        assert self.path == "/openstack/latest/securitykey"
        cls = type(self)
        cls.fetches.append(self.headers.get("X-Metadata-Token", ""))
        credential = cls.issued[min(len(cls.fetches), len(cls.issued)) - 1]
        self._answer(json.dumps({"credential": credential}).encode(), "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def credential(secret: str, token: str, lifetime: timedelta) -> dict[str, str]:
    expires = datetime.now(timezone.utc) + lifetime
    return {
        "access": TEMP_AK,
        "secret": secret,
        "securitytoken": token,
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


@pytest.fixture
def metadata() -> Iterator[tuple[str, type[MetadataStandIn]]]:
    handler = type("Metadata", (MetadataStandIn,), {"issued": [], "fetches": []})
    for url in serve(handler):
        yield url, handler


def test_temporary_keys_are_signed_with_their_token_and_renewed_before_they_expire(
    metadata: tuple[str, type[MetadataStandIn]], tmp_path: Path
) -> None:
    url, stand_in = metadata
    stand_in.issued = [
        credential("temporary-secret-1", "token-1", timedelta(seconds=4)),
        credential("temporary-secret-2", "token-2", timedelta(hours=1)),
    ]
    api_keys = {TEMP_AK: "temporary-secret-1"}
    simulator = CphSimulator(fleet(), api_keys, SIMULATOR_PROJECT_ID)
    simulator.security_tokens[TEMP_AK] = "token-1"  # the gateway wants the token, signed
    simulator.start()
    path = tmp_path / "cph.yml"
    path.write_text(
        "targets:\n"
        "  - name: agency\n"
        "    region: cn-north-4\n"
        f"    project_id: {SIMULATOR_PROJECT_ID}\n"
        f"    endpoint: {simulator.url}\n"
        f"    credentials: {{metadata: true, metadata_url: '{url}'}}\n"
    )
    specs = resolve_targets(load_config_file(str(path)), {}, SecretLedger())
    config = dataclasses.replace(
        Config(),
        listen_address="127.0.0.1:0",
        config_file=str(path),
        cache_ttl=2.5,
        phones=False,
    )
    exporter = Exporter(config, targets=specs)
    exporter.start()
    try:
        first = samples(scrape(exporter))
        assert first["cph_up"][0][1] == 1
        # The cloud rotates the agency's keys; the first ones expire 4 s after issue.
        api_keys[TEMP_AK] = "temporary-secret-2"
        simulator.security_tokens[TEMP_AK] = "token-2"
        time.sleep(2.7)  # past the cache TTL, and past half of the first keys' lifetime
        second = samples(scrape(exporter))
    finally:
        exporter.close()
        simulator.stop()
    assert second["cph_up"][0][1] == 1
    assert_complete(second, fleet())
    assert stand_in.fetches == ["session-token-1", "session-token-1"]  # renewed once, by token
    codes = {labels["code"] for labels, _ in second["cph_exporter_api_requests_total"]}
    assert codes == {"200"}  # renewed ahead of expiry, not after a 401
