"""The per-server metrics: one snapshot in, fresh metric families out."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from cph_exporter.cph.models import server_state
from cph_exporter.metrics.common import (
    CACHED_NOTE,
    IDENTITY,
    INFO_LABELS,
    MAX_LABEL_VALUE_BYTES,
    ExportedServer,
    RowGauge,
    StateGauge,
    ViewsCollector,
    exported_servers,
    label_value,
    per_server,
    server_gauge,
    target_gauge,
)

MBIT_PER_SECOND = 125_000  # bytes per second in one Mbit/s
GIB = 2**30
CHARGE_MODES = {0: "bandwidth", 1: "traffic"}
SHARE_TYPES = {0: "dedicated", 1: "shared"}
# The states of cph_server_state, in the order exposed; every state server_state() names.
STATE_NAMES: tuple[str, ...] = (
    "creating",
    "abnormal",
    "normal",
    "frozen",
    "stopped",
    "stopping",
    "stop_failed",
    "starting",
    "unknown",
)
# cph_server_state's values for each current state, in the order of STATE_NAMES.
_STATE_VALUES = {
    current: tuple(1.0 if name == current else 0.0 for name in STATE_NAMES)
    for current in STATE_NAMES
}

_INFO_OF = operator.attrgetter(*INFO_LABELS)


class ServerCollector(ViewsCollector):
    """cph_up and every cph_server_* family, built anew from the snapshots on each collect.

    Each family is built just before it is yielded: renderers consume them one at a time,
    so at 10,000 servers only one family's samples are in memory at once, not all of them.
    """

    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_up",
            "1 when the latest refresh reached the CPH API and listed (or fetched) the servers.",
            views,
            lambda snapshot: snapshot.up,
        )
        servers = exported_servers(views)
        yield per_server(
            "cph_server_status",
            "Raw status code of the cloud phone server.",
            servers,
            lambda server: server.status,
        )

        state = StateGauge(
            "cph_server_state",
            "1 for the server's current state, 0 for each other state." + CACHED_NOTE,
            IDENTITY,
            "state",
            STATE_NAMES,
        )
        for item in servers:
            state.add_states(item.identity, _STATE_VALUES[server_state(item.record.server.status)])
        yield state

        info = server_gauge(
            "cph_server_info",
            "Static facts about the cloud phone server, value 1.",
            (*INFO_LABELS, "region", "project_id"),
        )
        for item in servers:
            facts: tuple[str, ...] = _INFO_OF(item.record.server)
            if sum(map(len, facts)) > MAX_LABEL_VALUE_BYTES // 4:  # as in exported_servers
                facts = tuple(map(label_value, facts))
            info.add_metric((*item.identity, *facts, item.view.region, item.view.project_id), 1.0)
        yield info

        yield self._bandwidths(servers)
        yield self._volumes(servers)

        yield per_server(
            "cph_server_addresses",
            "Number of addresses of the server.",
            servers,
            lambda server: server.address_count,
        )
        yield per_server(
            "cph_server_created_timestamp_seconds",
            "When the server was created, Unix time.",
            servers,
            lambda server: server.created_at,
        )
        yield per_server(
            "cph_server_updated_timestamp_seconds",
            "When the server was last updated, Unix time.",
            servers,
            lambda server: server.updated_at,
        )

    @staticmethod
    def _bandwidths(servers: Sequence[ExportedServer]) -> RowGauge:
        bandwidth = server_gauge(
            "cph_server_bandwidth_size_bytes_per_second",
            "Size of a bandwidth of the server (API: band_width_size Mbit/s).",
            ("bandwidth_id", "bandwidth_name", "charge_mode", "share_type"),
        )
        # Sizes are dropped as add_finite drops them: a finite size can overflow once scaled.
        rows, values = [], []
        for item in servers:
            if item.record.details is None:
                continue
            seen: set[str] = set()  # a repeated id would make a duplicate series
            for bw in item.record.details.bandwidths:
                bandwidth_id = label_value(bw.bandwidth_id)
                size = bw.size_mbit_per_second
                if (
                    size is None
                    or bandwidth_id in seen
                    or not math.isfinite(size := size * MBIT_PER_SECOND)
                ):
                    continue
                seen.add(bandwidth_id)
                charge_mode = CHARGE_MODES.get(bw.charge_mode, "unknown")  # type: ignore[arg-type]
                share_type = SHARE_TYPES.get(bw.share_type, "unknown")  # type: ignore[arg-type]
                rows.append(
                    (*item.identity, bandwidth_id, label_value(bw.name), charge_mode, share_type)
                )
                values.append(size)
        bandwidth.add_metrics(rows, values)
        return bandwidth

    @staticmethod
    def _volumes(servers: Sequence[ExportedServer]) -> RowGauge:
        volume = server_gauge(
            "cph_server_volume_size_bytes",
            "Size of a volume of the server (API: volume_size GB, meaning GiB).",
            ("volume_id", "volume_name", "volume_type"),
        )
        rows, values = [], []
        for item in servers:
            if item.record.details is None:
                continue
            seen: set[str] = set()
            for vol in item.record.details.volumes:
                volume_id = label_value(vol.volume_id)
                size = vol.size_gb
                if size is None or volume_id in seen or not math.isfinite(size := size * GIB):
                    continue
                seen.add(volume_id)
                rows.append(
                    (*item.identity, volume_id, label_value(vol.name), label_value(vol.volume_type))
                )
                values.append(size)
        volume.add_metrics(rows, values)
        return volume
