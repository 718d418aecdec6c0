"""A global cap on the CPH API request rate, slowed down by throttling answers.

Huawei's API gateway throttles per user (HTTP 429, APIGW.0308) and does not publish CPH's
limits, so every request the client makes first takes a token from one thread-safe bucket.
A 429 halves the rate (never below a floor) and drops the saved-up burst; a run of successes
raises it again by a fixed step up to the configured maximum (AIMD, as TCP does). A request
whose token would come after its deadline is refused at once instead of waiting in vain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_FLOOR = 0.5  # requests per second: below Huawei's documented 200 per 5 minutes example


@dataclass(frozen=True, slots=True)
class Permit:
    """Admission of one request; remembers the rate epoch it was admitted under."""

    epoch: int


class RateLimiter:
    """Token bucket of `rate` requests per second, holding at most `burst_seconds` of them.

    Tokens are reserved under the lock and waited for outside it, so concurrent callers are
    spaced evenly and none of them blocks the others while sleeping.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst_seconds: float = 1.0,
        floor: float | None = None,
        recover_after: int = 20,
        recover_step: float | None = None,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be greater than zero")
        if burst_seconds <= 0 or recover_after < 1:
            raise ValueError("burst_seconds must be > 0 and recover_after >= 1")
        self.max_rate = rate
        self.floor = min(rate, DEFAULT_FLOOR if floor is None else floor)
        if not self.floor > 0:
            raise ValueError("floor must be greater than zero")
        self._burst_seconds = burst_seconds
        self._recover_after = recover_after
        # Ten steps from the floor back to the maximum, whatever the maximum is.
        self._recover_step = rate / 10 if recover_step is None else recover_step
        self._adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = rate
        self._tokens = self._capacity()
        self._updated = clock()
        self._epoch = 0
        self._successes = 0

    @property
    def rate(self) -> float:
        """The rate in force now: the maximum, or less after throttling."""
        with self._lock:
            return self._rate

    def acquire(self, deadline: float | None = None) -> Permit | None:
        """Wait for a token; None, without waiting, if it would come after `deadline`."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            if deadline is not None and now + wait > deadline:
                return None
            self._tokens -= 1  # may go negative: a reservation later callers queue behind
            permit = Permit(self._epoch)
        if wait > 0:
            self._sleep(wait)
        return permit

    def throttled(self, permit: Permit) -> None:
        """The API refused a request admitted by `permit` as throttled: slow down."""
        with self._lock:
            self._successes = 0
            # Requests already in flight when the rate was cut answer 429 too: one cut per
            # epoch, or a burst of them would send the rate straight to the floor.
            if not self._adaptive or permit.epoch != self._epoch:
                return
            self._refill(self._clock())
            self._rate = max(self.floor, self._rate / 2)
            self._tokens = min(self._tokens, 0.0)  # no saved-up burst right after a 429
            self._epoch += 1

    def succeeded(self, permit: Permit) -> None:
        """The API answered a request without throttling it: after a run of these, speed up."""
        with self._lock:
            if not self._adaptive or permit.epoch != self._epoch or self._rate >= self.max_rate:
                return
            self._successes += 1
            if self._successes < self._recover_after:
                return
            self._successes = 0
            self._refill(self._clock())
            self._rate = min(self.max_rate, self._rate + self._recover_step)

    def _capacity(self) -> float:
        return max(1.0, self._rate * self._burst_seconds)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._capacity(), self._tokens + elapsed * self._rate)
        self._updated = now


def make_limiter(max_requests_per_second: float) -> RateLimiter | None:
    """The limiter for --cph.max-requests-per-second; 0 means unlimited."""
    return RateLimiter(max_requests_per_second) if max_requests_per_second > 0 else None
