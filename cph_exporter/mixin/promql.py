"""Label matchers added to the exporter's series in PromQL, without a PromQL parser.

The queries these functions rewrite are the mixin's own, so the subset is known: metric
names are `cph_*` (and Prometheus' own `up`), optionally followed by `{matchers}`; no string
literal holds a metric name.
"""

from __future__ import annotations

import re

# A metric name not preceded by a word character, a quote, `$` or `.`, with its matchers.
_SELECTOR = re.compile(r'(?<![\w"$.])(cph_[a-z0-9_]+|up)\b(\{[^}]*\})?(?![\w(])')


def add_matchers(
    expr: str,
    matchers: str,
    only: frozenset[str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> str:
    """Put `matchers` (e.g. `job="cph"`) first in every selector of `expr`'s metrics
    (of `only` those, if given; never of `skip`)."""
    matchers = matchers.strip().strip(",")
    if not matchers:
        return expr

    def replace(match: re.Match[str]) -> str:
        name, braces = match.group(1), match.group(2)
        if (only is not None and name not in only) or name in skip:
            return match.group(0)
        inner = braces[1:-1].strip() if braces else ""
        return f"{name}{{{matchers},{inner}}}" if inner else f"{name}{{{matchers}}}"

    return _SELECTOR.sub(replace, expr)


def restrict(expr: str, metrics: frozenset[str], condition: str) -> str:
    """Every instant selector of `metrics` in `expr` as `(selector and on (...) condition)`:
    `condition` names the series to keep (`on (job, instance, server_id) cph_server_info{...}`).
    Range selectors are left alone."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        following = expr[match.end() : match.end() + 1]
        if name not in metrics or following == "[":
            return match.group(0)
        return f"({match.group(0)} and {condition})"

    return _SELECTOR.sub(replace, expr)


def matchers_labels(matchers: str) -> dict[str, str]:
    """The equality matchers of `matchers`, as absent() turns them into labels."""
    equality = re.sub(r'\w+\s*(!=|=~|!~)\s*"[^"]*"', "", matchers)
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', equality))
