"""The official SDK's client against the simulator, for the calls beside servers and phones:
the simulator's answers must deserialise into the SDK's models, every field filled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
)
from tests.helpers.watched import unix, watched_simulator

TIMES = ("not_before", "not_after", "not_before_deadline")
sdk = pytest.importorskip("huaweicloudsdkcph.v1")
core_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")


@pytest.fixture
def sim() -> Iterator[CphSimulator]:
    yield from watched_simulator()


@pytest.fixture
def client(sim: CphSimulator) -> Any:
    credentials = core_credentials.BasicCredentials(
        SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY, SIMULATOR_PROJECT_ID
    )
    return sdk.CphClient.new_builder().with_credentials(credentials).with_endpoint(sim.url).build()


def filled(model: Any) -> dict[str, Any]:
    """The model's attributes as the SDK deserialised them, by the SDK's own field list."""
    return {name: getattr(model, name) for name in model.openapi_types}


def test_scheduled_events_deserialise_with_every_field(client: Any, sim: CphSimulator) -> None:
    events = sim.watched("ListScheduledEvents")
    listed: list[Any] = []
    marker = None
    while True:
        answer = client.list_scheduled_events(
            sdk.ListScheduledEventsRequest(limit=7, marker=marker)
        )
        listed.extend(answer.scheduled_events)
        assert answer.count == len(events)
        if answer.page_info is None or not answer.page_info.next_marker:
            break
        marker = answer.page_info.next_marker
    assert sorted(e.event_id for e in listed) == sorted(e["event_id"] for e in events)
    by_id = {e["event_id"]: e for e in events}
    for event in listed:
        fields = filled(event)
        assert set(by_id[event.event_id]) <= set(fields)  # nothing the SDK does not know
        for key, value in by_id[event.event_id].items():
            assert fields[key] == value, key
        # Every field of the SDK's model but the times some events lack by design.
        missing = {k for k, v in fields.items() if v is None}
        assert missing <= {"publish_time", "start_time", "finish_time", *TIMES}
    for key in ("publish_time", "start_time", "finish_time", *TIMES):
        assert any(getattr(e, key) for e in listed), key
    chosen = client.list_scheduled_events(
        sdk.ListScheduledEventsRequest(
            limit=100, state=["inquiring", "failed"], type=["system-maintenance"]
        )
    )
    assert chosen.scheduled_events
    assert {(e.state, e.type) for e in chosen.scheduled_events} <= {
        ("inquiring", "system-maintenance"),
        ("failed", "system-maintenance"),
    }


def test_encode_servers_deserialise_with_every_field(client: Any, sim: CphSimulator) -> None:
    served = {e["encode_server_id"]: e for e in sim.watched("ListEncodeServers")}
    answer = client.list_encode_servers(sdk.ListEncodeServersRequest(offset=0, limit=100))
    assert {e.encode_server_id for e in answer.encode_servers} == set(served)
    for encoder in answer.encode_servers:
        fields = filled(encoder)
        expected = served[encoder.encode_server_id]
        for key, value in expected.items():
            got = fields[key]
            if key == "access_infos":
                got = [filled(info) for info in got]
            assert got == value, key
        # Every field of the SDK's model, but the status one encode server sends as null.
        assert {k for k, v in fields.items() if v is None} <= {"status"}
        assert all(None not in filled(info).values() for info in encoder.access_infos)
    one = next(iter(served.values()))
    filtered = client.list_encode_servers(
        sdk.ListEncodeServersRequest(server_id=one["server_id"], type=one["type"])
    )
    assert [e.encode_server_id for e in filtered.encode_servers] == [one["encode_server_id"]]


def test_phone_models_deserialise_with_every_field(client: Any, sim: CphSimulator) -> None:
    served = {m["phone_model_name"]: m for m in sim.watched("ListCloudPhoneModels")}
    answer = client.list_cloud_phone_models(sdk.ListCloudPhoneModelsRequest())
    assert {m.phone_model_name for m in answer.phone_models} == set(served)
    for model in answer.phone_models:
        fields = filled(model)
        for key, value in served[model.phone_model_name].items():
            assert fields[key] == value, key
        assert None not in fields.values()  # every field of the SDK's model
    on_sale = client.list_cloud_phone_models(sdk.ListCloudPhoneModelsRequest(status=1))
    assert {m.status for m in on_sale.phone_models} == {1}


def test_server_and_phone_filters_the_sdk_sends(client: Any, sim: CphSimulator) -> None:
    servers = client.list_cloud_phone_servers(
        sdk.ListCloudPhoneServersRequest(server_name="sim-0001")
    )
    assert servers.servers and all("sim-0001" in s.server_name for s in servers.servers)
    flavour = "rx1.cp.c60.d8.e1v1"
    servers = client.list_cloud_phone_servers(
        sdk.ListCloudPhoneServersRequest(phone_model_name=flavour)
    )
    assert servers.servers and {s.phone_model_name for s in servers.servers} == {flavour}
    phones = client.list_cloud_phones(
        sdk.ListCloudPhonesRequest(status=2, type=0, phone_name="-p1")
    )
    assert phones.phones
    assert all(p.status == 2 and p.type == 0 and "-p1" in p.phone_name for p in phones.phones)


def test_the_creation_window_filter(client: Any, sim: CphSimulator) -> None:
    since, until = 1609459200, 1609459200 + 30 * 3607  # 2021-01-01 and about 30 hours on
    answer = client.list_cloud_phone_servers(
        sdk.ListCloudPhoneServersRequest(create_since=since, create_until=until)
    )
    times = [unix(s.create_time) for s in answer.servers]
    created = sorted(at for at in times if at is not None)
    assert len(created) == len(times)
    assert created and all(since <= at <= until for at in created)
    assert answer.count < sim.server_count
