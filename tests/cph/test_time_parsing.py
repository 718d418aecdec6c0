"""The slicing time parser against the strptime one it stands in for."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cph_exporter.cph.models import parse_time, strptime_time

_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ")
_moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))


def old(value: object) -> float | None:
    """parse_time as it was: strptime on the stripped text, each format in turn."""
    return strptime_time(value.strip()) if isinstance(value, str) else None


@settings(max_examples=500, deadline=None)
@given(moment=_moments, fmt=st.sampled_from(_FORMATS), digits=st.integers(1, 6))
def test_documented_forms_parse_as_strptime_does(moment: datetime, fmt: str, digits: int) -> None:
    text = moment.strftime(fmt)
    if fmt.endswith(".%fZ"):
        text = text[: 20 + digits] + "Z"  # the API sends 1 to 6 digits of a second
    if moment.year < 1000:
        text = text.zfill(len(text) + 4 - len(str(moment.year)))  # strftime may not pad %Y
    assert parse_time(text) == old(text)
    assert parse_time(text) is not None or moment.year < 1000  # the documented forms parse


_alphabet = st.sampled_from("0123456789-: TZ.+\u0662\u00b2x\t")


@settings(max_examples=2000, deadline=None)
@given(
    template=st.sampled_from(
        ["2021-02-18T11:48:40Z", "2021-02-18 11:48:40", "2021-02-18T11:48:40.123456Z"]
    ),
    edits=st.lists(st.tuples(st.integers(0, 27), _alphabet), max_size=3),
)
@example(template="2021-02-18T11:48:40Z", edits=[(5, "1"), (6, "3")])  # month 13
@example(template="2021-02-18T11:48:40Z", edits=[(18, "\u0662")])  # an Arabic-Indic digit
@example(template="2021-02-18T11:48:40Z", edits=[(17, "6"), (18, "0")])  # second 60
def test_mangled_forms_parse_as_strptime_does(template: str, edits: list[tuple[int, str]]) -> None:
    chars = list(template)
    for index, char in edits:
        if index < len(chars):
            chars[index] = char
        else:
            chars.append(char)
    text = "".join(chars)
    assert parse_time(text) == old(text)


@settings(max_examples=1000, deadline=None)
@given(text=st.text(max_size=30))
def test_any_text_parses_as_strptime_does(text: str) -> None:
    assert parse_time(text) == old(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-02-18T11:48:40Z", 1613648920.0),
        ("2021-02-18 11:48:40", 1613648920.0),
        (" 2021-02-18 11:48:40\n", 1613648920.0),
        ("2021-02-18T11:48:40.5Z", 1613648920.5),
        ("2021-02-18T11:48:40.000001Z", 1613648920.000001),
        ("2021-2-18 11:48:40", 1613648920.0),  # single digits: the tolerant parser's job
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=timezone.utc).timestamp()),
        ("2023-02-29T00:00:00Z", None),
        ("2021-02-18T11:48:40.1234567Z", None),
        ("2021-02-18T11:48:40", None),
        ("2021-02-18 11:48:40Z", None),
    ],
)
def test_examples(text: str, expected: float | None) -> None:
    assert parse_time(text) == expected
    assert old(text) == expected
