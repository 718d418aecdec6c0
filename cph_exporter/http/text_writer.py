"""The snapshot part's families written directly, byte for byte as prometheus_client writes them.

prometheus_client's encoders format every series on its own: a sorted dict of labels, each
value escaped, the number through `floatToGoString`. At 10,000 servers that is seconds per
form. A `RowGauge` keeps its series as rows of label values in the order of its label
names, so one format template per family puts them in prometheus_client's (sorted) order,
and every step over the rows is a C-level map: no Python frame runs per series. A
`StateGauge` keeps one row per server and a tuple of values per state: each server's labels
are formatted once and joined with the rest of each of its series. Rows are written a piece
of a few thousand series at a time, so no family's whole text is ever held; a piece whose
label values hold a backslash, a quote or a newline is written with every value escaped.
Numbers repeat (0.0, 1.0, sizes), so each distinct one is formatted once.

Both formats write a gauge's series the same way; they differ only in the HELP escaping
(the text format escapes backslash and newline, OpenMetrics also the double quote), as a
RowGauge has no unit. Any other family, or a name the writer does not know to be plain,
goes through prometheus_client's own encoder.
"""

from __future__ import annotations

import array
import functools
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cph_exporter.metrics.common import RowGauge, StateGauge

_EOF = b"# EOF\n"
# Names that every escaping scheme leaves as they are (no colon: OpenMetrics writes one of a
# sample's name differently from its HELP line's).
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_ZERO = "0.0\n"
_COMMON_TEXTS = {0.0: _ZERO, 1.0: "1.0\n"}  # the values of every state set
_NEGATIVE_ZERO = array.array("d", [-0.0]).tobytes()
# Series written, checked for escaping and encoded at a time: at 10,000 servers a family holds
# over 100,000 series, and its whole text, held as str and as bytes at once, would be tens of MB.
ROWS_PER_PIECE = 4096


class _OneFamily(Collector):
    """One metric family, in the shape prometheus_client's encoders take."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _plain_label_name(name: str) -> bool:
    return _PLAIN_NAME.match(name) is not None and not name.startswith("__")


@dataclass(frozen=True)
class _Template:
    """One family's series line: `head % labels_in_order(row) + value`, or `head + value`."""

    head: str
    labels_in_order: Callable[[Sequence[str]], object] | None  # None: no labels


@functools.lru_cache(maxsize=256)
def _template(name: str, labelnames: tuple[str, ...]) -> _Template | None:
    plain = all(map(_plain_label_name, labelnames)) and len(set(labelnames)) == len(labelnames)
    if _PLAIN_NAME.match(name) is None or not plain:
        return None
    if not labelnames:
        return _Template(name + " ", None)
    order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
    labels = ",".join(f'{labelnames[i]}="%s"' for i in order)
    # itemgetter of one index gives the value itself, which `%` takes as its one argument.
    return _Template(f"{name}{{{labels}}} ", operator.itemgetter(*order))


def format_values(values: Sequence[float], known: dict[float, str]) -> list[str]:
    """`floatToGoString` of each value and a newline; `known` holds the texts of earlier values.

    Values repeat (0.0, 1.0, sizes), so most are found in `known` by one C-level pass. Only
    -0.0 would be found under 0.0's text (they are equal): a rare chunk that may hold one is
    looked at value by value.
    """
    texts: list[str | None] = list(map(known.get, values))
    if None not in texts and not _may_hold_negative_zero(values):
        return texts  # type: ignore[return-value]  # no None left
    for index, value in enumerate(values):
        text = texts[index]
        if text is None or (value == 0 and math.copysign(1.0, value) < 0):
            text = floatToGoString(value) + "\n"  # type: ignore[no-untyped-call]
            # NaN equals nothing, not even itself, and -0.0 equals 0.0: keep neither.
            if value == value and value != 0:
                known[value] = text
            texts[index] = text
    return texts  # type: ignore[return-value]


def _may_hold_negative_zero(values: Sequence[float]) -> bool:
    try:
        raw = array.array("d", values).tobytes()
    except (OverflowError, TypeError):  # an int beyond a double: look at each value
        return True
    return _NEGATIVE_ZERO in raw  # may match across two values too: then each is looked at


def _series(family: RowGauge, template: _Template) -> Iterator[str] | None:
    """The family's series lines a piece at a time, or None when its rows do not match its
    label names (checked before the first piece, so the library can write it instead)."""
    width = len(family.labelnames)
    rows, values = family.label_values, family.values
    if len(rows) != len(values) or not set(map(len, rows)) <= {width}:
        return None
    return _pieces(rows, values, template)


def _pieces(
    rows: Sequence[Sequence[str]], values: Sequence[float], template: _Template
) -> Iterator[str]:
    known = dict(_COMMON_TEXTS)
    head, in_order = template.head, template.labels_in_order
    for start in range(0, len(values), ROWS_PER_PIECE):
        texts = format_values(values[start : start + ROWS_PER_PIECE], known)
        if in_order is None:
            yield "".join(map(operator.add, itertools.repeat(head, len(texts)), texts))
            continue
        chunk = rows[start : start + ROWS_PER_PIECE]
        if _need_escaping(chunk):
            chunk = [tuple(map(escape_label_value, labels)) for labels in chunk]
        # Every step a C-level map: no Python frame per series.
        yield "".join(map(operator.add, map(head.__mod__, map(in_order, chunk)), texts))


def _need_escaping(rows: Sequence[Sequence[str]]) -> bool:
    """Whether any label value holds a character that the formats escape."""
    values = "".join(itertools.chain.from_iterable(rows))
    return "\\" in values or '"' in values or "\n" in values


@functools.lru_cache(maxsize=256)
def _state_template(name: str, labelnames: tuple[str, ...]) -> _Template | None:
    """A StateGauge's series up to its state value: `head % labels_in_order(labels)`.

    Only when the state label sorts after every other: then each server's labels come first
    in every one of its series, and its series are that text joined with each state's rest.
    """
    template = _template(name, labelnames)
    if template is None or labelnames[-1] != max(labelnames):
        return None
    others = _template(name, labelnames[:-1])
    if others is None:
        return None
    if others.labels_in_order is None:
        return _Template(f'{name}{{{labelnames[-1]}="', None)
    return _Template(f'{others.head[:-2]},{labelnames[-1]}="', others.labels_in_order)


def _state_series(family: StateGauge) -> Iterator[str] | None:
    """A StateGauge's series a piece at a time, or None when it cannot be written so."""
    template = _state_template(family.name, family.labelnames)
    width, states = len(family.labelnames), len(family.states)
    heads, values = family.label_values, family.state_values
    if template is None or len(heads) != len(values) or not states:
        return None
    if not set(map(len, heads)) <= {width - 1} or not set(map(len, values)) <= {states}:
        return None
    return _state_pieces(family, template)


def _state_pieces(family: StateGauge, template: _Template) -> Iterator[str]:
    names = [escape_label_value(state) + '"} ' for state in family.states]
    known = dict(_COMMON_TEXTS)

    def rests(values: tuple[float, ...]) -> list[str]:
        # The texts to join a server's labels with: "" first, then each state's rest.
        texts = format_values(values, known)
        return ["", *map(operator.add, names, texts)]

    head, in_order = template.head, template.labels_in_order
    per_piece = max(1, ROWS_PER_PIECE // len(names))
    for start in range(0, len(family.label_values), per_piece):
        heads = family.label_values[start : start + per_piece]
        values = family.state_values[start : start + per_piece]
        # Servers share tuple objects (every normal server's states are one tuple), so texts
        # are looked up by object: by value, -0.0 would find the text of 0.0.
        objects = list(map(id, values))
        by_object = {
            key: rests(row) for key, row in dict(zip(objects, values, strict=True)).items()
        }
        joins = list(map(by_object.__getitem__, objects))
        if in_order is None:
            yield "".join(map(head.join, joins))
            continue
        if _need_escaping(heads):
            heads = [tuple(map(escape_label_value, labels)) for labels in heads]
        yield "".join(map(str.join, map(head.__mod__, map(in_order, heads)), joins))


def _writer(
    openmetrics: bool, fallback: Callable[[Collector], bytes]
) -> Callable[[Metric], Iterator[bytes]]:
    def write(family: Metric) -> Iterator[bytes]:
        series = None
        if isinstance(family, RowGauge) and family.type == "gauge":
            template = _template(family.name, family.labelnames)
            series = None if template is None else _series(family, template)
        elif isinstance(family, StateGauge) and family.type == "gauge":
            series = _state_series(family)
        if series is None:
            text = fallback(_OneFamily(family))
            # OpenMetrics allows one EOF marker, at the very end of the whole exposition.
            return iter((text[: -len(_EOF)] if text.endswith(_EOF) else text,))
        return _written(family, openmetrics, series)

    return write


def _written(family: Metric, openmetrics: bool, series: Iterator[str]) -> Iterator[bytes]:
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        doc = doc.replace('"', r"\"")
    # A RowGauge has no unit, so OpenMetrics writes no UNIT line for it.
    yield f"# HELP {family.name} {doc}\n# TYPE {family.name} gauge\n".encode()
    for text in series:
        yield text.encode("utf-8")


def text_writer(fallback: Callable[[Collector], bytes]) -> Callable[[Metric], Iterator[bytes]]:
    """One family in the text format 0.0.4, as `fallback` (generate_latest) writes it."""
    return _writer(False, fallback)


def openmetrics_writer(
    fallback: Callable[[Collector], bytes],
) -> Callable[[Metric], Iterator[bytes]]:
    """One family in OpenMetrics 1.0.0 without the final EOF, as `fallback` writes it."""
    return _writer(True, fallback)
