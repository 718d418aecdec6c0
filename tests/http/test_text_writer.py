"""The direct writer against prometheus_client's encoders: the same bytes for any family."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from cph_exporter.cph.models import ParseError, parse_details, parse_server
from cph_exporter.http.formats import OPENMETRICS, TEXT
from cph_exporter.http.text_writer import ROWS_PER_PIECE
from cph_exporter.metrics.common import RowGauge, StateGauge
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot
from cph_exporter.refresh.targets import TargetView
from tests.helpers.answers import SERVER


class Only(Collector):
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def library(family: Metric) -> tuple[bytes, bytes]:
    """What prometheus_client writes for the family: text, and OpenMetrics without its EOF."""
    openmetrics = generate_openmetrics(Only(family))
    assert openmetrics.endswith(b"# EOF\n")
    return generate_latest(Only(family)), openmetrics[: -len(b"# EOF\n")]


def written(family: Metric) -> tuple[bytes, bytes]:
    return b"".join(TEXT.write_family(family)), b"".join(OPENMETRICS.write_family(family))


# Valid label values: any character but a lone surrogate (the parser has turned those into
# U+FFFD before a value reaches a label), the escaped ones likely, and 2 KiB values.
LABEL_VALUE = st.text(
    st.characters(codec="utf-8", include_characters='"\\\n\r\t\x00{}=,#%'),
    max_size=10,
) | st.sampled_from(["", "%s", "{0}", "\\n", 'a"b', "\ufffd", "ü" * 1024, "x" * 2048])
LABEL_NAMES = st.lists(
    st.sampled_from(["server_id", "a", "Z", "_x", "state", "le", "b1", "region", "zz_9"]),
    unique=True,
    max_size=6,
)
VALUE = (
    st.floats()  # NaN, the infinities, -0.0 and subnormals included
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 0.0, -0.0, 1.0, 1e6, 123456.0, 1234567.0, 1.7e9, 1e22, 5e-324])
)
HELP = st.text(st.characters(codec="utf-8", include_characters='"\\\n'), max_size=20)


@st.composite
def row_gauges(draw: st.DrawFn) -> RowGauge:
    names = tuple(draw(LABEL_NAMES))
    family = RowGauge("cph_test_family", draw(HELP), labels=names)
    rows = draw(
        st.lists(
            st.tuples(st.lists(LABEL_VALUE, min_size=len(names), max_size=len(names)), VALUE),
            max_size=8,
        )
    )
    for labels, value in rows:
        family.add_metric(labels, value)
    return family


@settings(max_examples=400, deadline=None)
@given(row_gauges())
def test_any_row_gauge_is_written_as_prometheus_client_writes_it(family: RowGauge) -> None:
    assert written(family) == library(family)


@st.composite
def state_gauges(draw: st.DrawFn) -> StateGauge:
    names = draw(LABEL_NAMES)
    state_label = draw(st.sampled_from(["state", "zz_state", "a_state"]))
    names = [name for name in names if name != state_label]
    states = draw(st.lists(LABEL_VALUE, min_size=1, max_size=4))
    family = StateGauge("cph_test_states", draw(HELP), names, state_label, states)
    for labels in draw(st.lists(st.lists(LABEL_VALUE, min_size=len(names), max_size=len(names)))):
        family.add_states(labels, draw(st.lists(VALUE, min_size=len(states), max_size=len(states))))
    return family


@settings(max_examples=300, deadline=None)
@given(state_gauges())
def test_any_state_gauge_is_written_as_prometheus_client_writes_it(family: StateGauge) -> None:
    assert written(family) == library(family)


def test_a_state_gauge_written_in_pieces_is_one_text() -> None:
    family = StateGauge("cph_test", "doc", ("server_id", "server_name"), "state", ("a", "b", "c"))
    for n in range(3 * ROWS_PER_PIECE):  # several pieces, escaping needed in some only
        name = 'odd"name' if n % 5000 == 0 else f"server-{n}"
        family.add_states((f"id-{n}", name), (0, 1, n))
    pieces = list(TEXT.write_family(family))
    assert len(pieces) > 3
    assert b"".join(pieces) == library(family)[0]


def test_a_state_gauge_tells_negative_zero_from_zero() -> None:
    family = StateGauge("cph_test", "doc", ("a",), "state", ("x", "y"))
    family.add_states(("v",), (0.0, 2))
    family.add_states(("w",), (-0.0, 2))
    text = written(family)[0]
    assert text == library(family)[0]
    assert text.endswith(b'cph_test{a="w",state="x"} -0.0\ncph_test{a="w",state="y"} 2.0\n')


def test_a_row_gauge_written_in_pieces_is_one_text() -> None:
    family = RowGauge("cph_test", "doc", labels=("b", "a"))
    for n in range(2 * ROWS_PER_PIECE + 7):
        family.add_metric(
            [f"b{n}", "new\nline" if n == ROWS_PER_PIECE + 3 else "a"], -0.0 if n == 9 else n
        )
    pieces = list(OPENMETRICS.write_family(family))
    assert len(pieces) == 4  # HELP and TYPE, then three pieces of series
    assert b"".join(pieces) == library(family)[1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(SERVER, st.booleans()), max_size=6), st.booleans())
def test_any_snapshot_is_written_as_prometheus_client_writes_it(
    entries: list[tuple[object, bool]], up: bool
) -> None:
    records = []
    for answer, with_details in entries:
        try:  # the parser turns lone surrogates into U+FFFD and cuts nothing
            server = parse_server(answer)
        except ParseError:
            continue
        records.append(ServerRecord(server, parse_details(answer) if with_details else None))
    snapshot = Snapshot(tuple(records), up, 1.0, 0.1, 1.0, 1.0, generation=1)
    views = (TargetView('re"gion\\', "pro\nject", snapshot),)
    for family in ServerCollector(lambda: views).collect():
        assert isinstance(family, (RowGauge, StateGauge))
        assert written(family) == library(family), family.name


def test_the_awkward_values_are_escaped_in_both_formats() -> None:
    family = RowGauge("cph_test", 'say "hi"\\\nbye', labels=("b", "a"))
    family.add_metric(['q"uote', "back\\slash\nnew\ufffd"], -0.0)
    family.add_metric(["plain", "plain"], math.inf)
    text, openmetrics = written(family)
    assert (text, openmetrics) == library(family)
    assert text.decode() == (
        '# HELP cph_test say "hi"\\\\\\nbye\n# TYPE cph_test gauge\n'
        'cph_test{a="back\\\\slash\\nnew\ufffd",b="q\\"uote"} -0.0\n'
        'cph_test{a="plain",b="plain"} +Inf\n'
    )
    assert openmetrics.decode().startswith('# HELP cph_test say \\"hi\\"\\\\\\nbye\n')


def test_other_families_are_left_to_the_library() -> None:
    counter = CounterMetricFamily("cph_test", "doc", labels=["a"])
    counter.add_metric(["x"], 2)
    reserved = RowGauge("cph_test", "doc", labels=("__reserved",))
    reserved.add_metric(["x"], 1)
    for family in (counter, reserved):
        assert written(family) == library(family)


@pytest.mark.parametrize("labels", [["one"], ["one", "two", "three"]])
def test_a_row_of_the_wrong_width_fails_loudly(labels: list[str]) -> None:
    family = RowGauge("cph_test", "doc", labels=("a", "b"))
    family.add_metric(["x", "y"], 1)
    family.add_metric(labels, 1)
    with pytest.raises(ValueError):
        b"".join(TEXT.write_family(family))


def test_row_gauge_samples_are_the_library_gauge_samples() -> None:
    rows, plain = (
        RowGauge("cph_t", "d", labels=("b", "a")),
        GaugeMetricFamily("cph_t", "d", labels=("b", "a")),
    )
    for family in (rows, plain):
        family.add_metric(["1", "2"], 3.0)
        family.add_metric(("4", "5"), 6)
    assert rows.samples == plain.samples
    with pytest.raises(ValueError):
        rows.add_metric(["1", "2"], 1.0, timestamp=5.0)
