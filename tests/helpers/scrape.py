"""GET /metrics from a running exporter, asserting that it answered 200."""

from __future__ import annotations

from collections.abc import Callable

import requests

from cph_exporter.app import Exporter

# make_exporter's type: builds a started exporter pointed at a simulator.
ExporterFactory = Callable[..., Exporter]


def get_metrics(exporter: Exporter, **headers: str) -> requests.Response:
    """GET /metrics with these headers; it must answer 200."""
    response = requests.get(exporter.url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def scrape(exporter: Exporter, **headers: str) -> str:
    return get_metrics(exporter, **headers).text
