"""The metrics table (docs/metrics.md) and the exporter's exposition must say the same thing."""

from __future__ import annotations

import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.metrics.common import IDENTITY
from cph_exporter.simulator import (
    CphSimulator,
    generate_encode_servers,
    generate_phone_models,
    generate_scheduled_events,
)
from tests.helpers.fleet import fleet
from tests.helpers.scrape import ExporterFactory, scrape

METRICS_DOC = Path(__file__).parent.parent / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (\w+) \|[^|]*\|([^|]*)\|[^|]+\|$")
_HISTOGRAM_LABELS = {"le"}


def documented() -> dict[str, tuple[str, set[str]]]:
    """metric -> (type, labels) from the metrics table of docs/metrics.md."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if not match:
            continue
        name, kind, label_cell = match.groups()
        # Parentheses hold values (`bandwidth`/`traffic`) or "(no identity)", not label names.
        labels = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", label_cell)))
        if "(no identity)" not in label_cell:
            labels |= set(IDENTITY)
        rows[name] = (kind, labels)
    return rows


def exposed(text: str) -> dict[str, tuple[str, set[str]]]:
    families: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - _HISTOGRAM_LABELS
        families[name] = (family.type, labels)
    return families


def test_metrics_table_matches_the_exposition(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    simulator.faults.broken_details = {}
    simulator.set_scheduled_events(generate_scheduled_events(fleet(), time.time()))
    simulator.set_encode_servers(generate_encode_servers(fleet()))
    simulator.set_phone_models(generate_phone_models(fleet()))
    every = dict.fromkeys(("scheduled_events", "encode_servers", "phone_capacity"), True)
    text = scrape(make_exporter(simulator, phone_details=True, **every))
    docs = documented()
    assert len(docs) >= 18, "the metrics table was not found in docs/metrics.md"
    # Every family, the exporter's and the standard process_* and python_* ones alike.
    real = exposed(text)
    assert sorted(real) == sorted(docs)
    for name, (kind, labels) in docs.items():
        assert real[name] == (kind, labels), name
