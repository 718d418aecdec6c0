"""The HTTP front against hostile clients: every limit crossed, on the real server on loopback."""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from cph_exporter.http.formats import negotiate
from cph_exporter.http.request_head import MAX_HEAD_BYTES
from cph_exporter.http.server import MAX_SCRAPE_TIMEOUT, scrape_budget
from cph_exporter.simulator import CphSimulator
from tests.helpers.scrape import ExporterFactory

# Generous: these bound a loaded machine's scheduling, not the behaviour under test.
PATIENCE = 60.0


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def exchange(url: str, data: bytes, timeout: float = PATIENCE) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(address(url), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """The status of every response in a raw exchange (a body may run into the next one)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


# ---------------------------------------------------------------------------------------------
# The scrape timeout header, and scrapes waiting on a stuck refresh


@pytest.mark.parametrize("header", ["nan", "NaN", "-5", "0", "garbage", "inf", "-inf", "", " "])
def test_an_unusable_scrape_timeout_header_means_the_default(header: str) -> None:
    assert scrape_budget(header, 10.0) == scrape_budget(None, 10.0)


def test_the_scrape_timeout_header_is_capped() -> None:
    assert scrape_budget("1e9", 10.0) == scrape_budget(str(MAX_SCRAPE_TIMEOUT), 10.0)
    assert math.isclose(scrape_budget("1e9", 10.0), MAX_SCRAPE_TIMEOUT * 0.9 - 0.25)
    assert scrape_budget("30", 10.0) > scrape_budget("10", 10.0)


def test_greedy_scrapes_on_a_stuck_refresh_leave_the_others_answered(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator, cache_ttl=0.2, request_timeout=60.0)
    first = requests.get(exporter.url + "/metrics", timeout=PATIENCE)
    assert first.status_code == 200 and "cph_server_info{" in first.text
    time.sleep(0.3)  # the cache expires; the next scrape starts a refresh, which gets stuck
    simulator.faults.latency = 20.0
    greedy = [socket.create_connection(address(exporter.url)) for _ in range(40)]
    try:
        for sock in greedy:
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                b"X-Prometheus-Scrape-Timeout-Seconds: 1e9\r\n\r\n"
            )
        time.sleep(0.5)  # let them take their places
        legit = requests.get(
            exporter.url + "/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
            timeout=PATIENCE,
        )
        assert legit.status_code == 200, legit.text
        assert "cph_server_info{" in legit.text  # the last data, not an empty answer
        assert requests.get(exporter.url + "/-/healthy", timeout=PATIENCE).status_code == 200
    finally:
        simulator.faults.latency = 0.0
        for sock in greedy:
            sock.close()


# ---------------------------------------------------------------------------------------------
# Backlog, handler threads, and 503 beyond them


def test_the_listen_backlog_is_at_least_128(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    assert make_exporter(simulator).http.request_queue_size >= 128


def test_beyond_max_requests_the_answer_is_a_quick_503(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator, max_requests=2)
    slots = exporter.http.RequestHandlerClass.context.scrape_slots  # type: ignore[attr-defined]
    for _ in range(2):
        assert slots.acquire(blocking=False)
    try:
        answer = requests.get(exporter.url + "/metrics", timeout=PATIENCE)
        assert answer.status_code == 503
    finally:
        slots.release()
        slots.release()
    assert requests.get(exporter.url + "/metrics", timeout=PATIENCE).status_code == 200


def test_200_connections_with_every_thread_busy_are_all_answered(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator, max_connections=2, read_timeout=3.0)
    silent = [socket.create_connection(address(exporter.url)) for _ in range(2)]
    time.sleep(0.3)  # both threads now wait for a head that never comes
    results: list[bytes | Exception] = []

    def one() -> None:
        try:
            results.append(
                exchange(
                    exporter.url, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
            )
        except OSError as exc:
            results.append(exc)

    clients = [threading.Thread(target=one) for _ in range(200)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(PATIENCE * 2)
    for sock in silent:
        sock.close()
    codes = [statuses(r)[0] if isinstance(r, bytes) and statuses(r) else r for r in results]
    assert len(codes) == 200
    assert set(map(str, codes)) <= {"200", "503"}, codes
    assert 200 in codes and 503 in codes  # the queue served some, the overflow was told


# ---------------------------------------------------------------------------------------------
# The request head: size, time, HTTP/0.9, bodies


@pytest.fixture
def front(simulator: CphSimulator, make_exporter: ExporterFactory) -> Iterator[str]:
    yield make_exporter(simulator, read_timeout=0.5).url


def test_a_request_head_past_the_cap_is_431(front: str) -> None:
    header = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + header * (MAX_HEAD_BYTES // len(header) + 2)
    answer = exchange(front, head + b"\r\n")
    assert statuses(answer) == [431]


def test_a_head_just_under_the_cap_is_served(front: str) -> None:
    header = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    head = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header * 60
    assert statuses(exchange(front, head + b"\r\n")) == [200]


def test_an_idle_connection_is_closed_after_the_read_timeout(front: str) -> None:
    assert exchange(front, b"") == b""


def test_an_idle_keep_alive_connection_is_closed_after_the_read_timeout(front: str) -> None:
    answer = exchange(front, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(answer) == [200]  # answered, then closed once idle


def test_a_slow_header_client_is_cut_off_though_it_keeps_sending(front: str) -> None:
    with socket.create_connection(address(front), timeout=PATIENCE) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + PATIENCE
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"X-Drip: 1\r\n")  # a line every 50 ms: never idle for long
                sock.settimeout(0.05)
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed


def test_http_0_9_is_refused(front: str) -> None:
    answer = exchange(front, b"GET /metrics\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"cph_up" not in answer


def test_a_request_hidden_in_a_content_length_body_is_never_answered(front: str) -> None:
    hidden = b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = exchange(
        front,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden)
        + hidden
        + b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert statuses(answer) == [200, 404]
    assert b"Ready" not in answer


def test_a_request_hidden_in_a_chunked_body_is_never_answered(front: str) -> None:
    hidden = b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = exchange(
        front,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(hidden)
        + hidden
        + b"\r\n0\r\n\r\n",
    )
    assert statuses(answer) == [200]
    assert b"Connection: close" in answer


# ---------------------------------------------------------------------------------------------
# Accept negotiation


def test_negotiation_knows_three_formats_and_falls_back_like_prometheus() -> None:
    om = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert negotiate(None).content_type.startswith("text/plain; version=0.0.4")
    assert negotiate("application/openmetrics-text").content_type == om
    assert negotiate("application/openmetrics-text; version=1.0.0").content_type == om
    assert "version=0.0.1" in negotiate("application/openmetrics-text;version=0.0.1").content_type
    prometheus = (
        "application/openmetrics-text;version=1.0.0;q=0.5,"
        "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
    )
    assert negotiate(prometheus).content_type == om
    # Unknown versions are passed over, to the next range or to the text format.
    assert negotiate("application/openmetrics-text; version=1.0.7").content_type.startswith(
        "text/plain"
    )
    assert negotiate(
        "application/openmetrics-text; version=9, application/openmetrics-text; version=0.0.1"
    ).content_type.startswith("application/openmetrics-text; version=0.0.1")
    assert negotiate("text/plain;q=0.1, application/openmetrics-text;q=0.9").content_type == om


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=x",
        "application/openmetrics-text; version=",
        "application/openmetrics-text; q=nan",
        "text/plain; version=1.0.0; escaping=allow-utf-8",
        ";;;,,,=;=",
        "\x00\xff",
    ],
)
def test_no_accept_header_makes_the_handler_fail(front: str, accept: str) -> None:
    answer = requests.get(front + "/metrics", headers={"Accept": accept}, timeout=PATIENCE)
    assert answer.status_code == 200
    assert "cph_up" in answer.text


def test_91_accept_variants_leave_at_most_the_known_forms_in_the_cache(
    simulator: CphSimulator, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(simulator)
    types = set()
    for n in range(91):
        answer = requests.get(
            exporter.url + "/metrics",
            headers={"Accept": f"application/openmetrics-text; version=1.0.{n}"},
            timeout=PATIENCE,
        )
        assert answer.status_code == 200
        types.add(answer.headers["Content-Type"])
    assert len(types) == 2  # 1.0.0 itself, and the text format for the other 90
    assert len(exporter.exposition._cache) <= 2
