"""The cloud phones: per-server counts by state, and per-phone series when asked for."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cph_exporter.fleet_collector import CACHED_NOTE, IDENTITY, label_value
from cph_exporter.models import PHONE_STATE_NAMES, Phone, phone_state
from cph_exporter.targets import TargetView


class PhoneCollector(Collector):
    def __init__(self, views: Callable[[], Sequence[TargetView]], per_phone: bool) -> None:
        self._views = views
        self._per_phone = per_phone  # 13 state series per phone: opt-in for cardinality

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cph_phones_up",
            "1 when the latest listing of the cloud phones (ListCloudPhones) succeeded.",
            labels=("region", "project_id"),
        )
        counts = GaugeMetricFamily(
            "cph_server_phones",
            "Cloud phones on the server in each phone state." + CACHED_NOTE,
            labels=(*IDENTITY, "state"),
        )
        state = GaugeMetricFamily(
            "cph_phone_state",
            "1 for the cloud phone's current state, 0 for each other state." + CACHED_NOTE,
            labels=(*IDENTITY, "phone_id", "phone_name", "state"),
        )
        info = GaugeMetricFamily(
            "cph_phone_info",
            "Static facts about the cloud phone, value 1." + CACHED_NOTE,
            labels=(
                *IDENTITY,
                "phone_id",
                "phone_name",
                "phone_model_name",
                "image_id",
                "image_version",
                "type",
            ),
        )
        for view in self._views():
            snapshot = view.snapshot
            up.add_metric((view.region, view.project_id), 1.0 if snapshot.phones_up else 0.0)
            if snapshot.phones is None:
                continue
            by_server: defaultdict[str, list[Phone]] = defaultdict(list)
            for phone in snapshot.phones:
                by_server[phone.server_id].append(phone)
            # Only servers being exported: a phone of another shard's server stays there.
            for record in snapshot.servers:
                identity = [label_value(getattr(record.server, name)) for name in IDENTITY]
                phones = by_server.get(record.server.server_id, [])
                tally = Counter(phone_state(phone.status) for phone in phones)
                for name in PHONE_STATE_NAMES:
                    counts.add_metric([*identity, name], tally[name])
                if self._per_phone:
                    for phone in phones:
                        self._add_phone(identity, phone, state, info)
        yield up
        yield counts
        if self._per_phone:
            yield state
            yield info

    @staticmethod
    def _add_phone(
        identity: list[str], phone: Phone, state: GaugeMetricFamily, info: GaugeMetricFamily
    ) -> None:
        current = phone_state(phone.status)
        phone_id, phone_name = label_value(phone.phone_id), label_value(phone.phone_name)
        for name in PHONE_STATE_NAMES:
            value = 1.0 if name == current else 0.0
            state.add_metric([*identity, phone_id, phone_name, name], value)
        facts = (phone.phone_model_name, phone.image_id, phone.image_version, phone.phone_type)
        info.add_metric([*identity, phone_id, phone_name, *map(label_value, facts)], 1.0)
