"""How many phones each server holds by its flavour (ListCloudPhoneModels' phone_capacity)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from cph_exporter.metrics.common import ViewsCollector, exported_servers, server_gauge, target_gauge


class PhoneCapacityCollector(ViewsCollector):
    def collect(self) -> Iterator[Metric]:
        views = self._views()
        yield target_gauge(
            "cph_phone_models_up",
            "1 when the latest listing of the phone models (ListCloudPhoneModels) succeeded.",
            views,
            lambda snapshot: snapshot.watched.phone_models_up,
        )
        capacity = server_gauge(
            "cph_server_phone_capacity",
            "Cloud phones a server of this flavour holds (phone_capacity of its "
            "phone_model_name); absent when the flavour is not among the phone models.",
        )
        capacities = {
            id(view): {
                model.phone_model_name: model.phone_capacity
                for model in view.snapshot.watched.phone_models or ()
            }
            for view in views
        }
        for item in exported_servers(views) if any(capacities.values()) else ():
            phones = capacities[id(item.view)].get(item.record.server.phone_model_name)
            if phones is not None:
                capacity.add_metric(item.identity, phones)
        yield capacity
