"""The simulated project beside its servers and phones: scheduled maintenance events, encode
servers and phone models, and the three list calls that serve them as the API does.

Generated data covers every documented value: each event state with each type, events with
and without each time (in the three time forms the API writes), encode servers in every
status and type, and phone models for every flavour the servers use but one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

EVENT_TYPES = ("localdisk-recovery", "system-maintenance")
AUTHORIZATION_TYPES = ("maintenance", "redeploy")
EVENT_STATES = ("inquiring", "scheduled", "executing", "completed", "failed", "canceled")
FINAL_STATES = frozenset({"completed", "failed", "canceled"})
# Every documented encode server status (0/4/5 creating, 1 running, 2 abnormal, 3 restarting),
# one undocumented code and one null; running dominates after the first of each.
ENCODE_SERVER_STATUSES: tuple[int | None, ...] = (1, 2, 3, 0, 4, 5, 99, None)
# The flavour the simulated ListCloudPhoneModels leaves out: its servers get no capacity.
MISSING_PHONE_MODEL = "kg1.cg.c40.d30SSD.e1v1.old"
_CAPACITIES = (30, 60, 40, 20, 10, 50)
_HOUR = 3600


class BadRequest(ValueError):
    """A query the gateway refuses with 400."""


def _time(at: float, form: int) -> str:
    when = datetime.fromtimestamp(int(at), timezone.utc)
    if form == 1:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    if form == 2:
        return when.strftime("%Y-%m-%dT%H:%M:%S") + ".250Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_scheduled_events(
    servers: Sequence[Mapping[str, Any]], now: float, seed: int = 0, count: int = 36
) -> list[dict[str, Any]]:
    """ListScheduledEvents entries for `servers`, times relative to `now`.

    Event k has type EVENT_TYPES[k % 2] and state EVENT_STATES[k // 2 % 6], so any 12
    consecutive events hold every type with every state. A final event finished an hour ago,
    30 hours ago, or has no finish_time; each other time is absent for some events.
    """
    if not servers:
        return []
    rng = random.Random(seed)
    events = []
    for k in range(count):
        server = servers[(k * 7) % len(servers)]
        state = EVENT_STATES[k // 2 % len(EVENT_STATES)]
        form = k % 3
        published = now - (k + 1) * 3 * _HOUR
        # Upcoming windows from 2 h to about 5 days away: scheduled ones opening inside 24 h
        # and beyond, waiting ones with deadlines inside 72 h and beyond, none within an hour
        # of either bound (so that which ones alert does not depend on when you look); in the
        # fleet of --simulate, windows opening within a day in every zone.
        not_before = now + (2 + (k * 9) % 120) * _HOUR
        event: dict[str, Any] = {
            "event_id": f"{rng.getrandbits(128):032x}"[:8] + f"-evt-{k:04d}",
            "server_id": server["server_id"],
            "server_name": server.get("server_name", ""),
            "server_model_name": server.get("server_model_name", ""),
            "server_state": server.get("status"),
            "type": EVENT_TYPES[k % 2],
            "authorization_type": AUTHORIZATION_TYPES[k // 12 % 2],
            "state": state,
            "description": f"simulated {EVENT_TYPES[k % 2]} of {server.get('server_name', '')}",
        }
        times: dict[str, float | None] = {
            "publish_time": None if k % 7 == 3 else published,
            "not_before": None if k % 5 == 4 else not_before,
            "not_after": None if k % 5 == 2 else not_before + 4 * _HOUR,
            "not_before_deadline": None if k % 4 == 1 else not_before - _HOUR,
            "start_time": None,
            "finish_time": None,
        }
        if state == "executing" or state in FINAL_STATES:
            times["start_time"] = now - 2 * _HOUR if k % 6 != 5 else None
        if state in FINAL_STATES:
            ago = (1 * _HOUR, 30 * _HOUR, None)[k // 12 % 3]
            times["finish_time"] = None if ago is None else now - ago
        for key, at in times.items():
            if at is not None:
                event[key] = _time(at, form)
        events.append(event)
    return events


def generate_encode_servers(
    servers: Sequence[Mapping[str, Any]], seed: int = 0
) -> list[dict[str, Any]]:
    """ListEncodeServers entries: one encode server for every other server, each status at
    least once when there are 16 servers or more, types alternating."""
    rng = random.Random(seed)
    result = []
    for index, server in enumerate(servers[::2]):
        if index < len(ENCODE_SERVER_STATUSES):
            status = ENCODE_SERVER_STATUSES[index]
        else:
            status = 1 if rng.random() < 0.8 else rng.choice(ENCODE_SERVER_STATUSES)
        result.append(
            {
                "encode_server_name": f"{server.get('server_name', '')}-enc",
                "encode_server_id": f"{rng.getrandbits(128):032x}",
                "encode_server_ip": f"192.168.{index // 250}.{index % 250 + 2}",
                "server_id": server["server_id"],
                "keypair_name": server.get("keypair_name", ""),
                "type": index % 2,
                "status": status,
                "access_infos": [
                    {
                        "listen_port": 8000 + index % 100,
                        "access_ip": f"10.246.{index // 250}.{index % 250 + 2}",
                        "intranet_ip": f"192.168.{index // 250}.{index % 250 + 2}",
                        "public_ip": f"10.246.{index // 250}.{index % 250 + 2}",
                        "server_ip": f"192.168.{index // 250}.{index % 250 + 2}",
                        "access_port": 30000 + index % 1000,
                        "type": "TCP",
                        "server_ipv6": "",
                    }
                ],
                "encode_server_ipv6": "",
            }
        )
    return result


def generate_phone_models(servers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ListCloudPhoneModels entries: every flavour the servers use but MISSING_PHONE_MODEL,
    and one withdrawn flavour no server uses."""
    flavours: dict[str, str] = {}
    for server in servers:
        name = server.get("phone_model_name")
        if isinstance(name, str) and name and name != MISSING_PHONE_MODEL:
            flavours.setdefault(name, str(server.get("server_model_name", "")))
    flavours.setdefault("rx1.cp.c10.d4.e1v1.withdrawn", "physical.rx1.2xlarge.cp")
    models = []
    for index, (name, server_model) in enumerate(sorted(flavours.items())):
        models.append(
            {
                "server_model_name": server_model,
                "phone_model_name": name,
                "status": 0 if name.endswith(".withdrawn") else 1,
                "cpu": 2 + index % 3 * 2,
                "memory": 4096 * (1 + index % 2),
                "disk": 32,
                "resolution": "720*1280",
                "extend_spec": '{"cpu_core":"2"}',
                "spec_code": name,
                "phone_capacity": _CAPACITIES[index % len(_CAPACITIES)],
                "image_label": "cloudphone",
                "product_type": 0,
                "phone_model_version": 1,
                "dpi": 320,
                "fps": "30",
                "volume_mode": 0,
                "render_fps": 30,
                "stream_fps": 30,
            }
        )
    return models


# ---------------------------------------------------------------------------------------------
# Answering the three calls


def int_param(
    query: Mapping[str, list[str]],
    name: str,
    default: int | None,
    low: int | None = None,
    high: int | None = None,
) -> int | None:
    if name not in query:
        return default
    try:
        value = int(query[name][-1])
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if low is not None and value < low:
        raise BadRequest(f"{name} must be >= {low}")
    if high is not None and value > high:
        raise BadRequest(f"{name} must be <= {high}")
    return value


def _text(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _choices(query: Mapping[str, list[str]], name: str, allowed: Sequence[str]) -> set[str] | None:
    """A multi-value filter, sent as a comma-separated list (or repeated) by the SDK."""
    if name not in query:
        return None
    chosen = {part for value in query[name] for part in value.split(",") if part}
    unknown = chosen - set(allowed)
    if unknown:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}")
    return chosen


def _when(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def _time_param(query: Mapping[str, list[str]], name: str) -> float | None:
    text = _text(query, name)
    if text is None:
        return None
    at = _when(text)
    if at is None:
        raise BadRequest(f"{name} must be a time like 2024-01-01T00:00:00Z")
    return at


def answer_scheduled_events(
    query: Mapping[str, list[str]], events: Sequence[Mapping[str, Any]], request_id: str
) -> dict[str, Any]:
    """A ListScheduledEvents page: newest published first, paged by the last event_id."""
    limit = int_param(query, "limit", 10, low=1, high=100)
    assert limit is not None
    marker = _text(query, "marker")
    event_id = _text(query, "event_id")
    server_id = _text(query, "server_id")
    since = _time_param(query, "publish_since")
    until = _time_param(query, "publish_until")
    states = _choices(query, "state", EVENT_STATES)
    types = _choices(query, "type", EVENT_TYPES)

    def wanted(event: Mapping[str, Any]) -> bool:
        published = _when(event.get("publish_time"))
        return (
            event_id in (None, event["event_id"])
            and server_id in (None, event.get("server_id"))
            and (states is None or event.get("state") in states)
            and (types is None or event.get("type") in types)
            and (since is None or (published is not None and published >= since))
            and (until is None or (published is not None and published <= until))
        )

    ordered = sorted(
        events, key=lambda e: (-(_when(e.get("publish_time")) or 0.0), str(e["event_id"]))
    )
    matching = [e for e in ordered if wanted(e)]
    start = 0
    if marker:
        positions = [i for i, e in enumerate(matching) if e["event_id"] == marker]
        if not positions:
            raise BadRequest("marker names no event")
        start = positions[0] + 1
    page = matching[start : start + limit]
    answer: dict[str, Any] = {
        "request_id": request_id,
        "count": len(matching),
        "scheduled_events": [dict(e) for e in page],
    }
    if start + limit < len(matching):
        answer["page_info"] = {"next_marker": page[-1]["event_id"]}
    return answer


def _offset_page(
    query: Mapping[str, list[str]],
    items: Sequence[Mapping[str, Any]],
    wanted: Callable[[Mapping[str, Any]], bool],
) -> list[dict[str, Any]]:
    offset = int_param(query, "offset", 0, low=0) or 0
    limit = int_param(query, "limit", 100, low=1, high=100) or 100
    return [dict(item) for item in items if wanted(item)][offset : offset + limit]


def answer_encode_servers(
    query: Mapping[str, list[str]], encode_servers: Sequence[Mapping[str, Any]], request_id: str
) -> dict[str, Any]:
    """A ListEncodeServers page; the SDK's answer model has no count."""
    encode_type = int_param(query, "type", None, low=0, high=1)
    status = int_param(query, "status", None)
    server_id = _text(query, "server_id")

    def wanted(item: Mapping[str, Any]) -> bool:
        return (
            encode_type in (None, item.get("type"))
            and status in (None, item.get("status"))
            and server_id in (None, item.get("server_id"))
        )

    return {"request_id": request_id, "encode_servers": _offset_page(query, encode_servers, wanted)}


def answer_phone_models(
    query: Mapping[str, list[str]], models: Sequence[Mapping[str, Any]], request_id: str
) -> dict[str, Any]:
    status = int_param(query, "status", None, low=0, high=1)
    page = _offset_page(query, models, lambda m: status in (None, m.get("status")))
    return {"request_id": request_id, "phone_models": page}


def answer_watched(
    operation: str,
    query: Mapping[str, list[str]],
    items: Sequence[Mapping[str, Any]],
    request_id: str,
) -> dict[str, Any]:
    """The answer of ListScheduledEvents, ListEncodeServers or ListCloudPhoneModels."""
    answer = {
        "ListScheduledEvents": answer_scheduled_events,
        "ListEncodeServers": answer_encode_servers,
        "ListCloudPhoneModels": answer_phone_models,
    }[operation]
    return answer(query, items, request_id)


def created_within(server: Mapping[str, Any], since: int | None, until: int | None) -> bool:
    """ListCloudPhoneServers' create_since/create_until: Unix seconds (the SDK sends integers),
    both inclusive."""
    if since is None and until is None:
        return True
    at = _when(server.get("create_time"))
    return at is not None and (since is None or at >= since) and (until is None or at <= until)
