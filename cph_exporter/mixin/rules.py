"""The alert rules, built from the mixin's config.

Severities, `for` durations and thresholds come from the config, and so does the selector
added to every series the rules read; every alert links its section of the runbooks.
"""

from __future__ import annotations

from typing import Any

from cph_exporter.mixin.annotations import SERVER, SERVER_SHORT, human, number, rule
from cph_exporter.mixin.settings import MixinConfig
from cph_exporter.mixin.watched_rules import encoding_rules, listing_rules, maintenance_rules

PHONE_DETAILS = "in the CPH console (or in cph_phone_state with --collector.phone-details)"
PHONE_FAILED_STATES = "reset_failed|restart_failed|create_failed|stop_failed"
PHONE_BUSY_STATES = "creating|resetting|restarting|stopping"


def server_rules(c: MixinConfig) -> list[dict[str, Any]]:
    t = c.thresholds
    return [
        rule(
            c,
            "CphServerAbnormal",
            'cph_server_state{state="abnormal"} == 1',
            f"CPH server {SERVER_SHORT} is abnormal",
            f"Cloud phone server {SERVER} has reported status 2 (abnormal) for more than"
            f" {human(c.for_('CphServerAbnormal'))}; its cloud phones are probably unusable."
            " Check the server and its phones in the CPH console, restart the server, and"
            " open a ticket with Huawei Cloud support if it stays abnormal.",
        ),
        rule(
            c,
            "CphServerFrozen",
            'cph_server_state{state="frozen"} == 1',
            f"CPH server {SERVER_SHORT} is frozen",
            f"Cloud phone server {SERVER} has been frozen (status 8) for more than"
            f" {human(c.for_('CphServerFrozen'))}. Frozen servers are usually blocked for"
            " billing reasons: check the account balance and the order in the Billing Center,"
            " renew or pay, and the server is unfrozen.",
        ),
        rule(
            c,
            "CphServerStopFailed",
            'cph_server_state{state="stop_failed"} == 1',
            f"CPH server {SERVER_SHORT} failed to stop",
            f"Cloud phone server {SERVER} has been in status 12 (stop failed) for more than"
            f" {human(c.for_('CphServerStopFailed'))}. Retry the stop in the CPH console or"
            " API; if it fails again, open a ticket with Huawei Cloud support.",
        ),
        # `for` measures how long Prometheus has seen the state; it survives Prometheus
        # restarts (the for-state is restored) but restarts if the series goes away.
        rule(
            c,
            "CphServerStuckCreating",
            'cph_server_state{state="creating"} == 1',
            f"CPH server {SERVER_SHORT} has been creating for over"
            f" {human(c.for_('CphServerStuckCreating'))}",
            f"Cloud phone server {SERVER} has been in a creating status (0, 1, 3 or 4) for"
            f" more than {human(c.for_('CphServerStuckCreating'))}; creation normally takes"
            " minutes. Check the order and the server in the CPH console; if it does not"
            " progress, open a ticket with Huawei Cloud support, or delete and recreate it.",
        ),
        # Joined with cph_server_status so that $value is the undocumented status code.
        rule(
            c,
            "CphServerUnknownStatus",
            'cph_server_status * ignoring(state) (cph_server_state{state="unknown"} == 1)',
            f"CPH server {SERVER_SHORT} has undocumented status {{{{ $value }}}}",
            f"Cloud phone server {SERVER} has reported status code {{{{ $value }}}} for more"
            f" than {human(c.for_('CphServerUnknownStatus'))}, which the CPH API documentation"
            " does not define. Look at the server in the CPH console; if the code is a new"
            " documented status, teach the exporter its state.",
        ),
        # One page for an availability zone in trouble instead of one per server: the
        # per-server alerts of the zone are inhibited by this one in Alertmanager.
        rule(
            c,
            "CphAvailabilityZoneDegraded",
            "(\n"
            '  sum by (job, availability_zone) (cph_server_state{state="abnormal"})\n'
            "    / count by (job, availability_zone) (cph_server_status)\n"
            f"  > {t.az_abnormal_ratio:g}\n"
            ")\n"
            "and on (job, availability_zone)\n"
            f"  count by (job, availability_zone) (cph_server_status) >= {t.az_min_servers}\n",
            "{{ $value | humanizePercentage }} of the CPH servers in"
            " {{ $labels.availability_zone }} are abnormal",
            "{{ $value | humanizePercentage }} of the cloud phone servers in availability zone"
            " {{ $labels.availability_zone }} (job {{ $labels.job }}) have been abnormal for"
            f" more than {human(c.for_('CphAvailabilityZoneDegraded'))}, more than"
            f" {t.az_abnormal_ratio:.0%} of the zone: an outage of the zone rather than of"
            " single servers. The per-server alerts of the zone are held back while this one"
            " fires. Check the Huawei Cloud service health dashboard and open a ticket with"
            " Huawei Cloud support naming the zone.",
        ),
    ]


def phone_rules(c: MixinConfig) -> list[dict[str, Any]]:
    return [
        rule(
            c,
            "CphServerPhonesAbnormal",
            'cph_server_phones{state="abnormal"} > 0',
            f"{{{{ $value }}}} cloud phone(s) on CPH server {SERVER_SHORT} are abnormal",
            f"{{{{ $value }}}} cloud phone(s) on server {SERVER} have been abnormal (phone"
            f" status -7) for more than {human(c.for_('CphServerPhonesAbnormal'))} and are"
            f" probably unusable. Find them {PHONE_DETAILS}, restart or reset them, and open a"
            " ticket with Huawei Cloud support if they stay abnormal; check the server too if"
            " all its phones are.",
        ),
        rule(
            c,
            "CphServerPhonesFailed",
            f'cph_server_phones{{state=~"{PHONE_FAILED_STATES}"}} > 0',
            f"{{{{ $value }}}} cloud phone(s) on CPH server {SERVER_SHORT} are in"
            " {{ $labels.state }}",
            f"{{{{ $value }}}} cloud phone(s) on server {SERVER} have been in state"
            f" {{{{ $labels.state }}}} for more than {human(c.for_('CphServerPhonesFailed'))}:"
            f" a reset, restart, creation or stop did not go through. Find them {PHONE_DETAILS}"
            " and retry the operation; if it fails again, open a ticket with Huawei Cloud"
            " support.",
        ),
        # Stuck: the count has not dropped to 0 for the whole `for`. min_over_time over 5m
        # keeps the expression (and so the `for`) alive across a failed scrape, which marks
        # the series stale; `for` makes a server that appears with such phones wait too.
        rule(
            c,
            "CphServerPhonesStuck",
            f'min_over_time(cph_server_phones{{state=~"{PHONE_BUSY_STATES}"}}[5m]) > 0',
            f"Cloud phones on CPH server {SERVER_SHORT} have been {{{{ $labels.state }}}} for"
            f" over {human(c.for_('CphServerPhonesStuck'))}",
            "Server {{ $labels.server_name }} (server_id {{ $labels.server_id }}, availability"
            " zone {{ $labels.availability_zone }}) has had cloud phones in state"
            f" {{{{ $labels.state }}}} for more than {human(c.for_('CphServerPhonesStuck'))}"
            " without interruption, {{ $value }} now; the operation normally takes minutes."
            f" Find them {PHONE_DETAILS}; if they do not progress, open a ticket with Huawei"
            " Cloud support, or retry the operation.",
        ),
    ]


def exporter_rules(c: MixinConfig) -> list[dict[str, Any]]:
    t = c.thresholds
    exporter = "The exporter {{ $labels.instance }} (job {{ $labels.job }})"
    return [
        rule(
            c,
            "CphApiDown",
            "cph_up == 0",
            "The CPH exporter {{ $labels.instance }} cannot read the CPH API",
            f"{exporter} has failed to list the CPH servers of project {{{{ $labels.project_id"
            " }} in region {{ $labels.region }} for more than"
            f" {human(c.for_('CphApiDown'))}, so per-server data is missing or out of date."
            " Its log names the HTTP status, error_code and request_id: 401/APIGW.0301 means"
            " the AK/SK or security token is wrong or expired, 403 that the IAM user may not"
            " read CPH servers, other errors network trouble or an API outage.",
        ),
        rule(
            c,
            "CphPhonesListingDown",
            "cph_phones_up == 0",
            "The CPH exporter {{ $labels.instance }} cannot list the cloud phones",
            f"{exporter} has failed to list the cloud phones (ListCloudPhones) of project"
            " {{ $labels.project_id }} in region {{ $labels.region }} for more than"
            f" {human(c.for_('CphPhonesListingDown'))}, so cph_server_phones shows the last"
            " phones listed, or nothing, and the phone alerts cannot be trusted. Its log names"
            " the HTTP status and error_code: a 403 means the IAM user may not list cloud"
            " phones; otherwise see CphApiDown. Run with --no-collector.phones if the phones"
            " are not wanted.",
        ),
        # A TTL of 0 (no cache) is floored so that it cannot make every age "stale".
        rule(
            c,
            "CphExporterDataStale",
            f"cph_exporter_data_age_seconds > {t.stale_ttls:g} *"
            f" clamp_min(cph_exporter_cache_ttl_seconds, {t.stale_ttl_floor_seconds:g})",
            "The CPH exporter {{ $labels.instance }} is serving stale data",
            "The data served by the exporter {{ $labels.instance }} (job {{ $labels.job }}) is"
            " {{ $value | humanizeDuration }} old, more than"
            f" {number(t.stale_ttls)} cache TTLs: refreshes are not succeeding. Check the"
            " exporter log for failed or hanging refreshes and the CphApiDown alert; restart"
            " the exporter if it is stuck.",
        ),
        rule(
            c,
            "CphDetailFetchFailing",
            "cph_exporter_servers_without_details > 0",
            "The CPH exporter {{ $labels.instance }} cannot fetch some server details",
            f"For more than {human(c.for_('CphDetailFetchFailing'))} the exporter"
            " {{ $labels.instance }} (job {{ $labels.job }}) has had {{ $value }} server(s)"
            " without details: GetCloudPhoneServerDetail keeps failing, so their bandwidths"
            " and volumes are missing (status still comes from the list). Check the exporter"
            " log for the server_id, HTTP status and error_code; a 403 means the IAM user may"
            " not read server details, a 404 a server ID given with --cph.server-id that does"
            " not exist.",
        ),
        rule(
            c,
            "CphApiThrottled",
            "sum without (operation, code)"
            ' (rate(cph_exporter_api_requests_total{code="429"}[10m]))\n'
            "  / sum without (operation, code) (rate(cph_exporter_api_requests_total[10m]))\n"
            f"> {t.throttled_ratio:g}\n",
            "The CPH API is throttling the exporter {{ $labels.instance }}",
            "{{ $value | humanizePercentage }} of the CPH API calls made by the exporter"
            " {{ $labels.instance }} (job {{ $labels.job }}) over the last 10 minutes were"
            " throttled (HTTP 429, APIGW.0308). The limit is shared by every client of the"
            " account: raise --cache.ttl, scrape less often, run fewer exporter replicas, or"
            " ask Huawei Cloud for a higher quota.",
        ),
        # Job-name independent: a target that exposed cph_exporter_build_info in the last day.
        rule(
            c,
            "CphExporterDown",
            "up == 0 and on (job, instance) present_over_time(cph_exporter_build_info[1d])",
            "The CPH exporter {{ $labels.instance }} cannot be scraped",
            "Prometheus has failed to scrape the CPH exporter {{ $labels.instance }} (job"
            f" {{{{ $labels.job }}}}) for more than {human(c.for_('CphExporterDown'))}, so no"
            " CPH alert can fire for the servers it watches. Check that the exporter process or"
            " container is running, its log, and the network path and scrape timeout from"
            " Prometheus.",
        ),
        # Fires when no CPH exporter is scraped at all (e.g. the scrape job was removed or
        # renamed). Drop this rule if you load these rules into a Prometheus without one.
        rule(
            c,
            "CphExporterAbsent",
            "absent(cph_up)",
            "No CPH exporter is being scraped",
            "This Prometheus has had no cph_up series for more than"
            f" {human(c.for_('CphExporterAbsent'))}: no CPH exporter is scraped, so no CPH"
            " alert can fire. Check the scrape configuration and service discovery for the"
            " exporter's job, and the exporter itself.",
        ),
    ]


def groups(config: MixinConfig) -> list[dict[str, Any]]:
    out = [{"name": "cph-servers", "rules": server_rules(config)}]
    if config.dashboards.phones:
        out.append({"name": "cph-phones", "rules": phone_rules(config)})
    if config.dashboards.maintenance:
        out.append({"name": "cph-maintenance", "rules": maintenance_rules(config)})
    if config.dashboards.encoding:
        out.append({"name": "cph-encoding", "rules": encoding_rules(config)})
    rules = exporter_rules(config)
    if not config.dashboards.phones:
        rules = [r for r in rules if r["alert"] != "CphPhonesListingDown"]
    # The other listings' health right after the phones' (or where it would be).
    at = next(i for i, r in enumerate(rules) if r["alert"] == "CphExporterDataStale")
    rules[at:at] = listing_rules(config)
    out.append({"name": "cph-exporter", "rules": rules})
    return out


def alert_names(config: MixinConfig) -> list[str]:
    return [r["alert"] for g in groups(config) for r in g["rules"]]
