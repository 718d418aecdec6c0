"""Several targets from one --config.file, and the cloud phones, against real simulators."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cph_exporter.app import Exporter
from cph_exporter.cph.models import phone_state
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.settings.config import Config
from cph_exporter.settings.config_file import load_config_file
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    generate_fleet,
    generate_phones,
)
from cph_exporter.startup import resolve_targets
from tests.helpers.cli import run_cli
from tests.helpers.fleet import fleet
from tests.helpers.samples import assert_complete, by_server, samples
from tests.helpers.scrape import ExporterFactory, scrape

PROJECTS = ("a" * 32, "b" * 32, "c" * 32)


@pytest.fixture
def three_projects() -> Iterator[list[tuple[CphSimulator, list[dict[str, Any]]]]]:
    started = []
    for seed, project in enumerate(PROJECTS, start=1):
        servers = generate_fleet(15, seed=seed)
        sim = CphSimulator(servers, {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}, project)
        sim.start()
        started.append((sim, servers))
    yield started
    for sim, _ in started:
        sim.stop()


def write_config(path: Path, sims: list[CphSimulator], secrets: list[str]) -> Path:
    lines = ["targets:"]
    for number, (sim, secret_env) in enumerate(zip(sims, secrets, strict=True)):
        lines += [
            f"  - name: t{number}",
            "    region: cn-north-4",
            f"    project_id: {sim.project_id}",
            f"    endpoint: {sim.url}",
            "    credentials:",
            "      access_key_env: CPH_AK",
            f"      secret_key_env: {secret_env}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_target_with_bad_credentials_never_hides_the_others(
    three_projects: list[tuple[CphSimulator, list[dict[str, Any]]]], tmp_path: Path
) -> None:
    sims = [sim for sim, _ in three_projects]
    environ = {
        "CPH_AK": SIMULATOR_ACCESS_KEY,
        "GOOD_SK": SIMULATOR_SECRET_KEY,
        "BAD_SK": "not-the-right-secret-key-77",
    }
    path = write_config(tmp_path / "cph.yml", sims, ["GOOD_SK", "BAD_SK", "GOOD_SK"])
    specs = resolve_targets(load_config_file(str(path)), environ, SecretLedger())
    config = dataclasses.replace(Config(), listen_address="127.0.0.1:0", config_file=str(path))
    exporter = Exporter(config, targets=specs)
    exporter.start()
    try:
        text = scrape(exporter)
    finally:
        exporter.close()
    got = samples(text)
    up = {labels["project_id"]: value for labels, value in got["cph_up"]}
    assert up == {PROJECTS[0]: 1, PROJECTS[1]: 0, PROJECTS[2]: 1}
    good = three_projects[0][1] + three_projects[2][1]
    assert_complete(got, good)  # every server of both good projects, none of the bad one
    info = by_server(got["cph_server_info"])
    assert {info[s["server_id"]][0]["project_id"] for s in three_projects[2][1]} == {PROJECTS[2]}
    assert "not-the-right-secret-key-77" not in text


def test_filters_keep_only_matching_servers(
    simulator: CphSimulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    path = tmp_path / "cph.yml"
    path.write_text(
        "targets:\n"
        "  - name: v2-only\n"
        "    region: cn-north-4\n"
        f"    project_id: {SIMULATOR_PROJECT_ID}\n"
        f"    endpoint: {simulator.url}\n"
        "    credentials: {access_key_env: CPH_AK, secret_key_env: CPH_SK}\n"
        "    filters: {network_version: v2, status: [2, 5, 8]}\n"
    )
    environ = {"CPH_AK": SIMULATOR_ACCESS_KEY, "CPH_SK": SIMULATOR_SECRET_KEY}
    specs = resolve_targets(load_config_file(str(path)), environ, SecretLedger())
    config = dataclasses.replace(Config(), listen_address="127.0.0.1:0", config_file=str(path))
    exporter = Exporter(config, targets=specs)
    exporter.start()
    try:
        got = samples(scrape(exporter))
    finally:
        exporter.close()
    wanted = [s for s in fleet() if s["network_version"] == "v2" and s["status"] in (2, 5, 8)]
    assert wanted and len(wanted) < len(fleet())
    assert_complete(got, wanted)
    details = {s["server_id"] for s in wanted}
    assert set(simulator.detail_calls) == details  # filtered servers cost no detail call


def test_phones_are_counted_per_server_and_state(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    phones = generate_phones(fleet())
    got = samples(scrape(make_exporter(simulator)))
    counted = {
        (labels["server_id"], labels["state"]): value for labels, value in got["cph_server_phones"]
    }
    expected = Counter((p["server_id"], phone_state(p["status"])) for p in phones)
    for server in fleet():
        for state in ("creating", "running", "abnormal", "reset_failed", "unknown"):
            key = (server["server_id"], state)
            assert counted[key] == expected.get(key, 0), key
    assert sum(counted.values()) == len(phones)
    assert len(counted) == len(fleet()) * 13  # every state present, 0 where none
    assert got["cph_phones_up"][0][1] == 1
    assert "cph_phone_state" not in got and "cph_phone_info" not in got


def test_per_phone_series_only_with_the_flag(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    phones = generate_phones(fleet())
    got = samples(scrape(make_exporter(simulator, phone_details=True)))
    current = {labels["phone_id"]: labels["state"] for labels, v in got["cph_phone_state"] if v}
    assert current == {p["phone_id"]: phone_state(p["status"]) for p in phones}
    info = {labels["phone_id"]: labels["image_version"] for labels, _ in got["cph_phone_info"]}
    assert info == {p["phone_id"]: p["image_version"] for p in phones}


def test_phone_listing_failure_keeps_servers_and_says_so(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    simulator.faults.phone_list_fault = "html_502"
    got = samples(scrape(make_exporter(simulator)))
    assert got["cph_up"][0][1] == 1
    assert got["cph_phones_up"][0][1] == 0
    assert not got["cph_server_phones"]  # never listed: no counts rather than false zeros
    assert_complete(got, fleet())


def test_no_phone_collector_makes_no_phone_calls(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    got = samples(scrape(make_exporter(simulator, phones=False)))
    assert "ListCloudPhones" not in simulator.calls
    assert not any(name.startswith(("cph_phone", "cph_server_phones")) for name in got)


PROJECT = "abcdef0123456789abcdef0123456789"


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(f"targets:\n  - {{name: a, region: cn-north-4, project_id: {PROJECT}}}\n")
    result = run_cli("--config.file", str(good), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "1 target(s)" in result.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("targets:\n  - {name: a, region: cn-north-4, projcet_id: abc}\n")
    result = run_cli("--config.file", str(bad), "--config.check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"config file {bad}: targets[0].projcet_id" in result.stderr


def test_two_targets_on_one_project_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yml"
    path.write_text(
        "targets:\n"
        f"  - {{name: a, region: cn-north-4, project_id: {PROJECT}, credentials: "
        "{access_key_env: AK, secret_key_env: SK}}\n"
        f"  - {{name: b, region: cn-north-4, project_id: {PROJECT}, credentials: "
        "{access_key_env: AK, secret_key_env: SK}}\n"
    )
    result = run_cli("--config.file", str(path), env={"AK": "ak", "SK": "sk-secret-value"})
    assert result.returncode == 2
    assert "target 'b': watches the same project as target 'a'" in result.stderr
    assert "sk-secret-value" not in result.stderr
