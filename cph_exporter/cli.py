"""Command line: flags in Prometheus's dotted style, parsed into validated settings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from cph_exporter import __version__, logsetup
from cph_exporter.refresh.shard import parse_shard
from cph_exporter.settings.config import (
    DEFAULT_LISTEN_ADDRESS,
    Config,
    ConfigError,
    parse_duration,
    parse_size,
    project_id_from_env,
    validate,
)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_EPILOG = """\
credentials, from the first source that has any:
  1. the environment: HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, for temporary credentials
     also HUAWEICLOUD_SDK_SECURITY_TOKEN; each also as *_FILE naming a file with the value
  2. the SDK profile file ~/.huaweicloud/credentials (or HUAWEICLOUD_SDK_CREDENTIALS_FILE),
     section [basic], keys ak, sk, security_token
  3. with --cph.metadata, the ECS metadata service (temporary credentials of an agency)
  A --config.file target that names its credentials uses only those.

environment:
  HUAWEICLOUD_SDK_REGION        default of --cph.region
  HUAWEICLOUD_SDK_PROJECT_ID    default of --cph.project-id (32 hex characters)
  HUAWEICLOUD_SDK_IAM_ENDPOINT  default of --cph.iam-endpoint
  HTTPS_PROXY, NO_PROXY         proxy for the API, as requests honours them

Durations take Prometheus's syntax (500ms, 30s, 1h30m, 1d, 1w, 1y) or plain seconds.
"""


class _Parser(argparse.ArgumentParser):
    """One line per bad flag, not the whole usage block: the problem is what must be seen."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2,
            f"{self.prog}: {message.removeprefix('argument ')}\n"
            f"run '{self.prog} --help' for the flags\n",
        )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cph-exporter",
        description="Prometheus exporter for Huawei Cloud Cloud Phone Host (CPH) servers.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cph-exporter {__version__}")
    add = p.add_argument_group("web server").add_argument
    add(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        help="address to serve on (default %(default)s)",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path of the metrics (default %(default)s)",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web config: TLS and basic auth",
    )
    add(
        "--web.scrape-timeout",
        dest="scrape_timeout",
        type=_duration,
        default=10.0,
        help="scrape deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds "
        "(default 10s)",
    )
    add(
        "--web.max-requests",
        dest="max_requests",
        type=int,
        default=40,
        help="concurrent scrapes served before answering 503 (default %(default)s)",
    )
    add(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=64,
        help="connections served at once, one thread each; up to 128 more wait, others get "
        "503 (default %(default)s)",
    )
    add(
        "--web.read-timeout",
        dest="read_timeout",
        type=_duration,
        default=30.0,
        help="time a client has to send a request head, and an idle connection stays open "
        "(default 30s)",
    )
    cph = p.add_argument_group("CPH API and the watched project")
    add = cph.add_argument
    add(
        "--cph.region",
        dest="region",
        default=os.environ.get("HUAWEICLOUD_SDK_REGION", ""),
        help="region of the CPH project, e.g. cn-north-4 (env HUAWEICLOUD_SDK_REGION)",
    )
    add(
        "--cph.project-id",
        dest="project_id",
        default=None,
        help="project ID, 32 hex characters (env HUAWEICLOUD_SDK_PROJECT_ID; default: looked up "
        "from the region through IAM)",
    )
    add(
        "--cph.endpoint",
        dest="endpoint",
        default="",
        help="CPH API endpoint (default https://cph.{region}.myhuaweicloud.com)",
    )
    add(
        "--cph.iam-endpoint",
        dest="iam_endpoint",
        default="",
        help="IAM endpoint for the project ID lookup (default env HUAWEICLOUD_SDK_IAM_ENDPOINT, "
        "else https://iam.myhuaweicloud.com)",
    )
    add(
        "--cph.metadata",
        dest="use_metadata",
        action="store_true",
        help="on an ECS with an agency: take temporary credentials from the metadata service "
        "when no other source has any",
    )
    add(
        "--cph.metadata-url",
        dest="metadata_url",
        default="http://169.254.169.254",
        help="base URL of the ECS metadata service (default %(default)s)",
    )
    add(
        "--cph.ca-file",
        dest="ca_file",
        default=None,
        help="CA bundle to verify the API's certificate with (default: the system's)",
    )
    add(
        "--cph.insecure-skip-verify",
        dest="insecure_skip_verify",
        action="store_true",
        help="do not verify the API's TLS certificate (dangerous; logged at every start)",
    )
    add(
        "--cph.server-id",
        dest="server_ids",
        action="append",
        default=[],
        metavar="ID",
        help="watch only this server, without listing (repeatable; least privilege)",
    )
    add(
        "--cph.concurrency",
        dest="concurrency",
        type=int,
        default=16,
        help="detail calls in flight at once (default %(default)s)",
    )
    add(
        "--cph.max-requests-per-second",
        dest="max_requests_per_second",
        type=float,
        default=20.0,
        help="cap on API requests per second, halved on throttling and recovered after; "
        "0: unlimited (default %(default)s)",
    )
    add(
        "--shard",
        dest="shard",
        default="0/1",
        metavar="INDEX/COUNT",
        help="export only the servers whose server_id hashes to shard INDEX of COUNT, e.g. 0/3 "
        "on the first of three replicas; INDEX may be a StatefulSet pod name, whose ordinal is "
        "used (cph-exporter-2/3 is 2/3) (default 0/1: all)",
    )
    add(
        "--cph.request-timeout",
        dest="request_timeout",
        type=_duration,
        default=10.0,
        help="timeout of one API request (default 10s)",
    )
    add(
        "--cph.refresh-timeout",
        dest="refresh_timeout",
        type=_duration,
        default=60.0,
        help="longest a whole refresh may take, retries included (default 60s)",
    )
    add(
        "--cph.max-pages",
        dest="max_pages",
        type=int,
        default=1000,
        help="hard cap on list pages of 100 servers (default %(default)s)",
    )
    cph.add_argument(
        "--cph.max-response-size",
        dest="max_response_size",
        type=_size,
        default=8 * 1024 * 1024,
        metavar="SIZE",
        help="largest decoded API answer read; a larger one fails its call: 8MiB, 512KiB or "
        "bytes (default 8MiB)",
    )
    cache = p.add_argument_group("cache")
    add = cache.add_argument
    add(
        "--cache.ttl",
        dest="cache_ttl",
        type=_duration,
        default=60.0,
        help="how long fetched data is served before a refresh (default 60s)",
    )
    add(
        "--cache.max-stale",
        dest="cache_max_stale",
        type=_duration,
        default=600.0,
        help="oldest data served while refreshes fail; older per-server data is dropped "
        "(default 10m)",
    )
    add(
        "--cache.detail-max-age",
        dest="detail_max_age",
        type=_duration,
        default=600.0,
        help="details of an unchanged server are fetched again after this (default 10m)",
    )
    add(
        "--cache.dir",
        dest="cache_dir",
        default=None,
        metavar="DIR",
        help="keep each server's last details in a SQLite file here, so that a restart "
        "fetches only changed servers (no credentials are written; default off)",
    )
    add = p.add_argument_group("collectors").add_argument
    add(
        "--collector.phones",
        dest="phones",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count each server's cloud phones by state (ListCloudPhones); "
        "--no-collector.phones turns it off (default on)",
    )
    add(
        "--collector.phone-details",
        dest="phone_details",
        action="store_true",
        help="also export one state set and one info series per phone (high cardinality)",
    )
    cache.add_argument(
        "--cache.phones-ttl",
        dest="phones_ttl",
        type=_duration,
        default=60.0,
        help="how long the phone list is served before it is listed again (default 60s)",
    )
    add(
        "--collector.scheduled-events",
        dest="scheduled_events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export Huawei's scheduled maintenance of the servers (ListScheduledEvents); "
        "--no-collector.scheduled-events turns it off (default on)",
    )
    cache.add_argument(
        "--cache.scheduled-events-ttl",
        dest="scheduled_events_ttl",
        type=_duration,
        default=300.0,
        help="how long the scheduled events are served before they are listed again (default 5m)",
    )
    add(
        "--collector.encode-servers",
        dest="encode_servers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export the encode servers' status (ListEncodeServers); "
        "--no-collector.encode-servers turns it off (default on)",
    )
    cache.add_argument(
        "--cache.encode-servers-ttl",
        dest="encode_servers_ttl",
        type=_duration,
        default=60.0,
        help="how long the encode servers are served before they are listed again (default 60s)",
    )
    add(
        "--collector.phone-capacity",
        dest="phone_capacity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export each server's phone capacity from its flavour (ListCloudPhoneModels); "
        "--no-collector.phone-capacity turns it off (default on)",
    )
    cache.add_argument(
        "--cache.phone-models-ttl",
        dest="phone_models_ttl",
        type=_duration,
        default=6 * 3600.0,
        help="how long the phone models are served before they are listed again (default 6h)",
    )
    add = p.add_argument_group("configuration file").add_argument
    add(
        "--config.file",
        dest="config_file",
        default=None,
        help="YAML file of several targets (regions, projects, credentials, filters); "
        "replaces the --cph.region/--cph.project-id/--cph.server-id flags",
    )
    add(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate --config.file (and the other settings), then exit",
    )
    add = p.add_argument_group("logging").add_argument
    add(
        "--log.level",
        dest="log_level",
        choices=logsetup.LEVELS,
        default="info",
        help="least severe messages logged: %(choices)s (default %(default)s)",
    )
    add(
        "--log.format",
        dest="log_format",
        choices=("logfmt", "json"),
        default="logfmt",
        help="log line format: logfmt or json, one line per message (default %(default)s)",
    )
    add = p.add_argument_group("simulator").add_argument
    add(
        "--simulate",
        action="store_true",
        help="run against the embedded CPH simulator: no account or credentials needed",
    )
    add(
        "--simulate.servers",
        dest="simulate_servers",
        type=int,
        default=50,
        help="generated servers in the simulated fleet (default %(default)s)",
    )
    add(
        "--simulate.latency",
        dest="simulate_latency",
        type=_duration,
        default=0.0,
        help="latency the simulator adds to every API call (default 0s)",
    )
    add(
        "--simulate.seed",
        dest="simulate_seed",
        type=int,
        default=0,
        help="seed of the simulated fleet (default %(default)s)",
    )
    return p


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    fields = vars(args).copy()
    fields.pop("config_check", None)
    fields["server_ids"] = tuple(fields["server_ids"])
    try:
        fields["shard"] = parse_shard(fields["shard"])
    except ValueError as exc:
        raise ConfigError(f"--shard: {exc}") from None
    if fields["project_id"] is None:
        # Only flags use it: --simulate and --config.file targets bring their own.
        used = not fields["simulate"] and fields["config_file"] is None
        fields["project_id"] = project_id_from_env(environ, check=used)
    return validate(Config(**fields))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args, environ)
    except ConfigError as exc:
        print(f"cph-exporter: {exc}", file=sys.stderr)
        return 2
    from cph_exporter.app import run  # after parsing: --help and --version stay quick

    return run(config, environ, check_only=args.config_check)
