"""The panels on what the CPH API lists beside servers and phones: the fleet overview's
"Maintenance" and "Encoding" rows, and the server detail's scheduled events and phones
against capacity. Queries are unfiltered; dashboards.py adds the selectors."""

from __future__ import annotations

from typing import Any

from cph_exporter.mixin.panels import gauge, grid, panel_target, row, stat, table
from cph_exporter.mixin.settings import MixinConfig

EVENT = "cph_server_scheduled_event_"
OPEN_STATES = "inquiring|scheduled|executing"
FINAL_STATES = "completed|failed|canceled"
EVENT_KEY = "on (job, instance, server_id, event_id)"
_EVENT_COLUMNS = {
    "server_name": "server",
    "availability_zone": "AZ",
    "event_type": "type",
    "authorization_type": "authorisation",
}
_COUNTDOWNS = {
    "Value #B": "window opens in",
    "Value #C": "authorise within",
    "Value #D": "window closes in",
}


def _event_table(
    id_: int, title: str, description: str, place: dict[str, int], events: str
) -> dict[str, Any]:
    """The events `events` selects (an info selector), with countdowns to their times; a
    time the event lacks is an empty cell."""

    def countdown(time: str, ref: str) -> dict[str, Any]:
        expr = f"{EVENT}{time}_timestamp_seconds - time() and {EVENT_KEY} {events}"
        return panel_target(expr, "__auto", ref, table=True)

    targets = [
        panel_target(events, "__auto", "A", table=True),
        countdown("not_before", "B"),
        countdown("not_before_deadline", "C"),
        countdown("not_after", "D"),
    ]
    rename = _EVENT_COLUMNS | _COUNTDOWNS
    return table(
        id_,
        title,
        description,
        place,
        targets,
        rename,
        "s",
        hide=("Value #A",),
        sort_by="window opens in",
    )


def maintenance_row(config: MixinConfig, y: int) -> list[dict[str, Any]]:
    """Huawei's scheduled maintenance of the fleet's servers: what waits, what comes soon."""
    hours = config.thresholds.maintenance_imminent_hours
    az = 'availability_zone=~"$az"'
    upcoming = f'{EVENT}info{{state=~"{OPEN_STATES}",{az}}}'
    return [
        row(60, "Maintenance", y),
        stat(
            61,
            "Waiting for authorisation",
            "Scheduled maintenance events in state inquiring: they happen at a time Huawei"
            " Cloud chooses unless authorised before their deadline (see the table).",
            grid(0, y + 1, 6, 4),
            f'count({EVENT}info{{state="inquiring",{az}}})',
            "inquiring",
            no_value="0",
        ),
        stat(
            62,
            f"Windows opening within {hours:g} h",
            f"Events waiting or scheduled whose window opens within {hours:g} hours.",
            grid(6, y + 1, 6, 4),
            f"count({EVENT}not_before_timestamp_seconds{{{az}}} < time() + {hours * 3600:g}"
            f' and {EVENT_KEY} {EVENT}info{{state=~"inquiring|scheduled"}})',
            "soon",
            no_value="0",
        ),
        stat(
            63,
            "Failed (last 24 h)",
            "Events that failed; the exporter shows finished events for 24 hours.",
            grid(12, y + 1, 6, 4),
            f'count({EVENT}info{{state="failed",{az}}})',
            "failed",
            no_value="0",
        ),
        stat(
            64,
            "Event listing",
            "1 when the latest ListScheduledEvents call of every target succeeded.",
            grid(18, y + 1, 6, 4),
            "min(cph_scheduled_events_up)",
            "up",
        ),
        _event_table(
            65,
            "Upcoming maintenance",
            "Events not finished, soonest window first, with the time left until the window"
            " opens, until the authorisation deadline and until the window closes (negative:"
            " passed). Authorise inquiring ones in the CPH console before their deadline.",
            grid(0, y + 5, 24, 8),
            upcoming,
        ),
        table(
            66,
            "Finished in the last 24 hours",
            "Events completed, failed or canceled within the last 24 hours.",
            grid(0, y + 13, 24, 6),
            [
                panel_target(
                    f'{EVENT}info{{state=~"{FINAL_STATES}",{az}}}', "__auto", "A", table=True
                )
            ],
            _EVENT_COLUMNS,
            hide=("Value",),
        ),
    ]


def encoding_row(y: int) -> list[dict[str, Any]]:
    """The encode servers that stream the phones' screens, by state, and the ones not running."""
    servers = (
        "group by (job, instance, server_id, server_name, availability_zone)"
        ' (cph_server_info{availability_zone=~"$az"})'
    )
    in_az = f"on (job, instance, server_id) {servers}"
    return [
        row(70, "Encoding", y),
        stat(
            71,
            "Encode servers by state",
            "Encode servers (ListEncodeServers) per state: creating (0, 4, 5), running (1),"
            " abnormal (2), restarting (3), unknown (any other code).",
            grid(0, y + 1, 18, 4),
            f"count by (state) (cph_encode_server_state == 1 and {in_az})",
            "{{state}}",
        ),
        stat(
            72,
            "Encode server listing",
            "1 when the latest ListEncodeServers call of every target succeeded.",
            grid(18, y + 1, 6, 4),
            "min(cph_encode_servers_up)",
            "up",
        ),
        table(
            73,
            "Encode servers not running",
            "Encode servers abnormal, restarting, creating or in an undocumented status, with"
            " their status code and the CPH server they belong to.",
            grid(0, y + 5, 24, 8),
            [
                panel_target(
                    "cph_encode_server_status * on (job, instance, encode_server_id)"
                    ' group_left (state) (cph_encode_server_state{state!="running"} == 1)'
                    " * on (job, instance, server_id) group_left (server_name,"
                    f" availability_zone) {servers}",
                    "__auto",
                    "A",
                    table=True,
                )
            ],
            {"Value": "status code", "server_name": "server", "availability_zone": "AZ"},
        ),
    ]


def detail_events(y: int) -> list[dict[str, Any]]:
    """The server detail's row of the server's scheduled maintenance events."""
    return [
        row(30, "Scheduled maintenance", y),
        _event_table(
            31,
            "Scheduled events of this server",
            "Huawei Cloud's scheduled maintenance of this server: events not finished, and"
            " those finished within the last 24 hours, with the time left until the window"
            " opens, the authorisation deadline and the window's end (negative: passed).",
            grid(0, y + 1, 24, 6),
            f'{EVENT}info{{server_id="$server"}}',
        ),
    ]


def detail_capacity(y: int) -> list[dict[str, Any]]:
    """The server's cloud phones against what a server of its flavour holds."""
    phones = 'sum by (job, instance, server_id) (cph_server_phones{server_id="$server"})'
    capacity = 'cph_server_phone_capacity{server_id="$server"}'
    used = stat(
        23,
        "Phones and capacity",
        "The server's cloud phones (every state) and the phone_capacity of its flavour"
        " (ListCloudPhoneModels).",
        grid(12, y, 12, 6),
        f"sum({phones})",
        "phones",
    )
    used["targets"].append(panel_target(f"max({capacity})", "capacity", "B"))
    return [
        gauge(
            22,
            "Phones against capacity",
            "The server's cloud phones as a share of its flavour's phone_capacity. Empty"
            " when the flavour is not among the phone models the API lists.",
            grid(0, y, 12, 6),
            f"{phones} / on (job, instance, server_id) {capacity}",
            "unknown capacity",
        ),
        used,
    ]
