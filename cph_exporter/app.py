"""Wires one Config into a running exporter: credentials -> client -> refresher -> HTTP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from cph_exporter import __version__
from cph_exporter.client import CphClient
from cph_exporter.config import Config
from cph_exporter.credentials import Credentials
from cph_exporter.exporter_collector import ExporterCollector
from cph_exporter.exposition import Exposition
from cph_exporter.fleet_collector import FleetCollector
from cph_exporter.phone_collector import PhoneCollector
from cph_exporter.ratelimit import RateLimitCollector, make_limiter
from cph_exporter.refresher import Refresher
from cph_exporter.self_metrics import ApiMetrics
from cph_exporter.signing import AkSkAuth
from cph_exporter.targets import Fleet, Target, TargetSpec, TargetView
from cph_exporter.web import ExporterHandlerContext, ExporterHTTPServer, make_server
from cph_exporter.webconfig import ReloadingWebConfig

log = logging.getLogger(__name__)


def _tls_verification(config: Config) -> bool | str:
    if config.insecure_skip_verify:
        log.warning(
            "--cph.insecure-skip-verify: the API's TLS certificate is NOT verified; anyone on "
            "the path can read the signed requests and forge the answers"
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
    ) -> None:
        self.config = config
        if targets is None:
            if credentials is None:
                raise ValueError("credentials are needed when no targets are given")
            targets = [
                TargetSpec(
                    region=config.region,
                    project_id=config.project_id,
                    endpoint=config.endpoint,
                    credentials=credentials,
                    on_auth_failure=on_auth_failure,
                    server_ids=config.server_ids,
                )
            ]
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

        def fleet_collectors(views: Sequence[TargetView]) -> list[Collector]:
            collectors: list[Collector] = [FleetCollector(lambda: views)]
            if config.phones:
                collectors.append(PhoneCollector(lambda: views, per_phone))
            return collectors

        self.exposition = Exposition(fleet_collectors, self.registry)
        verify = _tls_verification(config)
        self.fleet = Fleet([self._target(spec, verify) for spec in targets])
        self.registry.register(ExporterCollector(self.fleet.current, config.cache_ttl, __version__))
        self.http: ExporterHTTPServer = make_server(
            config.listen_address,
            ExporterHandlerContext(
                self.fleet,
                self.exposition,
                config.telemetry_path,
                config.scrape_timeout,
                config.max_requests,
            ),
            ReloadingWebConfig(config.web_config_file) if config.web_config_file else None,
        )
        self._thread: threading.Thread | None = None

    @property
    def refresher(self) -> Refresher:
        """The first target's refresher (the only one when flags describe the target)."""
        return self.fleet.targets[0].refresher

    @property
    def client(self) -> CphClient:
        return self.fleet.targets[0].client

    def _render_ahead(self) -> None:
        """Runs on the refresh thread: the render belongs to the refresh, not to the scrape."""
        self.exposition.prerender(self.fleet.current())

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
            on_refresh=self._render_ahead,
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
        self.fleet.views(timeout=0)

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
        log.info("listening on %s", self.config.listen_address)
        self.http.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.http.shutdown()
        self.http.server_close()
        self.fleet.close()
