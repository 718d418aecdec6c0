"""Random CPH answers (hypothesis strategies): plausible fields most of the time, any JSON
otherwise, with the characters an exposition must escape made likely."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
