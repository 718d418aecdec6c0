"""Random JSON shapes through the parser and the collector (hypothesis).

Whatever the API sends, parsing raises nothing but ParseError (and that only for entries
without an identity), and the rendered exposition always parses, in both formats, with
unique label sets in every family and only finite values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from cph_exporter.cph.models import ParseError, ServerDetails, parse_details, parse_server
from cph_exporter.http.exposition import Exposition
from cph_exporter.metrics.common import label_value
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot
from cph_exporter.refresh.targets import TargetView

# Surrogates included (hypothesis leaves them out by default), and the characters that
# need escaping in an exposition made likely.
TEXT = st.text(
    st.characters(exclude_categories=(), include_characters='"\\\n\r\t\x00{}=,#'),
    max_size=12,
)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**309)])  # JSON integers no float can hold
    | st.floats()  # NaN and the infinities included: json.loads reads them
    | TEXT
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
TIMES = st.sampled_from(
    ["2021-02-18T11:36:20Z", "2021-02-18 11:48:40", "2021-02-18T11:36:20.123Z", "9999-12-31"]
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, any JSON value otherwise."""
    return st.one_of(strategy, strategy, JSON)


NUMBER = (
    st.integers(-3, 20)
    | st.floats(-1e308, 1e308)
    | st.integers(-9999, 9999).map(lambda n: f" {n} ")  # numbers as strings
)
BANDWIDTH = st.fixed_dictionaries(
    {},
    optional={
        "band_width_id": maybe(st.sampled_from(["b1", "b2", ""])),
        "band_width_name": maybe(TEXT),
        "band_width_size": maybe(NUMBER),
        "band_width_charge_mode": maybe(st.integers(-1, 2)),
        "band_width_share_type": maybe(st.integers(-1, 2)),
    },
)
VOLUME = st.fixed_dictionaries(
    {},
    optional={
        "volume_id": maybe(st.sampled_from(["v1", "v2", ""])),
        "volume_name": maybe(TEXT),
        "volume_size": maybe(NUMBER),
        "volume_type": maybe(TEXT),
    },
)
# Few ids, so that servers repeat; and one too long for a label, in two variants.
SERVER_ID = st.sampled_from(["a", "b", " c ", "", "x" * 3000 + "1", "x" * 3000 + "2"]) | TEXT
SERVER = st.fixed_dictionaries(
    {},
    optional={
        "server_id": maybe(SERVER_ID),
        "server_name": maybe(TEXT | st.just("n" * 5000)),
        "availability_zone": maybe(TEXT),
        "network_version": maybe(st.sampled_from(["v1", "v2"])),
        "status": maybe(NUMBER),
        "keypair_name": maybe(TEXT),
        "vpc_id": maybe(TEXT),
        "addresses": maybe(st.lists(st.dictionaries(TEXT, JSON_LEAF, max_size=2), max_size=3)),
        "create_time": maybe(TIMES),
        "update_time": maybe(TIMES),
        "band_widths": maybe(st.lists(BANDWIDTH, max_size=3)),
        "volumes": maybe(st.lists(VOLUME, max_size=3)),
    },
)
ANSWER = SERVER | JSON


def has_identity(answer: object) -> bool:
    if not isinstance(answer, Mapping):
        return False
    server_id = answer.get("server_id")
    if isinstance(server_id, bool):
        return True  # "true"/"false": odd, but an identity
    if isinstance(server_id, int) or (isinstance(server_id, float) and math.isfinite(server_id)):
        return True
    return isinstance(server_id, str) and bool(server_id.strip())


@settings(max_examples=200, deadline=None)
@given(ANSWER)
def test_parsing_raises_only_parse_error_and_only_without_identity(answer: object) -> None:
    try:
        server = parse_server(answer)
    except ParseError:
        assert not has_identity(answer)
    else:
        assert has_identity(answer) and server.server_id
        server.server_id.encode("utf-8")  # label-safe: no lone surrogate left
        server.server_name.encode("utf-8")
    try:
        details = parse_details(answer)
    except ParseError:
        assert not isinstance(answer, Mapping)
    else:
        for name in [b.name for b in details.bandwidths] + [v.name for v in details.volumes]:
            name.encode("utf-8")


def render(snapshot: Snapshot, accept: str) -> str:
    exposition = Exposition(
        lambda views: [ServerCollector(lambda: views)],
        CollectorRegistry(auto_describe=False),
    )
    return exposition.render((TargetView("region-1", "project", snapshot),), accept)[0].decode(
        "utf-8"
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(SERVER | JSON, st.booleans()), max_size=6), st.booleans())
def test_any_fleet_renders_an_exposition_both_parsers_accept(
    entries: list[tuple[object, bool]], up: bool
) -> None:
    records: list[ServerRecord] = []
    for answer, with_details in entries:
        try:
            server = parse_server(answer)
        except ParseError:
            continue
        details: ServerDetails | None = parse_details(answer) if with_details else None
        records.append(ServerRecord(server, details))
    snapshot = Snapshot(tuple(records), up, 1.0, 0.1, 1.0, 1.0, generation=1)
    expected_ids = {label_value(r.server.server_id) for r in records}
    for accept, parse in (
        ("application/openmetrics-text; version=1.0.0", openmetrics_families),
        ("text/plain", text_families),
    ):
        families = list(parse(render(snapshot, accept)))
        names = [f.name for f in families]
        assert len(names) == len(set(names))
        for family in families:
            label_sets = [
                (sample.name, tuple(sorted(sample.labels.items()))) for sample in family.samples
            ]
            assert len(label_sets) == len(set(label_sets)), family.name
            assert all(math.isfinite(sample.value) for sample in family.samples), family.name
        state = next(f for f in families if f.name == "cph_server_state")
        assert {s.labels["server_id"] for s in state.samples} == expected_ids
        assert len(state.samples) == 9 * len(expected_ids)
