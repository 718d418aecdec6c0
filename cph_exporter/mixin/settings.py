"""The mixin's config: what an operator tunes without forking the rules and dashboards.

Every key is optional; an unknown key is an error, so that a typo does not silently keep
a default. The defaults produce the files committed in the repository.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RUNBOOK_URL = "https://github.com/cph-exporter/cph-exporter/blob/main/docs/runbooks.md"
DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w|y)$")
SEVERITIES = frozenset({"critical", "warning", "info"})

# Alert -> (severity, for) as shipped.
ALERT_DEFAULTS: dict[str, tuple[str, str]] = {
    "CphServerAbnormal": ("critical", "5m"),
    "CphServerFrozen": ("warning", "5m"),
    "CphServerStopFailed": ("warning", "5m"),
    "CphServerStuckCreating": ("warning", "1h"),
    "CphServerUnknownStatus": ("warning", "15m"),
    "CphAvailabilityZoneDegraded": ("critical", "5m"),
    "CphServerPhonesAbnormal": ("warning", "10m"),
    "CphServerPhonesFailed": ("warning", "10m"),
    "CphServerPhonesStuck": ("warning", "30m"),
    "CphMaintenanceNeedsAuthorisation": ("warning", "5m"),
    "CphMaintenanceImminent": ("info", "5m"),
    "CphMaintenanceFailed": ("critical", "5m"),
    "CphEncodeServerAbnormal": ("critical", "10m"),
    "CphEncodeServerStuckCreating": ("warning", "1h"),
    "CphApiDown": ("warning", "5m"),
    "CphPhonesListingDown": ("warning", "15m"),
    "CphScheduledEventsListingDown": ("warning", "15m"),
    "CphEncodeServersListingDown": ("warning", "15m"),
    "CphPhoneModelsListingDown": ("warning", "1h"),
    "CphExporterDataStale": ("warning", "2m"),
    "CphDetailFetchFailing": ("warning", "15m"),
    "CphApiThrottled": ("warning", "10m"),
    "CphExporterDown": ("warning", "5m"),
    "CphExporterAbsent": ("warning", "15m"),
}


@dataclasses.dataclass(frozen=True)
class Alert:
    severity: str
    for_: str


@dataclasses.dataclass(frozen=True)
class Thresholds:
    # CphAvailabilityZoneDegraded: more than this share of an AZ's servers abnormal...
    az_abnormal_ratio: float = 0.5
    # ...in an AZ of at least this many servers (a 2-server AZ with one abnormal is not an outage)
    az_min_servers: int = 4
    # CphExporterDataStale: data older than this many cache TTLs...
    stale_ttls: float = 3
    # ...the TTL counted as at least this many seconds (a TTL of 0 means no cache)
    stale_ttl_floor_seconds: float = 10
    # CphApiThrottled: more than this share of the API calls answered 429
    throttled_ratio: float = 0.1
    # CphMaintenanceNeedsAuthorisation: an event waiting for authorisation whose deadline is
    # less than this many hours away
    maintenance_authorise_hours: float = 72
    # CphMaintenanceImminent: a scheduled event whose window opens within this many hours
    maintenance_imminent_hours: float = 24


@dataclasses.dataclass(frozen=True)
class Dashboards:
    refresh: str = "1m"
    fleet_time_from: str = "now-6h"
    detail_time_from: str = "now-24h"
    editable: bool = False
    # Optional rows of the fleet overview (and the phone row of the server detail). phones,
    # maintenance and encoding take their alerts with them.
    phones: bool = True
    cloud_eye: bool = True
    maintenance: bool = True
    encoding: bool = True


@dataclasses.dataclass(frozen=True)
class MixinConfig:
    # PromQL matchers added to every selector of the exporter's series, e.g. 'job="cph"'.
    selector: str = ""
    runbook_url: str = DEFAULT_RUNBOOK_URL
    alerts: dict[str, Alert] = dataclasses.field(
        default_factory=lambda: {n: Alert(s, f) for n, (s, f) in ALERT_DEFAULTS.items()}
    )
    thresholds: Thresholds = Thresholds()
    dashboards: Dashboards = Dashboards()

    def severity(self, alert: str) -> str:
        return self.alerts[alert].severity

    def for_(self, alert: str) -> str:
        return self.alerts[alert].for_


class ConfigError(ValueError):
    pass


def _fields(cls: type[Any], data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(cls(), f.name)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, (type(default), int) if isinstance(default, float) else type(default)
        ):
            raise ConfigError(f"{where}.{f.name}: expected {type(default).__name__}")
        out[f.name] = value
    return out


def parse_config(data: Any) -> MixinConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping")
    unknown = set(data) - {"selector", "runbook_url", "alerts", "thresholds", "dashboards"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}")
    base = MixinConfig()
    selector = data.get("selector", base.selector)
    runbook_url = data.get("runbook_url", base.runbook_url)
    for key, value in (("selector", selector), ("runbook_url", runbook_url)):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string")
    if "{" in selector or "}" in selector:
        raise ConfigError('selector: give the matchers only, e.g. job="cph"')
    alerts = dict(base.alerts)
    overrides = data.get("alerts") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("alerts: expected a mapping of alert name to severity and for")
    for name, override in overrides.items():
        if name not in alerts:
            raise ConfigError(f"alerts: no alert {name!r}")
        if not isinstance(override, dict) or set(override) - {"severity", "for"}:
            raise ConfigError(f"alerts.{name}: expected severity and/or for")
        severity = override.get("severity", alerts[name].severity)
        for_ = str(override.get("for", alerts[name].for_))
        if severity not in SEVERITIES:
            raise ConfigError(f"alerts.{name}.severity: one of {sorted(SEVERITIES)}")
        if not DURATION.match(for_):
            raise ConfigError(f"alerts.{name}.for: a Prometheus duration such as 5m")
        alerts[name] = Alert(severity, for_)
    thresholds = Thresholds(**_fields(Thresholds, data.get("thresholds") or {}, "thresholds"))
    dashboards = Dashboards(**_fields(Dashboards, data.get("dashboards") or {}, "dashboards"))
    return MixinConfig(selector.strip(), runbook_url, alerts, thresholds, dashboards)


def load_config(path: Path | None) -> MixinConfig:
    if path is None:
        return MixinConfig()
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")))
