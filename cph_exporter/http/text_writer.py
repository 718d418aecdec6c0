"""The snapshot part's families written directly, byte for byte as prometheus_client writes them.

prometheus_client's encoders format every series on its own: a sorted dict of labels, each
value escaped, the number through `floatToGoString`. At 10,000 servers that is seconds per
form. A `RowGauge` keeps its series as rows of label values in the order of its label
names, so one format template per family puts them in prometheus_client's (sorted) order,
and the whole family is checked for escaping at once: when the written series hold no
backslash and no more quotes and newlines than the template's own, no value needed
escaping and the text stands; otherwise the family is written again with every value
escaped. Numbers repeat (0.0, 1.0, sizes), so each distinct one is formatted once.

Both formats write a gauge's series the same way; they differ only in the HELP escaping
(the text format escapes backslash and newline, OpenMetrics also the double quote), as a
RowGauge has no unit. Any other family, or a name the writer does not know to be plain,
goes through prometheus_client's own encoder.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cph_exporter.metrics.common import RowGauge

_EOF = b"# EOF\n"
# Names that every escaping scheme leaves as they are (no colon: OpenMetrics writes one of a
# sample's name differently from its HELP line's).
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_ZERO = "0.0\n"


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


def format_values(values: Sequence[float]) -> list[str]:
    """`floatToGoString` of each value and a newline, computing each distinct value once."""
    known: dict[float, str] = {0.0: _ZERO}  # -0.0 finds this entry too: told apart below
    texts = []
    for value in values:
        text = known.get(value)
        if text is None:
            text = floatToGoString(value) + "\n"  # type: ignore[no-untyped-call]
            if value == value:  # NaN equals nothing, not even itself: never found again
                known[value] = text
        elif text is _ZERO and math.copysign(1.0, value) < 0:
            text = "-0.0\n"
        texts.append(text)
    return texts


def _series(family: RowGauge, template: _Template) -> str | None:
    """The family's series lines, or None when its rows do not match its label names."""
    width = len(family.labelnames)
    rows = family.label_values
    if len(rows) != len(family.values) or not set(map(len, rows)) <= {width}:
        return None
    values = format_values(family.values)
    head, in_order = template.head, template.labels_in_order
    if in_order is None:
        return "".join([head + value for value in values])
    line = head.__mod__
    text = "".join(
        [line(in_order(labels)) + value for labels, value in zip(rows, values, strict=True)]
    )
    quotes, lines = 2 * width * len(rows), len(rows)
    if text.count('"') == quotes and text.count("\n") == lines and "\\" not in text:
        return text  # no value held a quote, a backslash or a newline
    escaped = (tuple(map(escape_label_value, labels)) for labels in rows)
    return "".join(
        [line(in_order(labels)) + value for labels, value in zip(escaped, values, strict=True)]
    )


def _writer(openmetrics: bool, fallback: Callable[[Collector], bytes]) -> Callable[[Metric], bytes]:
    def write(family: Metric) -> bytes:
        series = None
        if isinstance(family, RowGauge) and family.type == "gauge":
            template = _template(family.name, family.labelnames)
            series = None if template is None else _series(family, template)
        if series is None:
            text = fallback(_OneFamily(family))
            # OpenMetrics allows one EOF marker, at the very end of the whole exposition.
            return text[: -len(_EOF)] if text.endswith(_EOF) else text
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            doc = doc.replace('"', r"\"")
        # A RowGauge has no unit, so OpenMetrics writes no UNIT line for it.
        head = f"# HELP {family.name} {doc}\n# TYPE {family.name} gauge\n"
        return (head + series).encode("utf-8")

    return write


def text_writer(fallback: Callable[[Collector], bytes]) -> Callable[[Metric], bytes]:
    """One family in the text format 0.0.4, as `fallback` (generate_latest) writes it."""
    return _writer(False, fallback)


def openmetrics_writer(fallback: Callable[[Collector], bytes]) -> Callable[[Metric], bytes]:
    """One family in OpenMetrics 1.0.0 without the final EOF, as `fallback` writes it."""
    return _writer(True, fallback)
