"""Huawei's scheduled maintenance of the servers (ListScheduledEvents): one info series per
event, and the times of its window; events that ended long ago are left out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric

from cph_exporter.cph.events import ScheduledEvent
from cph_exporter.metrics.common import (
    CACHED_NOTE,
    IDENTITY,
    ExportedServer,
    RowGauge,
    ViewsCollector,
    add_finite,
    exported_servers,
    label_value,
    target_gauge,
)
from cph_exporter.refresh.targets import TargetView

# An event in a final state (completed, failed, canceled) is shown this long after it finished.
FINISHED_SHOWN_FOR = 24 * 3600.0
_TIMES = (
    ("not_before", "When the event's window opens at the earliest (not_before), Unix time."),
    ("not_after", "When the event's window closes (not_after), Unix time."),
    (
        "not_before_deadline",
        "Until when the event's window can be chosen or it is authorised "
        "(not_before_deadline), Unix time.",
    ),
)


def shown(event: ScheduledEvent, now: float) -> bool:
    """Every event still going on, and final ones whose finish_time is within the last 24 h."""
    if not event.is_final:
        return True
    return event.finished_at is not None and now - event.finished_at <= FINISHED_SHOWN_FOR


class ScheduledEventCollector(ViewsCollector):
    def __init__(
        self, views: Callable[[], Sequence[TargetView]], clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(views)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_scheduled_events_up",
            "1 when the latest listing of the scheduled events (ListScheduledEvents) succeeded.",
            views,
            lambda snapshot: snapshot.watched.scheduled_events_up,
        )
        events = self._events(views)
        info = RowGauge(
            "cph_server_scheduled_event_info",
            "A scheduled maintenance event of the server, value 1; final ones for 24 h after "
            "their finish_time." + CACHED_NOTE,
            labels=(*IDENTITY, "event_id", "event_type", "authorization_type", "state"),
        )
        for item, event_id, event in events:
            facts = [label_value(v) for v in (event.event_type, event.authorization_type)]
            info.add_metric([*item.identity, event_id, *facts, label_value(event.state)], 1.0)
        yield info
        for field, doc in _TIMES:
            family = RowGauge(
                f"cph_server_scheduled_event_{field}_timestamp_seconds",
                doc + CACHED_NOTE,
                labels=(*IDENTITY, "event_id"),
            )
            for item, event_id, event in events:
                at = getattr(event, field)
                if at is not None:
                    add_finite(family, [*item.identity, event_id], at)
            yield family

    def _events(
        self, views: Sequence[TargetView]
    ) -> list[tuple[ExportedServer, str, ScheduledEvent]]:
        """The events shown, each with its exported server and its event_id label."""
        if not any(view.snapshot.watched.scheduled_events for view in views):
            return []
        now = self._clock()
        servers = {
            (id(item.view), item.record.server.server_id): item for item in exported_servers(views)
        }
        result = []
        seen: set[str] = set()  # ids cut to the same label would make duplicate series
        for view in views:
            for event in view.snapshot.watched.scheduled_events or ():
                item = servers.get((id(view), event.server_id))
                event_id = label_value(event.event_id)
                if item is None or event_id in seen or not shown(event, now):
                    continue
                seen.add(event_id)
                result.append((item, event_id, event))
        return result
