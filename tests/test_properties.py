"""Random JSON shapes through the parser and the collector (hypothesis).

Whatever the API sends, parsing raises nothing but ParseError (and that only for entries
without an identity), and the rendered exposition always parses, in both formats, with
unique label sets in every family and only finite values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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
from tests.helpers.answers import JSON, SERVER

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
