"""What every alert rule is made of: the rule with its severity, `for` and runbook link, and
the words its annotations share (durations in words, the server named)."""

from __future__ import annotations

from typing import Any

from cph_exporter.mixin.promql import add_matchers
from cph_exporter.mixin.settings import DURATION, MixinConfig

_UNITS = {"ms": "millisecond", "s": "second", "m": "minute", "h": "hour", "d": "day"}
_UNITS |= {"w": "week", "y": "year"}
_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

SERVER = (
    "{{ $labels.server_name }} (server_id {{ $labels.server_id }}, availability zone"
    " {{ $labels.availability_zone }})"
)
SERVER_SHORT = (
    "{{ $labels.server_name }} ({{ $labels.server_id }}) in {{ $labels.availability_zone }}"
)


def human(duration: str) -> str:
    """5m -> "5 minutes", 1h -> "an hour"."""
    match = DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a duration: {duration!r}")
    count, unit = int(match[1]), _UNITS[match[2]]
    if count == 1:
        return f"an {unit}" if unit == "hour" else f"a {unit}"
    return f"{count} {unit}s"


def number(value: float) -> str:
    if float(value).is_integer():
        return _WORDS.get(int(value), str(int(value)))
    return f"{value:g}"


def anchor(alert: str) -> str:
    """The runbook section's anchor: its heading is the alert name."""
    return alert.lower()


def rule(
    config: MixinConfig, alert: str, expr: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": add_matchers(expr, config.selector),
        "for": config.for_(alert),
        "labels": {"severity": config.severity(alert)},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{config.runbook_url}#{anchor(alert)}",
        },
    }
