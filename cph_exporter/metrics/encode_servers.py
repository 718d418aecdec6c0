"""The encode servers that stream the phones' screens (ListEncodeServers): raw status and
a state set per encode server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from cph_exporter.cph.events import EncodeServer
from cph_exporter.metrics.common import (
    CACHED_NOTE,
    RowGauge,
    ViewsCollector,
    label_value,
    target_gauge,
)
from cph_exporter.refresh.targets import TargetView

# The states of cph_encode_server_state, in the order exposed.
ENCODE_SERVER_STATE_NAMES = ("creating", "running", "abnormal", "restarting", "unknown")
LABELS = ("encode_server_id", "encode_server_name", "server_id", "type")


class EncodeServerCollector(ViewsCollector):
    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_encode_servers_up",
            "1 when the latest listing of the encode servers (ListEncodeServers) succeeded.",
            views,
            lambda snapshot: snapshot.watched.encode_servers_up,
        )
        encoders = _encode_servers(views)
        status = RowGauge(
            "cph_encode_server_status",
            "Raw status code of the encode server." + CACHED_NOTE,
            labels=LABELS,
        )
        for labels, encoder in encoders:
            if encoder.status is not None:
                status.add_metric(labels, encoder.status)
        yield status
        state = RowGauge(
            "cph_encode_server_state",
            "1 for the encode server's current state, 0 for each other state." + CACHED_NOTE,
            labels=(*LABELS, "state"),
        )
        for labels, encoder in encoders:
            current = encoder.state
            for name in ENCODE_SERVER_STATE_NAMES:
                state.add_metric([*labels, name], 1.0 if name == current else 0.0)
        yield state


def _encode_servers(views: Sequence[TargetView]) -> list[tuple[list[str], EncodeServer]]:
    result = []
    seen: set[str] = set()
    for view in views:
        for encoder in view.snapshot.watched.encode_servers or ():
            encoder_id = label_value(encoder.encode_server_id)
            if encoder_id in seen:
                continue
            seen.add(encoder_id)
            labels = [
                encoder_id,
                label_value(encoder.encode_server_name),
                label_value(encoder.server_id),
                encoder.type_name,
            ]
            result.append((labels, encoder))
    return result
