"""The per-server metrics: one snapshot in, fresh metric families out."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.models import IDENTITY_FIELDS, INFO_FIELDS, STATE_NAMES, Server, server_state
from cph_exporter.snapshot import ServerRecord, Snapshot
from cph_exporter.targets import TargetView

IDENTITY = IDENTITY_FIELDS
INFO_LABELS = INFO_FIELDS
CACHED_NOTE = " Cached: refreshed from the CPH API at most once per cache TTL."
MBIT_PER_SECOND = 125_000  # bytes per second in one Mbit/s
GIB = 2**30
CHARGE_MODES = {0: "bandwidth", 1: "traffic"}
SHARE_TYPES = {0: "dedicated", 1: "shared"}
# Label values are cut to this many UTF-8 bytes. Prometheus has no limit by default, but
# Mimir, Cortex and Grafana Cloud refuse longer values (2048 is their default) and a
# scrape with label_value_length_limit set fails whole: a server name anyone with CPH
# rights can set must not take the fleet's metrics down with it.
MAX_LABEL_VALUE_BYTES = 2048
_CUT = "\u2026"  # an ellipsis marks a cut value


def label_value(value: str) -> str:
    """`value`, cut on a character boundary to MAX_LABEL_VALUE_BYTES when longer."""
    if len(value) <= MAX_LABEL_VALUE_BYTES // 4:  # no character is longer than 4 bytes
        return value
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= MAX_LABEL_VALUE_BYTES:
        return value
    keep = MAX_LABEL_VALUE_BYTES - len(_CUT.encode("utf-8"))
    return encoded[:keep].decode("utf-8", "ignore") + _CUT


def _add(family: GaugeMetricFamily, labels: Sequence[str], value: float) -> None:
    # NaN never gets here (parsing drops it), but finite inputs can overflow once scaled
    # (1e308 GB): an infinite size is no more true than an unknown one.
    if math.isfinite(value):
        family.add_metric(labels, value)


def _named(names: dict[int, str], code: int | None) -> str:
    return "unknown" if code is None else names.get(code, "unknown")


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc + CACHED_NOTE, labels=IDENTITY + labels)


@dataclass(frozen=True, slots=True)
class ExportedServer:
    """A server as exported: its target, its record and its identity label values."""

    view: TargetView
    record: ServerRecord
    identity: tuple[str, ...]


def exported_servers(views: Sequence[TargetView]) -> list[ExportedServer]:
    """Every server of every target once, identity labels cut to their limit."""
    seen: set[str] = set()  # ids cut to the same label would make duplicate series
    exported = []
    for view in views:
        for record in view.snapshot.servers:
            identity = tuple(label_value(getattr(record.server, name)) for name in IDENTITY)
            if identity[0] in seen:
                continue
            seen.add(identity[0])
            exported.append(ExportedServer(view, record, identity))
    return exported


def target_gauge(
    name: str, doc: str, views: Sequence[TargetView], healthy: Callable[[Snapshot], bool]
) -> GaugeMetricFamily:
    """A 0/1 gauge per target, labelled by region and project_id (cph_up and its kin)."""
    family = GaugeMetricFamily(name, doc, labels=("region", "project_id"))
    for view in views:
        family.add_metric((view.region, view.project_id), 1.0 if healthy(view.snapshot) else 0.0)
    return family


def _per_server(
    name: str,
    doc: str,
    servers: Sequence[ExportedServer],
    value: Callable[[Server], float | None],
) -> GaugeMetricFamily:
    """One series per server, for a value the server may not have."""
    family = _gauge(name, doc)
    for item in servers:
        number = value(item.record.server)
        if number is not None:
            _add(family, item.identity, number)
    return family


class FleetCollector(Collector):
    """cph_up and every cph_server_* family, built anew from the snapshots on each collect.

    Each family is built just before it is yielded: renderers consume them one at a time,
    so at 10,000 servers only one family's samples are in memory at once, not all of them.
    """

    def __init__(self, views: Callable[[], Sequence[TargetView]]) -> None:
        self._views = views

    def describe(self) -> list[Metric]:
        return []  # registering must not call the API

    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_up",
            "1 when the latest refresh reached the CPH API and listed (or fetched) the servers.",
            views,
            lambda snapshot: snapshot.up,
        )
        servers = exported_servers(views)
        yield _per_server(
            "cph_server_status",
            "Raw status code of the cloud phone server.",
            servers,
            lambda server: server.status,
        )

        state = _gauge(
            "cph_server_state",
            "1 for the server's current state, 0 for each other state.",
            ("state",),
        )
        for item in servers:
            current = server_state(item.record.server.status)
            for name in STATE_NAMES:
                state.add_metric([*item.identity, name], 1.0 if name == current else 0.0)
        yield state

        info = _gauge(
            "cph_server_info",
            "Static facts about the cloud phone server, value 1.",
            (*INFO_LABELS, "region", "project_id"),
        )
        for item in servers:
            facts = [label_value(getattr(item.record.server, name)) for name in INFO_LABELS]
            info.add_metric([*item.identity, *facts, item.view.region, item.view.project_id], 1.0)
        yield info

        yield self._bandwidths(servers)
        yield self._volumes(servers)

        yield _per_server(
            "cph_server_addresses",
            "Number of addresses of the server.",
            servers,
            lambda server: server.address_count,
        )
        yield _per_server(
            "cph_server_created_timestamp_seconds",
            "When the server was created, Unix time.",
            servers,
            lambda server: server.created_at,
        )
        yield _per_server(
            "cph_server_updated_timestamp_seconds",
            "When the server was last updated, Unix time.",
            servers,
            lambda server: server.updated_at,
        )

    @staticmethod
    def _bandwidths(servers: list[ExportedServer]) -> GaugeMetricFamily:
        bandwidth = _gauge(
            "cph_server_bandwidth_size_bytes_per_second",
            "Size of a bandwidth of the server (API: band_width_size Mbit/s).",
            ("bandwidth_id", "bandwidth_name", "charge_mode", "share_type"),
        )
        for item in servers:
            if item.record.details is None:
                continue
            seen: set[str] = set()  # a repeated id would make a duplicate series
            for bw in item.record.details.bandwidths:
                bandwidth_id = label_value(bw.bandwidth_id)
                if bw.size_mbit_per_second is None or bandwidth_id in seen:
                    continue
                seen.add(bandwidth_id)
                charge_mode = CHARGE_MODES.get(bw.charge_mode, "unknown")  # type: ignore[arg-type]
                share_type = SHARE_TYPES.get(bw.share_type, "unknown")  # type: ignore[arg-type]
                labels = [
                    *item.identity,
                    bandwidth_id,
                    label_value(bw.name),
                    charge_mode,
                    share_type,
                ]
                _add(bandwidth, labels, bw.size_mbit_per_second * MBIT_PER_SECOND)
        return bandwidth

    @staticmethod
    def _volumes(servers: list[ExportedServer]) -> GaugeMetricFamily:
        volume = _gauge(
            "cph_server_volume_size_bytes",
            "Size of a volume of the server (API: volume_size GB, meaning GiB).",
            ("volume_id", "volume_name", "volume_type"),
        )
        for item in servers:
            if item.record.details is None:
                continue
            seen: set[str] = set()
            for vol in item.record.details.volumes:
                volume_id = label_value(vol.volume_id)
                if vol.size_gb is None or volume_id in seen:
                    continue
                seen.add(volume_id)
                labels = [
                    *item.identity,
                    volume_id,
                    label_value(vol.name),
                    label_value(vol.volume_type),
                ]
                _add(volume, labels, vol.size_gb * GIB)
        return volume
