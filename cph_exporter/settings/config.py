"""Flags and environment, turned into one validated Config; every problem is one clear line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cph_exporter.refresh.shard import WHOLE, Shard

DEFAULT_PORT = 9852
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"
ENDPOINT_TEMPLATE = "https://cph.{region}.myhuaweicloud.com"


class ConfigError(Exception):
    """A setting that cannot work; the message names the setting and what is wrong."""


@dataclass(frozen=True)
class Config:
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = "/metrics"
    web_config_file: str | None = None
    scrape_timeout: float = 10.0
    max_requests: int = 40
    max_connections: int = 64  # connections served at once, one handler thread each
    read_timeout: float = 30.0  # for a request head, from the first wait to its blank line
    region: str = ""
    project_id: str = ""
    endpoint: str = ""
    iam_endpoint: str = ""
    use_metadata: bool = False
    metadata_url: str = "http://169.254.169.254"
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    server_ids: tuple[str, ...] = ()
    concurrency: int = 16
    max_requests_per_second: float = 20.0  # 0: unlimited; see README, "Request rate"
    shard: Shard = WHOLE  # this replica exports only the servers hashed to it
    request_timeout: float = 10.0
    refresh_timeout: float = 60.0
    max_pages: int = 1000
    max_response_size: int = 8 * 1024 * 1024  # decoded bytes of one API answer
    cache_ttl: float = 60.0
    cache_max_stale: float = 600.0
    detail_max_age: float = 600.0
    cache_dir: str | None = None  # the detail store for warm restarts; None: off
    log_level: str = "info"
    log_format: str = "logfmt"
    phones: bool = True
    phone_details: bool = False
    phones_ttl: float = 60.0
    scheduled_events: bool = True
    scheduled_events_ttl: float = 300.0
    encode_servers: bool = True
    encode_servers_ttl: float = 60.0
    phone_capacity: bool = True
    phone_models_ttl: float = 6 * 3600.0  # flavours change rarely
    config_file: str | None = None
    simulate: bool = False
    simulate_servers: int = 50
    simulate_latency: float = 0.0
    simulate_seed: int = 0


# Prometheus's duration syntax: units in descending order, each at most once, e.g. 1h30m.
_DURATION_UNITS = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_DURATION = re.compile("".join(rf"(?:(\d+(?:\.\d+)?){unit})?" for unit, _ in _DURATION_UNITS))
REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")
IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The API's project IDs: 32 hex characters, as in the console and in every request URL.
PROJECT_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def project_id_problem(project_id: str) -> str | None:
    """Why this is not a project ID, or None when it is one."""
    if PROJECT_ID.match(project_id):
        return None
    return f"not a project ID: {project_id!r} (expected 32 hex characters, as the console shows)"


def endpoint_problem(endpoint: str) -> str | None:
    """Why this cannot be the API's endpoint, or None when it can."""
    if "@" in endpoint:  # refused before it is echoed: it may hold a password
        return "must not carry credentials or a query"
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"not an http(s) URL: {endpoint!r}"
    if url.username or url.password or url.query:
        return "must not carry credentials or a query"
    return None


def parse_duration(text: str) -> float:
    """Seconds from a Prometheus duration ("500ms", "30s", "1h30m", "1d", "2w", "1y") or a
    plain number of seconds; as in Prometheus, a year is 365 days and units go largest first."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            raise ValueError(f"invalid duration {text!r} (not a finite number)")
        return seconds
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1h30m, 1d or seconds)")
    return sum(
        float(number) * seconds
        for number, (_, seconds) in zip(match.groups(), _DURATION_UNITS, strict=True)
        if number is not None
    )


_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


def parse_size(text: str) -> int:
    """Bytes from "8MiB", "512KiB", "10MB" or a plain number of bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r} (use e.g. 8MiB, 512KiB or bytes)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_listen_address(address: str) -> tuple[str, int]:
    """ ":9852", "0.0.0.0:9852", "[::1]:9852" -> (host, port); raises ValueError."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"not HOST:PORT: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def validate(config: Config) -> Config:
    """Check every setting; return the config with derived defaults filled in."""

    def fail(setting: str, problem: str) -> ConfigError:
        return ConfigError(f"{setting}: {problem}")

    try:
        parse_listen_address(config.listen_address)
    except ValueError as exc:
        raise fail("--web.listen-address", str(exc)) from None
    path = config.telemetry_path
    if not path.startswith("/") or path == "/" or path.startswith("/-/"):
        raise fail("--web.telemetry-path", f"must be a path like /metrics, not {path!r}")
    for setting, value in (
        ("--cache.ttl", config.cache_ttl),
        ("--web.scrape-timeout", config.scrape_timeout),
        ("--web.read-timeout", config.read_timeout),
        ("--cph.request-timeout", config.request_timeout),
        ("--cph.refresh-timeout", config.refresh_timeout),
        ("--cache.detail-max-age", config.detail_max_age),
        ("--cache.phones-ttl", config.phones_ttl),
        ("--cache.scheduled-events-ttl", config.scheduled_events_ttl),
        ("--cache.encode-servers-ttl", config.encode_servers_ttl),
        ("--cache.phone-models-ttl", config.phone_models_ttl),
    ):
        if value <= 0:
            raise fail(setting, "must be greater than zero")
    if config.cache_max_stale < config.cache_ttl:
        raise fail("--cache.max-stale", "must be at least --cache.ttl")
    if not 0 <= config.max_requests_per_second < float("inf"):
        raise fail("--cph.max-requests-per-second", "must be a number >= 0 (0: unlimited)")
    for setting, number in (
        ("--cph.concurrency", config.concurrency),
        ("--web.max-requests", config.max_requests),
        ("--web.max-connections", config.max_connections),
        ("--cph.max-pages", config.max_pages),
    ):
        if number < 1:
            raise fail(setting, "must be at least 1")
    if config.max_response_size < 1024:
        raise fail("--cph.max-response-size", "must be at least 1KiB")
    if config.simulate and config.simulate_servers < 0:
        raise fail("--simulate.servers", "must not be negative")
    for server_id in config.server_ids:
        if not IDENTIFIER.match(server_id):
            raise fail("--cph.server-id", f"not a server ID: {server_id!r}")
    if config.cache_dir is not None and (
        not config.cache_dir
        or (os.path.exists(config.cache_dir) and not os.path.isdir(config.cache_dir))
    ):
        raise fail("--cache.dir", f"not a directory: {config.cache_dir!r}")
    if config.ca_file is not None and not os.path.isfile(config.ca_file):
        raise fail("--cph.ca-file", f"file not found: {config.ca_file}")
    for setting, url_text in (
        ("--cph.metadata-url", config.metadata_url),
        ("--cph.iam-endpoint", config.iam_endpoint),
    ):
        if url_text and urlsplit(url_text).scheme not in ("http", "https"):
            raise fail(setting, f"not an http(s) URL: {url_text!r}")
    if config.endpoint:  # in every mode: --simulate too, where the simulator replaces it
        problem = endpoint_problem(config.endpoint)
        if problem:
            raise fail("--cph.endpoint", problem)
    if config.config_file is not None:
        if config.simulate:
            raise fail("--config.file", "not with --simulate")
        if config.server_ids:
            raise fail("--cph.server-id", "not with --config.file: give server_ids per target")
        return config  # each target of the file names its region, project and endpoint
    problem = project_id_problem(config.project_id) if config.project_id else None
    if config.simulate:
        if problem:  # the simulator's replaces it, but a malformed one is refused all the same
            raise fail("--cph.project-id", problem)
        return config
    if not config.region:
        raise fail("--cph.region", "required (for example cn-north-4), or run with --simulate")
    if not REGION.match(config.region):
        raise fail("--cph.region", f"not a region name: {config.region!r}")
    # No project ID: it is looked up from the region through IAM once credentials are known.
    if problem:
        raise fail("--cph.project-id", problem)
    endpoint = config.endpoint or ENDPOINT_TEMPLATE.format(region=config.region)
    return Config(**{**config.__dict__, "endpoint": endpoint.rstrip("/")})


def project_id_from_env(environ: Mapping[str, str], check: bool = True) -> str:
    """HUAWEICLOUD_SDK_PROJECT_ID, checked here (when it is used) so the error names it."""
    project_id = environ.get("HUAWEICLOUD_SDK_PROJECT_ID", "").strip()
    problem = project_id_problem(project_id) if project_id and check else None
    if problem:
        raise ConfigError(f"HUAWEICLOUD_SDK_PROJECT_ID: {problem}")
    return project_id
