"""--shard INDEX/COUNT: replicas split the fleet without overlap or gaps."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.cli import build_parser, config_from_args
from cph_exporter.refresh.shard import Shard, parse_shard
from cph_exporter.settings.config import ConfigError
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    documented_examples,
    generate_fleet,
)
from tests.helpers.scrape import ExporterFactory, scrape

LIST = "ListCloudPhoneServers"
Series = set[tuple[str, tuple[tuple[str, str], ...], float]]


def per_server_series(text: str) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("cph_server_")
    }


def server_ids(found: Series) -> set[str]:
    return {dict(labels)["server_id"] for _, labels, _ in found}


def cph_up(text: str) -> float:
    (value,) = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cph_up"
    ]
    return value


@pytest.mark.parametrize(
    ("text", "shard"),
    [
        ("0/1", Shard(0, 1)),
        ("2/3", Shard(2, 3)),
        (" 0 / 16 ", Shard(0, 16)),
        # a StatefulSet pod's name: its ordinal is the index
        ("cph-exporter-2/3", Shard(2, 3)),
        ("cph-exporter-shard-0/4", Shard(0, 4)),
    ],
)
def test_parse(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize(
    "text",
    ["3/3", "-1/3", "0/0", "1", "a/b", "1/2/3", "", "0/5000", "cph-exporter-3/3", "pod/3"],
)
def test_bad_shards_are_one_clear_config_error(text: str) -> None:
    argv = ["--simulate", f"--shard={text}"]
    with pytest.raises(ConfigError, match=r"^--shard: (expected INDEX/COUNT|INDEX|COUNT)"):
        config_from_args(build_parser().parse_args(argv), {})


def test_a_bad_shard_stops_the_start_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cph_exporter", "--simulate", "--shard", "3/3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "cph-exporter: --shard: INDEX must be from 0 to COUNT-1 (2), not 3"
    ]


def test_the_hash_is_stable_and_even() -> None:
    # Pinned: replicas of different versions or Python builds must agree on the split.
    assert [Shard(i, 3).owns("1234567890abcdef1234567890abcdef") for i in range(3)] == [
        False,
        True,
        False,
    ]
    ids = [s["server_id"] for s in generate_fleet(3000, seed=11)]
    sizes = Counter(next(i for i in range(4) if Shard(i, 4).owns(sid)) for sid in ids)
    assert sorted(sizes) == [0, 1, 2, 3]
    assert all(650 <= n <= 850 for n in sizes.values()), sizes
    assert all(Shard(0, 1).owns(sid) for sid in ids)
    assert Shard(0, 2).owns("odd \ud800 id") != Shard(1, 2).owns("odd \ud800 id")


def test_the_union_of_the_shards_is_the_unsharded_output(make_exporter: ExporterFactory) -> None:
    servers = documented_examples() + generate_fleet(90, seed=5)
    credentials = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}
    with CphSimulator(servers, credentials, SIMULATOR_PROJECT_ID) as sim:
        whole = per_server_series(scrape(make_exporter(sim)))
        assert server_ids(whole) == {s["server_id"] for s in servers}
        parts: list[Series] = []
        for index in range(3):
            sim.reset_counters()
            text = scrape(make_exporter(sim, shard=Shard(index, 3)))
            part = per_server_series(text)
            parts.append(part)
            assert cph_up(text) == 1
            # The list is read whole, details are fetched only for the shard's own servers.
            assert sim.calls[LIST] == 1
            assert set(sim.detail_calls) == server_ids(part)
            assert 10 < len(server_ids(part)) < 60  # each replica has a real share
    union: Series = set().union(*parts)
    assert union == whole
    assert sum(len(p) for p in parts) == len(whole)  # no series twice
    for a in range(3):
        for b in range(a + 1, 3):
            assert not server_ids(parts[a]) & server_ids(parts[b])


def test_server_id_mode_is_sharded_too(make_exporter: ExporterFactory) -> None:
    servers = generate_fleet(12, seed=2)
    ids = tuple(s["server_id"] for s in servers)
    credentials = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}
    with CphSimulator(servers, credentials, SIMULATOR_PROJECT_ID) as sim:
        shard = Shard(1, 2)
        text = scrape(make_exporter(sim, server_ids=ids, shard=shard))
        assert server_ids(per_server_series(text)) == {i for i in ids if shard.owns(i)}
        assert set(sim.detail_calls) == {i for i in ids if shard.owns(i)}
