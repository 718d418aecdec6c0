"""Typed views of CPH API answers, tolerant of what real answers do.

Real answers omit arrays or send them as null, repeat keys, mix two time formats, carry
undocumented status codes and sometimes put strings where numbers belong. Parsing never
raises for such answers; only a server without a server_id is refused (it has no identity).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


class ParseError(ValueError):
    """An answer that cannot describe a server at all."""


@dataclass(frozen=True, slots=True)
class Bandwidth:
    bandwidth_id: str
    name: str
    size_mbit_per_second: float | None
    charge_mode: int | None  # 0 by bandwidth, 1 by traffic
    share_type: int | None  # 0 dedicated, 1 shared


@dataclass(frozen=True, slots=True)
class Volume:
    volume_id: str
    name: str
    size_gb: float | None  # GB as the API says, meaning GiB (2^30 bytes)
    volume_type: str


@dataclass(frozen=True, slots=True)
class Server:
    """What both the list call and the detail call say about a server."""

    server_id: str
    server_name: str
    availability_zone: str
    network_version: str
    status: int | None
    server_model_name: str
    phone_model_name: str
    keypair_name: str
    vpc_id: str
    subnet_id: str
    vpc_cidr: str
    subnet_cidr: str
    resource_project_id: str
    enterprise_project_id: str
    address_count: int
    created_at: float | None  # Unix seconds
    updated_at: float | None
    update_time: str  # as sent, to notice changes without parsing


@dataclass(frozen=True, slots=True)
class ServerDetails:
    """What only the detail call says."""

    bandwidths: tuple[Bandwidth, ...]
    volumes: tuple[Volume, ...]


def clean_text(value: object) -> str:
    """A label-safe string: absent is "", lone surrogates (from \\ud800 escapes) become U+FFFD."""
    if type(value) is str and value.isascii():  # nearly every value: no copy to check
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value) if not isinstance(value, float) or math.isfinite(value) else ""
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 round trip: each lone surrogate becomes exactly one U+FFFD.
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def parse_number(value: object) -> float | None:
    """A finite number from a number or a numeric string; anything else is unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # JSON integers are unbounded: 1e400 written out in digits
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_int(value: object) -> int | None:
    number = parse_number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> float | None:
    """Unix seconds from either documented format; both are UTC.

    The documented forms are fixed-width and parse by slicing; anything else (single-digit
    fields, other digits, odd widths) goes to the tolerant parser, which decides as before.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    fast = _sliced_time(text)
    return fast if fast is not None else strptime_time(text)


def _sliced_time(text: str) -> float | None:
    """`YYYY-MM-DDTHH:MM:SSZ`, `YYYY-MM-DD HH:MM:SS` or `...SS.ffffffZ` (1-6 digits)."""
    size = len(text)
    if size < 19 or not text.isascii():
        return None
    if text[4] != "-" or text[7] != "-" or text[13] != ":" or text[16] != ":":
        return None
    micro = 0
    if size == 19:
        if text[10] != " ":
            return None
    else:
        if text[10] != "T" or text[-1] != "Z":
            return None
        if size > 20:  # a fraction of a second
            fraction = text[20:-1]
            if text[19] != "." or not 1 <= len(fraction) <= 6 or not fraction.isdigit():
                return None
            micro = int(fraction.ljust(6, "0"))
        elif size != 20:
            return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(field.isdigit() for field in fields):
        return None
    year, month, day, hour, minute, second = map(int, fields)
    try:
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone.utc)
    except ValueError:  # out of range: let the tolerant parser say so
        return None
    return moment.timestamp()


def strptime_time(text: str) -> float | None:
    """The tolerant parser: each documented format tried with `strptime`."""
    for fmt in _TIME_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=timezone.utc).timestamp()
    return None


def _items(value: object) -> list[Mapping[str, Any]]:
    # Absent, null or a non-list all mean "none"; non-object entries are skipped.
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


# The Server fields copied from the answer as text, under the answer's own key names.
_TEXT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Server)
    if f.type == "str" and f.name not in ("server_id", "update_time")
)


def identified_entry(answer: object, what: str, key: str) -> tuple[Mapping[str, Any], str]:
    """An API entry and its identifying field; an entry without one cannot be shown."""
    if not isinstance(answer, Mapping):
        raise ParseError(f"{what} is not a JSON object")
    entry_id = clean_text(answer.get(key)).strip()
    if not entry_id:
        raise ParseError(f"{what} has no {key}")
    return answer, entry_id


def parse_server(answer: object) -> Server:
    answer, server_id = identified_entry(answer, "server entry", "server_id")
    text = {key: clean_text(answer.get(key)) for key in _TEXT_FIELDS}
    return Server(
        server_id=server_id,
        status=parse_int(answer.get("status")),
        address_count=len(_items(answer.get("addresses"))),
        created_at=parse_time(answer.get("create_time")),
        updated_at=parse_time(answer.get("update_time")),
        update_time=clean_text(answer.get("update_time")),
        **text,
    )


def parse_details(answer: object) -> ServerDetails:
    if not isinstance(answer, Mapping):
        raise ParseError("server details are not a JSON object")
    bandwidths = tuple(
        Bandwidth(
            bandwidth_id=clean_text(item.get("band_width_id")),
            name=clean_text(item.get("band_width_name")),
            size_mbit_per_second=parse_number(item.get("band_width_size")),
            charge_mode=parse_int(item.get("band_width_charge_mode")),
            share_type=parse_int(item.get("band_width_share_type")),
        )
        for item in _items(answer.get("band_widths"))
    )
    volumes = tuple(
        Volume(
            volume_id=clean_text(item.get("volume_id")),
            name=clean_text(item.get("volume_name")),
            size_gb=parse_number(item.get("volume_size")),
            volume_type=clean_text(item.get("volume_type")),
        )
        for item in _items(answer.get("volumes"))
    )
    return ServerDetails(bandwidths=bandwidths, volumes=volumes)


# Documented server status codes; anything else is "unknown" and the server is still shown.
SERVER_STATES: Mapping[int, str] = {
    0: "creating",
    1: "creating",
    3: "creating",
    4: "creating",
    2: "abnormal",
    5: "normal",
    8: "frozen",
    10: "stopped",
    11: "stopping",
    12: "stop_failed",
    13: "starting",
}


def server_state(status: int | None) -> str:
    return SERVER_STATES.get(status, "unknown") if status is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Phone:
    """A cloud phone from ListCloudPhones."""

    phone_id: str
    phone_name: str
    server_id: str
    phone_model_name: str
    image_id: str
    image_version: str
    phone_type: str
    status: int | None


PHONE_STATES: Mapping[int, str] = {
    0: "creating",
    1: "creating",
    2: "running",
    3: "resetting",
    4: "restarting",
    6: "frozen",
    7: "stopping",
    8: "stopped",
    -5: "reset_failed",
    -6: "restart_failed",
    -7: "abnormal",
    -8: "create_failed",
    -9: "stop_failed",
}


def phone_state(status: int | None) -> str:
    return PHONE_STATES.get(status, "unknown") if status is not None else "unknown"


def parse_phone(answer: object) -> Phone:
    answer, phone_id = identified_entry(answer, "phone entry", "phone_id")
    return Phone(
        phone_id=phone_id,
        phone_name=clean_text(answer.get("phone_name")),
        server_id=clean_text(answer.get("server_id")).strip(),
        phone_model_name=clean_text(answer.get("phone_model_name")),
        image_id=clean_text(answer.get("image_id")),
        image_version=clean_text(answer.get("image_version")),
        phone_type=clean_text(answer.get("type")),
        status=parse_int(answer.get("status")),
    )
