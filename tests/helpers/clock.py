"""A cache clock that tests move forward instead of sleeping through a TTL."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, ClassVar


class TtlClock:
    """Monotonic time plus an offset: TTLs run out by themselves as usual, and `skip()` makes
    them run out at once, whatever the load on the machine."""

    # The clock each test exporter counts its TTLs with (set by the make_exporter fixture).
    of: ClassVar[weakref.WeakKeyDictionary[Any, TtlClock]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def skip(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def expire(exporter: Any) -> None:
    """Make the exporter's cached snapshot outlive its TTL now."""
    TtlClock.of[exporter].skip(exporter.config.cache_ttl + 0.05)
