"""Wires validated settings into a running exporter, in one place and in the order data flows:
settings -> credentials -> API client -> refresher -> collectors -> HTTP.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from cph_exporter import __version__, logsetup, revision
from cph_exporter.cph.client import CphClient
from cph_exporter.cph.ratelimit import make_limiter
from cph_exporter.cph.request_metrics import ApiMetrics
from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.credentials.values import Credentials
from cph_exporter.http.exposition import Exposition
from cph_exporter.http.reload import ReloadingWebConfig
from cph_exporter.http.server import ExporterHandlerContext, ExporterHTTPServer, make_server
from cph_exporter.http.web_config import WebConfigError
from cph_exporter.metrics.encode_servers import EncodeServerCollector
from cph_exporter.metrics.exporter import ExporterCollector, RateLimitCollector
from cph_exporter.metrics.phone_capacity import PhoneCapacityCollector
from cph_exporter.metrics.phones import PhoneCollector
from cph_exporter.metrics.scheduled_events import ScheduledEventCollector
from cph_exporter.metrics.servers import ServerCollector
from cph_exporter.refresh.detail_store import DetailStore
from cph_exporter.refresh.listings import WatchedListings
from cph_exporter.refresh.refresher import Refresher
from cph_exporter.refresh.targets import Target, TargetSet, TargetSpec, TargetView
from cph_exporter.settings.config import Config, ConfigError, parse_listen_address
from cph_exporter.settings.config_file import load_config_file
from cph_exporter.settings.target_config import TargetConfig, flag_target
from cph_exporter.settings.web_config_file import load_web_config_file
from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
    Faults,
    project_simulator,
)
from cph_exporter.startup import check_summary, resolve_targets, start_line, target_spec

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The running exporter


def _tls_verification(config: Config, warn: bool = True) -> bool | str:
    if config.insecure_skip_verify:
        if warn:
            log.warning(
                "--cph.insecure-skip-verify: the API's TLS certificate is NOT verified; anyone "
                "on the path can read the signed requests and forge the answers"
            )
        return False
    return config.ca_file or True


class Exporter:
    """A running exporter. `start()` serves in a background thread; `close()` stops it all.

    Flags describe one target (`credentials` for it); a config file gives `targets`.
    """

    def __init__(
        self,
        config: Config,
        credentials: Callable[[], Credentials] | None = None,
        on_auth_failure: Callable[[], None] | None = None,
        targets: Sequence[TargetSpec] | None = None,
        cache_timer: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._cache_timer = cache_timer  # the refreshers' TTL clock; monotonic time if None
        if targets is None:
            if credentials is None:
                raise ValueError("credentials are needed when no targets are given")
            targets = [target_spec(flag_target(config), credentials, on_auth_failure)]
        self.registry = CollectorRegistry(auto_describe=False)
        self.api_metrics = ApiMetrics(self.registry)
        # One cap for the whole process: the gateway throttles per user, and targets of one
        # organisation usually share users.
        self.limiter = make_limiter(config.max_requests_per_second)
        self.registry.register(RateLimitCollector(self.limiter))
        if not config.shard.whole:
            log.info(
                "exporting shard %s: only the servers whose server_id hashes to it", config.shard
            )
        per_phone = config.phone_details

        def snapshot_collectors(views: Sequence[TargetView]) -> list[Collector]:
            collectors: list[Collector] = [ServerCollector(lambda: views)]
            if config.phones:
                collectors.append(PhoneCollector(lambda: views, per_phone))
            if config.scheduled_events:
                collectors.append(ScheduledEventCollector(lambda: views))
            if config.encode_servers:
                collectors.append(EncodeServerCollector(lambda: views))
            if config.phone_capacity:
                collectors.append(PhoneCapacityCollector(lambda: views))
            return collectors

        self.exposition = Exposition(snapshot_collectors, self.registry)
        verify = _tls_verification(config)
        self.targets = TargetSet([self._target(spec, verify) for spec in targets])
        self.registry.register(
            ExporterCollector(
                self.targets.current, config.cache_ttl, __version__, revision=revision()
            )
        )
        # The standard process_* and python_* families, as every client_python exporter has them:
        # the custom registry does not get them by default.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        web_config = (
            ReloadingWebConfig(config.web_config_file, load_web_config_file)
            if config.web_config_file
            else None
        )
        self.http: ExporterHTTPServer = make_server(
            *parse_listen_address(config.listen_address),
            ExporterHandlerContext(
                self.targets,
                self.exposition,
                config.telemetry_path,
                config.scrape_timeout,
                config.max_requests,
                # Half the threads at most wait on a refresh: the others stay free to answer.
                max_waiting=max(1, min(config.max_requests, config.max_connections // 2)),
                version=__version__,
            ),
            web_config,
            handler_threads=config.max_connections,
            read_timeout=config.read_timeout,
        )
        self._thread: threading.Thread | None = None

    @property
    def refresher(self) -> Refresher:
        """The first target's refresher (the only one when flags describe the target)."""
        return self.targets.targets[0].refresher

    @property
    def client(self) -> CphClient:
        return self.targets.targets[0].client

    def _render_ahead(self) -> None:
        """Runs on the refresh thread: the render belongs to the refresh, not to the scrape."""
        self.exposition.prerender(self.targets.current())

    def _target(self, spec: TargetSpec, verify: bool | str) -> Target:
        config = self.config
        client = CphClient(
            spec.endpoint,
            spec.project_id,
            AkSkAuth(spec.credentials, project_id=spec.project_id),
            metrics=self.api_metrics,
            read_timeout=config.request_timeout,
            max_pages=config.max_pages,
            pool_size=config.concurrency,
            on_auth_failure=spec.on_auth_failure,
            verify=verify,
            limiter=self.limiter,
            max_response_size=config.max_response_size,
        )
        refresher = Refresher(
            client,
            ttl=config.cache_ttl,
            max_stale=config.cache_max_stale,
            detail_max_age=config.detail_max_age,
            refresh_timeout=config.refresh_timeout,
            concurrency=config.concurrency,
            metrics=self.api_metrics,
            server_ids=spec.server_ids,
            shard=config.shard,
            server_filter=spec.server_filter,
            phones=config.phones,
            phones_ttl=config.phones_ttl,
            watched=_watched_listings(client, config, spec.server_ids),
            on_refresh=self._render_ahead,
            cache_timer=self._cache_timer,
            store=(
                DetailStore(config.cache_dir, spec.endpoint, spec.project_id)
                if config.cache_dir
                else None
            ),
        )
        return Target(spec.region, spec.project_id, client, refresher)

    @property
    def url(self) -> str:
        scheme = "https" if self.http.web_config and self.http.web_config.ssl_context() else "http"
        host, port = self.http.server_address[:2]
        host = str(host)
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"

    def warm_up(self) -> None:
        """Start the first refreshes now, so /-/ready turns ready without waiting for a scrape."""
        self.targets.views(timeout=0)

    def start(self) -> None:
        self.warm_up()
        self._thread = threading.Thread(
            target=self.http.serve_forever, name="cph-http", daemon=True
        )
        self._thread.start()
        log.info(
            "listening on %s, metrics at %s%s",
            self.config.listen_address,
            self.url,
            self.config.telemetry_path,
        )

    def serve_forever(self) -> None:
        self.warm_up()
        log.info(
            "listening on %s, metrics at %s%s",
            self.config.listen_address,
            self.url,
            self.config.telemetry_path,
        )
        self.http.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.http.shutdown()
        self.http.server_close()
        self.targets.close()


def _watched_listings(
    client: CphClient, config: Config, server_ids: tuple[str, ...]
) -> WatchedListings | None:
    """Scheduled events, encode servers and phone models, as far as their collectors are on."""
    if not (config.scheduled_events or config.encode_servers or config.phone_capacity):
        return None
    return WatchedListings(
        client,
        scheduled_events_ttl=config.scheduled_events_ttl if config.scheduled_events else None,
        encode_servers_ttl=config.encode_servers_ttl if config.encode_servers else None,
        phone_models_ttl=config.phone_models_ttl if config.phone_capacity else None,
        server_ids=server_ids,
        shard=config.shard,
    )


# ---------------------------------------------------------------------------------------------
# --simulate: the embedded CPH simulator, and the settings pointed at it


@dataclass
class SimulatedProject:
    simulator: CphSimulator
    config: Config
    credentials: Credentials

    @property
    def url(self) -> str:
        return self.simulator.url

    @classmethod
    def start(cls, config: Config) -> SimulatedProject:
        simulator = project_simulator(
            config.simulate_servers,
            config.simulate_seed,
            Faults(latency=config.simulate_latency),
        )
        url = simulator.start()
        config = dataclasses.replace(
            config, region=SIMULATOR_REGION, project_id=SIMULATOR_PROJECT_ID, endpoint=url
        )
        credentials = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)
        return cls(simulator, config, credentials)

    def stop(self) -> None:
        self.simulator.stop()


# ---------------------------------------------------------------------------------------------
# Running until stopped


def _fail(message: str) -> int:
    print(f"cph-exporter: {message}", file=sys.stderr)
    return 2


def run(config: Config, environ: Mapping[str, str], check_only: bool = False) -> int:
    """Check the settings, build the exporter and serve until SIGTERM or SIGINT; the exit code."""
    simulated: SimulatedProject | None = None
    try:
        file_config = load_config_file(config.config_file) if config.config_file else None
        if check_only:
            checked: Sequence[TargetConfig]
            if config.simulate:
                checked, source = [flag_target(config)], "--simulate (the embedded simulator)"
            elif file_config is not None:
                checked, source = file_config, f"--config.file {config.config_file}"
            else:
                checked, source = [flag_target(config)], "the --cph.* flags"
            print("\n".join(check_summary(checked, environ, config.shard, source)))
            return 0
        if config.simulate:
            simulated = SimulatedProject.start(config)
            config, fixed = simulated.config, simulated.credentials
            logsetup.configure(config.log_level, config.log_format, fixed.secrets)
            simulator_keys = "the simulator's fixed credentials"
            specs = [
                target_spec(flag_target(config), lambda: fixed, credential_source=simulator_keys)
            ]
            exporter = Exporter(config, targets=specs)
        else:
            ledger = SecretLedger()
            logsetup.configure(config.log_level, config.log_format, ledger.secrets)
            iam_settings: dict[str, Any] = {
                "verify": _tls_verification(config, warn=False),
                "request_timeout": config.request_timeout,
                "max_response_size": config.max_response_size,
            }
            if file_config is not None:
                specs = resolve_targets(file_config, environ, ledger, **iam_settings)
            else:
                specs = resolve_targets(
                    [flag_target(config)], environ, ledger, from_flags=True, **iam_settings
                )
            exporter = Exporter(config, targets=specs)
    except (ConfigError, WebConfigError, OSError) as exc:
        if simulated is not None:
            simulated.stop()
        if isinstance(exc, WebConfigError):
            return _fail(f"--web.config.file: {exc}")
        if isinstance(exc, OSError):  # the listen address is taken or not ours
            return _fail(
                f"--web.listen-address: cannot listen on {config.listen_address}: "
                f"{exc.strerror or exc}"
            )
        return _fail(str(exc))
    if simulated is not None:
        log.info(
            "simulating a CPH project of %d servers at %s",
            simulated.simulator.server_count,
            simulated.url,
        )
    log.info("%s", start_line(specs, revision()))
    _stop_on((signal.SIGTERM, signal.SIGINT), exporter.http.shutdown)
    try:
        exporter.serve_forever()
    except KeyboardInterrupt:  # SIGINT before its handler was in place
        log.info("interrupted, shutting down")
    finally:
        # Nothing here waits for a refresh or a connection: their threads are daemons, so a
        # refresh stuck on a dripping API or a client that stopped reading ends with us.
        exporter.close()
        if simulated is not None:
            simulated.stop()
    return 0


def _stop_on(signals: Sequence[signal.Signals], stop: Callable[[], None]) -> None:
    stopping = threading.Event()

    def shut_down(name: str) -> None:
        log.info("stopping on %s: shutting down the listener and the API connections", name)
        stop()

    def handler(received: int, _frame: FrameType | None) -> None:
        # No I/O here: the signal may arrive while the main thread is writing a log line,
        # and a reentrant write to stderr would raise inside the handler and lose the stop.
        if stopping.is_set():
            return  # one line, one shutdown, however many signals arrive
        stopping.set()
        # shutdown() blocks until serve_forever returns: run it off the serving thread.
        name = signal.Signals(received).name
        threading.Thread(target=shut_down, args=(name,), name="cph-stop", daemon=True).start()

    for signum in signals:
        signal.signal(signum, handler)
