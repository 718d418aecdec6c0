"""Temporary keys of an ECS agency, end to end: metadata stand-in -> exporter -> simulator."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cph_exporter.app import Exporter
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.settings.config import Config
from cph_exporter.settings.config_file import load_config_file
from cph_exporter.simulator import SIMULATOR_PROJECT_ID, CphSimulator
from cph_exporter.startup import resolve_targets
from tests.helpers.fleet import fleet
from tests.helpers.metadata import StandIn, metadata_service
from tests.helpers.samples import assert_complete, samples
from tests.helpers.scrape import scrape

TEMP_AK = "TEMPORARYACCESSKEY01"


def credential(secret: str, token: str, lifetime: timedelta) -> dict[str, str]:
    expires = datetime.now(timezone.utc) + lifetime
    return {
        "access": TEMP_AK,
        "secret": secret,
        "securitytoken": token,
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


@pytest.fixture
def metadata() -> Iterator[StandIn]:
    yield from metadata_service()


def test_temporary_keys_are_signed_with_their_token_and_renewed_before_they_expire(
    metadata: StandIn, tmp_path: Path
) -> None:
    url, state = metadata.url, metadata.state
    state.credentials = [
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
    # Renewed once, each time with the session token of the token dance.
    fetches = [
        headers.get("X-Metadata-Token")
        for method, path, headers in state.requests
        if method == "GET"
    ]
    assert fetches == ["mdtoken-1", "mdtoken-1"]
    codes = {labels["code"] for labels, _ in second["cph_exporter_api_requests_total"]}
    assert codes == {"200"}  # renewed ahead of expiry, not after a 401
