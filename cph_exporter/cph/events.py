"""Typed views of the answers beside servers and phones: scheduled maintenance events, encode
servers and cloud phone models (flavours), as tolerant as the server models.

Parsing never raises for odd values: an absent or unreadable time is None, an undocumented
status is kept as the raw code and shown as state `unknown`. Only an entry without its
identifying field is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from cph_exporter.cph.models import clean_text, identified_entry, parse_int, parse_time

# Beyond the forms parse_time knows: the space form with fractional seconds, and the ISO
# form without its Z (both UTC, as every time of this API).
_MORE_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f")


def parse_event_time(value: object) -> float | None:
    """Unix seconds from `YYYY-MM-DDTHH:MM:SSZ`, `YYYY-MM-DD HH:MM:SS` (either with fractional
    seconds); None when absent, empty or unreadable."""
    parsed = parse_time(value)
    if parsed is not None or not isinstance(value, str):
        return parsed
    text = value.strip()
    for fmt in _MORE_TIME_FORMATS:
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return when.replace(tzinfo=timezone.utc).timestamp()
    return None


# ---------------------------------------------------------------------------------------------
# ListScheduledEvents

# States after which an event changes no more.
FINAL_EVENT_STATES = frozenset({"completed", "failed", "canceled"})


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    event_id: str
    server_id: str
    server_name: str
    event_type: str  # the API's `type`: localdisk-recovery, system-maintenance
    authorization_type: str  # maintenance, redeploy
    state: str  # inquiring, scheduled, executing, completed, failed, canceled
    published_at: float | None  # Unix seconds, each None when absent
    started_at: float | None
    finished_at: float | None
    not_before: float | None
    not_after: float | None
    not_before_deadline: float | None
    description: str

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_EVENT_STATES


def parse_scheduled_event(answer: object) -> ScheduledEvent:
    answer, event_id = identified_entry(answer, "scheduled event", "event_id")
    return ScheduledEvent(
        event_id=event_id,
        server_id=clean_text(answer.get("server_id")).strip(),
        server_name=clean_text(answer.get("server_name")),
        event_type=clean_text(answer.get("type")),
        authorization_type=clean_text(answer.get("authorization_type")),
        state=clean_text(answer.get("state")).strip(),
        published_at=parse_event_time(answer.get("publish_time")),
        started_at=parse_event_time(answer.get("start_time")),
        finished_at=parse_event_time(answer.get("finish_time")),
        not_before=parse_event_time(answer.get("not_before")),
        not_after=parse_event_time(answer.get("not_after")),
        not_before_deadline=parse_event_time(answer.get("not_before_deadline")),
        description=clean_text(answer.get("description")),
    )


# ---------------------------------------------------------------------------------------------
# ListEncodeServers

ENCODE_SERVER_TYPES: Mapping[int, str] = {0: "server", 1: "container"}
ENCODE_SERVER_STATES: Mapping[int, str] = {
    0: "creating",
    4: "creating",
    5: "creating",
    1: "running",
    2: "abnormal",
    3: "restarting",
}


@dataclass(frozen=True, slots=True)
class EncodeServer:
    encode_server_id: str
    encode_server_name: str
    server_id: str
    encode_type: int | None  # 0 server, 1 container
    status: int | None

    @property
    def type_name(self) -> str:
        if self.encode_type is None:
            return "unknown"
        return ENCODE_SERVER_TYPES.get(self.encode_type, "unknown")

    @property
    def state(self) -> str:
        if self.status is None:
            return "unknown"
        return ENCODE_SERVER_STATES.get(self.status, "unknown")


def parse_encode_server(answer: object) -> EncodeServer:
    answer, encode_server_id = identified_entry(answer, "encode server", "encode_server_id")
    return EncodeServer(
        encode_server_id=encode_server_id,
        encode_server_name=clean_text(answer.get("encode_server_name")),
        server_id=clean_text(answer.get("server_id")).strip(),
        encode_type=parse_int(answer.get("type")),
        status=parse_int(answer.get("status")),
    )


# ---------------------------------------------------------------------------------------------
# ListCloudPhoneModels


@dataclass(frozen=True, slots=True)
class PhoneModel:
    phone_model_name: str
    server_model_name: str
    phone_capacity: int | None  # phones one server of this flavour holds
    status: int | None  # 1 on sale, 0 withdrawn
    cpu: int | None
    memory: int | None  # MB
    disk: int | None  # GiB
    resolution: str


def parse_phone_model(answer: object) -> PhoneModel:
    answer, name = identified_entry(answer, "phone model", "phone_model_name")
    return PhoneModel(
        phone_model_name=name,
        server_model_name=clean_text(answer.get("server_model_name")),
        phone_capacity=parse_int(answer.get("phone_capacity")),
        status=parse_int(answer.get("status")),
        cpu=parse_int(answer.get("cpu")),
        memory=parse_int(answer.get("memory")),
        disk=parse_int(answer.get("disk")),
        resolution=clean_text(answer.get("resolution")),
    )
