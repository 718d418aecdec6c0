"""The cloud phones: per-server counts by state, and per-phone series when asked for."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric

from cph_exporter.cph.models import Phone, phone_state
from cph_exporter.metrics.common import (
    CACHED_NOTE,
    IDENTITY,
    RowGauge,
    StateGauge,
    ViewsCollector,
    exported_servers,
    label_value,
    target_gauge,
)
from cph_exporter.refresh.targets import TargetView

# The states of cph_phone_state and cph_server_phones, in the order exposed.
PHONE_STATE_NAMES: tuple[str, ...] = (
    "creating",
    "running",
    "resetting",
    "restarting",
    "frozen",
    "stopping",
    "stopped",
    "reset_failed",
    "restart_failed",
    "abnormal",
    "create_failed",
    "stop_failed",
    "unknown",
)
_NO_PHONES = (0,) * len(PHONE_STATE_NAMES)


class PhoneCollector(ViewsCollector):
    def __init__(self, views: Callable[[], Sequence[TargetView]], per_phone: bool) -> None:
        super().__init__(views)
        self._per_phone = per_phone  # 13 state series per phone: opt-in for cardinality

    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_phones_up",
            "1 when the latest listing of the cloud phones (ListCloudPhones) succeeded.",
            views,
            lambda snapshot: snapshot.phones_up,
        )
        # Only servers being exported: a phone of another shard's server stays there.
        servers = [
            item for item in exported_servers(views) if item.view.snapshot.phones is not None
        ]
        phones_of = _phones_by_server(views)

        counts = StateGauge(
            "cph_server_phones",
            "Cloud phones on the server in each phone state." + CACHED_NOTE,
            IDENTITY,
            "state",
            PHONE_STATE_NAMES,
        )
        for item in servers:
            phones = phones_of.get(item.record.server.server_id, ())
            if phones:
                tally = Counter(phone_state(phone.status) for phone in phones)
                counts.add_states(item.identity, [tally.get(name, 0) for name in PHONE_STATE_NAMES])
            else:
                counts.add_states(item.identity, _NO_PHONES)
        yield counts
        if not self._per_phone:
            return

        state = RowGauge(
            "cph_phone_state",
            "1 for the cloud phone's current state, 0 for each other state." + CACHED_NOTE,
            labels=(*IDENTITY, "phone_id", "phone_name", "state"),
        )
        for item in servers:
            for phone in phones_of.get(item.record.server.server_id, ()):
                current = phone_state(phone.status)
                names = [label_value(phone.phone_id), label_value(phone.phone_name)]
                for name in PHONE_STATE_NAMES:
                    value = 1.0 if name == current else 0.0
                    state.add_metric([*item.identity, *names, name], value)
        yield state

        info = RowGauge(
            "cph_phone_info",
            "Static facts about the cloud phone, value 1." + CACHED_NOTE,
            labels=(*IDENTITY, "phone_id", "phone_name", *_INFO_LABELS),
        )
        for item in servers:
            for phone in phones_of.get(item.record.server.server_id, ()):
                facts = [label_value(getattr(phone, field)) for field in _INFO_FIELDS]
                info.add_metric([*item.identity, *facts], 1.0)
        yield info


# cph_phone_info's labels after identity, phone_id and phone_name; and the Phone fields
# behind all of them (the API's `type` is `phone_type` here).
_INFO_LABELS = ("phone_model_name", "image_id", "image_version", "type")
_INFO_FIELDS = (
    "phone_id",
    "phone_name",
    "phone_model_name",
    "image_id",
    "image_version",
    "phone_type",
)


def _phones_by_server(views: Sequence[TargetView]) -> dict[str, list[Phone]]:
    by_server: defaultdict[str, list[Phone]] = defaultdict(list)
    for view in views:
        for phone in view.snapshot.phones or ():
            by_server[phone.server_id].append(phone)
    return by_server
