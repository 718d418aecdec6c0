"""The request-rate cap: a token bucket on an injected clock, adaptive to 429s.

Only the simulator test at the end talks to a real server; everything else runs on a fake
clock, so nothing here sleeps for real or depends on timing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cph_exporter.cli import build_parser, config_from_args
from cph_exporter.cph.client import CphClient
from cph_exporter.cph.errors import ApiError
from cph_exporter.cph.ratelimit import RateLimiter, make_limiter
from cph_exporter.cph.request_metrics import ApiMetrics
from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.metrics.exporter import RateLimitCollector
from cph_exporter.settings.config import ConfigError
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    Faults,
    generate_fleet,
)
from tests.helpers.fleet import GOOD_CREDENTIALS, fleet
from tests.helpers.scrape import ExporterFactory, scrape


class FakeClock:
    """Monotonic time that only moves when someone sleeps (or the test says so)."""

    def __init__(self, advance_on_sleep: bool = True) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._advance = advance_on_sleep
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self._advance:
                self.now += seconds


def limiter(rate: float, clock: FakeClock, **options: object) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **options)  # type: ignore[arg-type]


def test_a_full_bucket_bursts_then_spaces_requests_evenly() -> None:
    clock = FakeClock()
    bucket = limiter(10, clock)
    started = clock.now
    for _ in range(10):
        assert bucket.acquire() is not None
    assert clock.sleeps == []  # one second's worth of burst
    for _ in range(50):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([0.1] * 50)
    assert clock.now - started == pytest.approx(5.0)


def test_the_long_run_rate_never_exceeds_the_cap() -> None:
    clock = FakeClock()
    bucket = limiter(20, clock)
    started = clock.now
    for _ in range(1000):
        bucket.acquire()
    # 1000 requests at 20/s after a burst of 20 take (1000 - 20) / 20 = 49 s.
    assert clock.now - started == pytest.approx(49.0)


def test_idle_time_refills_the_bucket_up_to_the_burst_only() -> None:
    clock = FakeClock()
    bucket = limiter(5, clock)
    for _ in range(5):
        bucket.acquire()
    clock.now += 3600  # an hour idle saves up one second's worth, not an hour's
    for _ in range(5):
        bucket.acquire()
    assert clock.sleeps == []
    bucket.acquire()
    assert clock.sleeps == pytest.approx([0.2])


def test_a_token_past_the_deadline_is_refused_at_once_and_not_consumed() -> None:
    clock = FakeClock()
    bucket = limiter(10, clock, burst_seconds=0.1)  # a burst of one
    assert bucket.acquire() is not None
    assert bucket.acquire(deadline=clock.now + 0.05) is None  # the next token is 0.1 s away
    assert clock.sleeps == []
    assert bucket.acquire(deadline=clock.now + 0.1) is not None
    assert clock.sleeps == pytest.approx([0.1])  # not 0.2: the refusal reserved nothing


def test_concurrent_callers_get_distinct_evenly_spaced_slots() -> None:
    clock = FakeClock(advance_on_sleep=False)  # frozen time: every wait is a reservation
    bucket = limiter(50, clock)
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        for _ in range(25):
            bucket.acquire()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # 200 requests: 50 from the burst, then one slot every 1/50 s, none shared, none lost.
    assert sorted(clock.sleeps) == pytest.approx([k / 50 for k in range(1, 151)])


def test_a_429_halves_the_rate_once_per_epoch_and_drops_the_burst() -> None:
    clock = FakeClock()
    bucket = limiter(16, clock)
    in_flight = [bucket.acquire() for _ in range(16)]
    for permit in in_flight:  # all 16 answer 429: one cut, not sixteen
        assert permit is not None
        bucket.throttled(permit)
    assert bucket.rate == 8
    later = bucket.acquire()  # no burst left: a full slot at the new rate
    assert clock.sleeps == pytest.approx([0.125])
    assert later is not None
    bucket.throttled(later)  # a 429 under the new rate cuts again
    assert bucket.rate == 4
    clock.sleeps.clear()
    bucket.acquire()
    assert clock.sleeps == pytest.approx([0.25])


def test_the_rate_never_drops_below_the_floor() -> None:
    clock = FakeClock()
    bucket = limiter(20, clock, floor=2)
    for _ in range(20):
        permit = bucket.acquire()
        assert permit is not None
        bucket.throttled(permit)
    assert bucket.rate == 2


def test_a_run_of_successes_recovers_additively_up_to_the_maximum() -> None:
    clock = FakeClock()
    bucket = limiter(20, clock, recover_after=5, recover_step=3)
    stale = bucket.acquire()
    permit = bucket.acquire()
    assert stale is not None and permit is not None
    bucket.throttled(permit)
    assert bucket.rate == 10
    for _ in range(10):  # admitted before the cut: says nothing about the new rate
        bucket.succeeded(stale)
    assert bucket.rate == 10
    rates = []
    for _ in range(25):
        ok = bucket.acquire()
        assert ok is not None
        bucket.succeeded(ok)
        rates.append(bucket.rate)
    assert rates[3] == 10 and rates[4] == 13  # +3 after each run of 5
    assert rates[9] == 16 and rates[14] == 19 and rates[19] == 20 and rates[-1] == 20


def test_a_429_breaks_the_run_of_successes() -> None:
    clock = FakeClock()
    bucket = limiter(20, clock, recover_after=3)
    first = bucket.acquire()
    assert first is not None
    bucket.throttled(first)
    for _ in range(2):
        ok = bucket.acquire()
        assert ok is not None
        bucket.succeeded(ok)
    other = bucket.acquire()
    assert other is not None
    bucket.throttled(other)  # new epoch: 10 -> 5, and the run starts over
    for _ in range(2):
        ok = bucket.acquire()
        assert ok is not None
        bucket.succeeded(ok)
    assert bucket.rate == 5


def test_without_adaptation_429s_change_nothing() -> None:
    clock = FakeClock()
    bucket = limiter(20, clock, adaptive=False)
    permit = bucket.acquire()
    assert permit is not None
    bucket.throttled(permit)
    assert bucket.rate == 20


def test_zero_means_unlimited_and_the_gauge_says_so() -> None:
    assert make_limiter(0) is None
    with pytest.raises(ValueError):
        RateLimiter(0)
    registry = CollectorRegistry()
    registry.register(RateLimitCollector(None))
    assert registry.get_sample_value("cph_exporter_api_rate_limit_requests_per_second") == 0
    other = CollectorRegistry()
    other.register(RateLimitCollector(RateLimiter(7.5)))
    assert other.get_sample_value("cph_exporter_api_rate_limit_requests_per_second") == 7.5


# ---- against the simulator ----


@pytest.fixture
def throttling_simulator() -> Iterator[CphSimulator]:
    """A gateway allowing 40 calls in any one second, asking for a 50 ms pause on 429."""
    servers = generate_fleet(80, seed=7)
    faults = Faults(max_rps=40, retry_after="0.05")
    credentials = {SIMULATOR_ACCESS_KEY: SIMULATOR_SECRET_KEY}
    with CphSimulator(servers, credentials, SIMULATOR_PROJECT_ID, faults) as sim:
        yield sim


def client_for(sim: CphSimulator, bucket: RateLimiter | None) -> CphClient:
    return CphClient(
        sim.url,
        SIMULATOR_PROJECT_ID,
        AkSkAuth(lambda: GOOD_CREDENTIALS, project_id=SIMULATOR_PROJECT_ID),
        metrics=ApiMetrics(CollectorRegistry()),
        pool_size=16,
        limiter=bucket,
    )


def fetch_all(client: CphClient) -> int:
    """List and fetch every server with 16 threads, as a refresh does; details obtained."""
    ids = [str(entry["server_id"]) for entry in client.list_servers().entries]
    pending = list(ids)
    lock = threading.Lock()
    fetched = 0

    def work() -> None:
        nonlocal fetched
        while True:
            with lock:
                if not pending:
                    return
                server_id = pending.pop()
            try:
                client.get_server(server_id, deadline=time.monotonic() + 60)
            except ApiError:
                continue
            with lock:
                fetched += 1

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return fetched


@pytest.mark.timeout(120)
def test_adaptation_gets_fewer_429s_from_a_throttling_gateway(
    throttling_simulator: CphSimulator,
) -> None:
    sim = throttling_simulator
    # Set well above what the gateway allows, as an operator guessing the limit might.
    fixed = client_for(sim, RateLimiter(200, adaptive=False))
    try:
        fetch_all(fixed)
    finally:
        fixed.close()
    throttled_fixed = sim.throttled

    time.sleep(1.1)  # let the gateway's one-second window empty
    sim.reset_counters()
    adaptive_limiter = RateLimiter(200)
    adaptive = client_for(sim, adaptive_limiter)
    try:
        fetched = fetch_all(adaptive)
    finally:
        adaptive.close()
    assert fetched == 80  # slowed down, and nothing lost
    assert adaptive_limiter.rate < 200  # it did adapt
    assert sim.throttled * 2 < throttled_fixed, (sim.throttled, throttled_fixed)


def test_a_refused_slot_fails_fast_without_a_request_or_a_retry(
    throttling_simulator: CphSimulator,
) -> None:
    bucket = RateLimiter(0.001, burst_seconds=1000)  # one token, the next in 1000 s
    assert bucket.acquire() is not None
    client = client_for(throttling_simulator, bucket)
    try:
        started = time.monotonic()
        with pytest.raises(ApiError, match="rate limit"):
            client.get_server("any", deadline=time.monotonic() + 30)
        assert time.monotonic() - started < 5  # refused, not waited for
        assert sum(throttling_simulator.calls.values()) == 0
    finally:
        client.close()


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_a_bad_rate_names_the_flag(value: str) -> None:
    argv = ["--simulate", "--cph.max-requests-per-second", value]
    with pytest.raises(ConfigError, match=r"^--cph\.max-requests-per-second: "):
        config_from_args(build_parser().parse_args(argv), {})


def test_the_default_rate_is_capped_and_zero_is_accepted() -> None:
    parse = build_parser().parse_args
    assert config_from_args(parse(["--simulate"]), {}).max_requests_per_second == 20
    argv = ["--simulate", "--cph.max-requests-per-second", "0"]
    assert config_from_args(parse(argv), {}).max_requests_per_second == 0


def test_details_the_deadline_cut_off_are_fetched_by_later_refreshes(
    simulator: CphSimulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    servers = len(fleet())
    # 10/s with a one-second refresh: about 20 calls fit in each refresh, not all 33.
    exporter = make_exporter(
        simulator,
        max_requests_per_second=10.0,
        refresh_timeout=1.0,
        cache_ttl=0.1,
        cache_max_stale=60.0,
    )
    missing = [without_details(scrape(exporter))]
    assert 0 < missing[0] <= servers  # the first refresh ran out of time (on a slow machine,
    # perhaps before any detail call at all)
    warnings = [r.getMessage() for r in caplog.records if "detail calls not made" in r.getMessage()]
    assert len(warnings) == 1  # one line, not one per server
    while missing[-1] and len(missing) < 60:  # each refresh fetches some; a busy machine fewer
        time.sleep(0.15)
        missing.append(without_details(scrape(exporter)))
    assert missing[-1] == 0, missing
    assert missing == sorted(missing, reverse=True)
    # Every server's details were fetched, and no more than that by much: calls the rate cap
    # refused were never sent (one that was in flight when a deadline cut it, on a busy
    # machine, is sent again by the next refresh).
    assert len(simulator.detail_calls) == servers
    assert sum(simulator.detail_calls.values()) < 2 * servers


def without_details(text: str) -> float:
    (value,) = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cph_exporter_servers_without_details"
    ]
    return value
