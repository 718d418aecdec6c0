"""--shard INDEX/COUNT: several replicas split one project's servers, without overlap or gaps.

A server belongs to shard crc32(server_id) mod COUNT. CRC-32 is stable across processes,
platforms and Python versions (the built-in hash() of a str is salted per process), cheap,
and spreads the API's hex server IDs evenly.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

# INDEX is a number or a name ending in -NUMBER: a StatefulSet pod's name (cph-exporter-2),
# so that `--shard=$(POD_NAME)/3` gives each pod the shard of its ordinal.
_SHARD = re.compile(r"^\s*(?:[a-z0-9][-a-z0-9.]*-)?(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 1024  # far beyond any real fleet; catches typos like 0/30000


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"COUNT must be between 1 and {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"INDEX must be from 0 to COUNT-1 ({self.count - 1}), not {self.index}"
            )

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, server_id: str) -> bool:
        if self.count == 1:
            return True
        # surrogatepass: a lone surrogate in the JSON must not crash a refresh.
        return zlib.crc32(server_id.encode("utf-8", "surrogatepass")) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard()  # one replica exports every server


def parse_shard(text: str) -> Shard:
    """ "1/3" or "cph-exporter-1/3" -> Shard(1, 3); raises ValueError saying what is wrong."""
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(
            f"expected INDEX/COUNT such as 0/3 or POD-NAME-ORDINAL/COUNT, not {text!r}"
        )
    return Shard(int(match[1]), int(match[2]))
