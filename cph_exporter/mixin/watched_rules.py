"""The alert rules on what the CPH API lists beside servers and phones: Huawei's scheduled
maintenance of a server, the encode servers that stream the phones' screens, and the three
listings themselves failing.
"""

from __future__ import annotations

from typing import Any

from cph_exporter.mixin.annotations import SERVER, SERVER_SHORT, human, rule
from cph_exporter.mixin.settings import MixinConfig

EVENT = "cph_server_scheduled_event_"
# An event's time joined with what kind of event it is, for the events in `state`.
_EVENT_KIND = (
    "  * on (job, instance, server_id, event_id) group_left (event_type, authorization_type,"
    " state)\n"
    '    cph_server_scheduled_event_info{{state="{state}"}}\n'
)
EVENT_NAMED = (
    "{{ $labels.event_type }} (event {{ $labels.event_id }}, authorisation type"
    " {{ $labels.authorization_type }})"
)
ENCODE_SERVER = (
    "Encode server {{ $labels.encode_server_name }} (encode_server_id"
    " {{ $labels.encode_server_id }}, type {{ $labels.type }}) of CPH server"
    " {{ $labels.server_id }}"
)
CONSOLE_EVENTS = "the CPH console (Cloud Phone Host > Scheduled Events)"


def _hours(hours: float) -> str:
    return f"{hours:g} hours" if hours != 1 else "an hour"


def maintenance_rules(c: MixinConfig) -> list[dict[str, Any]]:
    t = c.thresholds
    authorise, imminent = t.maintenance_authorise_hours, t.maintenance_imminent_hours
    return [
        # $value is the deadline: the alert keeps firing past it while the event waits.
        rule(
            c,
            "CphMaintenanceNeedsAuthorisation",
            f"{EVENT}not_before_deadline_timestamp_seconds\n"
            + _EVENT_KIND.format(state="inquiring")
            + f"< time() + {authorise * 3600:g}\n",
            f"Maintenance of CPH server {SERVER_SHORT} must be authorised by"
            " {{ $value | humanizeTimestamp }}",
            f"Huawei Cloud has scheduled a {EVENT_NAMED} of cloud phone server {SERVER}, and"
            " it is waiting for authorisation. The deadline for authorising it and choosing"
            " its window is {{ $value | humanizeTimestamp }}: less than"
            f" {_hours(authorise)} away, if not past already. Authorise it in"
            f" {CONSOLE_EVENTS} and choose a window that suits the server's users; after the"
            " deadline the maintenance happens at a time Huawei Cloud chooses.",
        ),
        rule(
            c,
            "CphMaintenanceImminent",
            f"{EVENT}not_before_timestamp_seconds\n"
            + _EVENT_KIND.format(state="scheduled")
            + f"< time() + {imminent * 3600:g}\n",
            f"Maintenance of CPH server {SERVER_SHORT} begins within {_hours(imminent)}",
            f"The {EVENT_NAMED} of cloud phone server {SERVER} is scheduled: its window"
            " opens at {{ $value | humanizeTimestamp }}, within"
            f" {_hours(imminent)} (or has opened). Expect the server and its cloud phones"
            " to be unavailable during the window: tell their users, or move them to other"
            f" servers; the window is shown in {CONSOLE_EVENTS}.",
        ),
        rule(
            c,
            "CphMaintenanceFailed",
            f'{EVENT}info{{state="failed"}} == 1',
            f"Maintenance of CPH server {SERVER_SHORT} failed",
            f"The {EVENT_NAMED} of cloud phone server {SERVER} has failed, and has been"
            f" reported failed for more than {human(c.for_('CphMaintenanceFailed'))}. The"
            " server may be left unrepaired or broken: check it and its cloud phones in the"
            " CPH console, and open a ticket with Huawei Cloud support naming the event ID."
            " The alert ends 24 hours after the event finished, when the exporter stops"
            " exporting it.",
        ),
    ]


def encoding_rules(c: MixinConfig) -> list[dict[str, Any]]:
    return [
        rule(
            c,
            "CphEncodeServerAbnormal",
            'cph_encode_server_state{state="abnormal"} == 1',
            "CPH encode server {{ $labels.encode_server_name }} is abnormal",
            f"{ENCODE_SERVER} has reported status 2 (abnormal) for more than"
            f" {human(c.for_('CphEncodeServerAbnormal'))}: the screens of the cloud phones"
            " it streams are probably not reaching their users. Check it in the CPH console"
            " (Cloud Phone Host > Encode Servers) and restart it; open a ticket with Huawei"
            " Cloud support if it stays abnormal.",
        ),
        rule(
            c,
            "CphEncodeServerStuckCreating",
            'cph_encode_server_state{state="creating"} == 1',
            "CPH encode server {{ $labels.encode_server_name }} has been creating for over"
            f" {human(c.for_('CphEncodeServerStuckCreating'))}",
            f"{ENCODE_SERVER} has been in a creating status (0, 4 or 5) for more than"
            f" {human(c.for_('CphEncodeServerStuckCreating'))}; creation normally takes"
            " minutes. Check it in the CPH console (Cloud Phone Host > Encode Servers); if it"
            " does not progress, open a ticket with Huawei Cloud support.",
        ),
    ]


def _listing_down(
    c: MixinConfig, alert: str, metric: str, what: str, call: str, impact: str, flag: str
) -> dict[str, Any]:
    return rule(
        c,
        alert,
        f"{metric} == 0",
        f"The CPH exporter {{{{ $labels.instance }}}} cannot list the {what}",
        "The exporter {{ $labels.instance }} (job {{ $labels.job }}) has failed to list the"
        f" {what} ({call}) of project {{{{ $labels.project_id }}}} in region"
        f" {{{{ $labels.region }}}} for more than {human(c.for_(alert))}, so {impact}. Its"
        f" log names the HTTP status and error_code: a 403 means the IAM user may not call"
        f" {call}; otherwise see CphApiDown. Run with --no-collector.{flag} if the {what}"
        " are not wanted.",
    )


def listing_rules(c: MixinConfig) -> list[dict[str, Any]]:
    """The listings' own health, in the exporter group: one per optional part that is on."""
    d = c.dashboards
    out = []
    if d.maintenance:
        out.append(
            _listing_down(
                c,
                "CphScheduledEventsListingDown",
                "cph_scheduled_events_up",
                "scheduled events",
                "ListScheduledEvents",
                "the scheduled events shown are the last ones listed, or none, and a"
                " maintenance waiting for authorisation can go unnoticed",
                "scheduled-events",
            )
        )
    if d.encoding:
        out.append(
            _listing_down(
                c,
                "CphEncodeServersListingDown",
                "cph_encode_servers_up",
                "encode servers",
                "ListEncodeServers",
                "the encode servers shown are the last ones listed, or none, and the encode"
                " server alerts cannot be trusted",
                "encode-servers",
            )
        )
    if d.phones:
        out.append(
            _listing_down(
                c,
                "CphPhoneModelsListingDown",
                "cph_phone_models_up",
                "phone models",
                "ListCloudPhoneModels",
                "cph_server_phone_capacity holds the capacities last listed, or none",
                "phone-capacity",
            )
        )
    return out
