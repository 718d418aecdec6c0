"""What every collector shares: identity labels, label cutting, per-target and per-server gauges."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample, Timestamp

from cph_exporter.cph.models import Server
from cph_exporter.refresh.snapshot import ServerRecord, Snapshot
from cph_exporter.refresh.targets import TargetView

# Labels every per-server series carries, and the static facts of cph_server_info: each is a
# field of Server of the same name.
IDENTITY = ("server_id", "server_name", "availability_zone", "network_version")
INFO_LABELS = (
    "server_model_name",
    "phone_model_name",
    "keypair_name",
    "vpc_id",
    "subnet_id",
    "vpc_cidr",
    "subnet_cidr",
    "resource_project_id",
    "enterprise_project_id",
)
CACHED_NOTE = " Cached: refreshed from the CPH API at most once per cache TTL."
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


class RowGauge(GaugeMetricFamily):
    """A gauge family that keeps each series as its label values and value, as added.

    prometheus_client's families build a Sample, with a dict of its labels, per series: at
    10,000 servers that is most of a render's time and memory. This one keeps the label
    values (in the order of `labelnames`) and the values in two lists, which the exposition
    writer reads; `samples` builds the Samples, a new list on every read, for
    prometheus_client's encoders and anything else that wants them.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.label_values: list[Sequence[str]] = []
        self.values: list[float] = []
        super().__init__(name, documentation, labels=labels)
        self.labelnames: tuple[str, ...] = self._labelnames

    @property
    def samples(self) -> list[Sample]:
        names, name = self.labelnames, self.name
        return [
            Sample(name, dict(zip(names, labels, strict=True)), value, None)
            for labels, value in zip(self.label_values, self.values, strict=True)
        ]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        if samples:  # Metric.__init__ sets the empty list; series come from add_metric
            raise TypeError("add a RowGauge's series with add_metric")

    def add_metric(
        self, labels: Sequence[str], value: float, timestamp: Timestamp | float | None = None
    ) -> None:
        if timestamp is not None:
            raise ValueError("a RowGauge keeps no timestamps")
        # As many values as names: `samples` and the exposition writer check it.
        self.label_values.append(labels)
        self.values.append(value)

    def add_metrics(self, labels: Iterable[Sequence[str]], values: Iterable[float]) -> None:
        """Many series at once: `labels` and `values` pair up in order."""
        self.label_values.extend(labels)
        self.values.extend(values)

    def add_sample(self, *args: object, **kwargs: object) -> None:
        raise TypeError("add a RowGauge's series with add_metric")


class StateGauge(GaugeMetricFamily):
    """A gauge family of state-set shape: per server, one series for each of `states`, the
    state label after the others.

    Kept as each server's label values and its tuple of values (one per state), not as a
    row per series: cph_server_state and cph_server_phones are most of the series at fleet
    scale, and each server's labels are then written once for all its states. `samples`
    builds the Samples, server by server and state by state, for everything else.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        state_label: str,
        states: Sequence[str],
    ) -> None:
        self.label_values: list[Sequence[str]] = []  # per server, without the state label
        self.state_values: list[tuple[float, ...]] = []  # per server, one per state
        self.states = tuple(states)
        self.state_label = state_label
        super().__init__(name, documentation, labels=(*labels, state_label))
        self.labelnames: tuple[str, ...] = self._labelnames

    @property
    def samples(self) -> list[Sample]:
        names, name, states = self.labelnames, self.name, self.states
        return [
            Sample(name, dict(zip(names, (*labels, state), strict=True)), value, None)
            for labels, values in zip(self.label_values, self.state_values, strict=True)
            for state, value in zip(states, values, strict=True)
        ]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        if samples:
            raise TypeError("add a StateGauge's series with add_states")

    def add_states(self, labels: Sequence[str], values: Iterable[float]) -> None:
        """One server's series: its label values, and a value for each state in order."""
        self.label_values.append(labels)
        # The same tuple object for many servers (every normal server's) is written once.
        self.state_values.append(values if type(values) is tuple else tuple(values))

    def add_metric(self, *args: object, **kwargs: object) -> None:
        raise TypeError("add a StateGauge's series with add_states")

    def add_sample(self, *args: object, **kwargs: object) -> None:
        raise TypeError("add a StateGauge's series with add_states")


def add_finite(family: GaugeMetricFamily, labels: Sequence[str], value: float) -> None:
    # NaN never gets here (parsing drops it), but finite inputs can overflow once scaled
    # (1e308 GB): an infinite size is no more true than an unknown one.
    if math.isfinite(value):
        family.add_metric(labels, value)


def server_gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> RowGauge:
    return RowGauge(name, doc + CACHED_NOTE, labels=IDENTITY + labels)


class ExportedServer(NamedTuple):
    """A server as exported: its target, its record and its identity label values."""

    view: TargetView
    record: ServerRecord
    identity: tuple[str, ...]


_IDENTITY_OF = operator.attrgetter(*IDENTITY)


def exported_servers(views: Sequence[TargetView]) -> Sequence[ExportedServer]:
    """Every server of every target once, identity labels cut to their limit.

    Every collector of a render asks for the same views: the last answer is kept (with the
    views it is for, so that their ids stay theirs) and given again for the very same views.
    """
    global _last_exported
    key = tuple(map(id, views))
    last = _last_exported
    if last is not None and last[0] == key:
        return last[2]
    exported = tuple(_exported_servers(views))
    _last_exported = (key, tuple(views), exported)
    return exported


_last_exported: tuple[tuple[int, ...], tuple[TargetView, ...], tuple[ExportedServer, ...]] | None
_last_exported = None


def _exported_servers(views: Sequence[TargetView]) -> Iterator[ExportedServer]:
    seen: set[str] = set()  # ids cut to the same label would make duplicate series
    for view in views:
        for record in view.snapshot.servers:
            identity: tuple[str, ...] = _IDENTITY_OF(record.server)
            # Only a value longer than a quarter of the limit may need cutting, and then the
            # sum of the lengths is too: the common case checks one number.
            if sum(map(len, identity)) > MAX_LABEL_VALUE_BYTES // 4:
                identity = tuple(map(label_value, identity))
            if identity[0] in seen:
                continue
            seen.add(identity[0])
            yield ExportedServer(view, record, identity)


def target_gauge(
    name: str, doc: str, views: Sequence[TargetView], healthy: Callable[[Snapshot], bool]
) -> RowGauge:
    """A 0/1 gauge per target, labelled by region and project_id (cph_up and its kin)."""
    family = RowGauge(name, doc, labels=("region", "project_id"))
    for view in views:
        family.add_metric((view.region, view.project_id), 1.0 if healthy(view.snapshot) else 0.0)
    return family


def per_server(
    name: str,
    doc: str,
    servers: Sequence[ExportedServer],
    value: Callable[[Server], float | None],
) -> RowGauge:
    """One series per server, for a finite value the server may not have (see add_finite)."""
    family = server_gauge(name, doc)
    numbers = [(item.identity, value(item.record.server)) for item in servers]
    kept = [(labels, n) for labels, n in numbers if n is not None and math.isfinite(n)]
    family.add_metrics([labels for labels, _ in kept], [n for _, n in kept])
    return family


class ViewsCollector(Collector):
    """A collector of what the targets' snapshots say: it reads the views it is given on each
    collect and builds new families from them; registering it asks nothing of the API."""

    def __init__(self, views: Callable[[], Sequence[TargetView]]) -> None:
        self._views = views

    def describe(self) -> list[Metric]:
        return []
