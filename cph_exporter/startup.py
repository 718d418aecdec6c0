"""From validated settings to targets: credentials found, project IDs known, filters bound.

Everything here runs once at start; a problem is a ConfigError naming the setting or target.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

import requests

from cph_exporter.config import Config, ConfigError
from cph_exporter.config_file import ServerFilters, TargetConfig
from cph_exporter.credential_sources import (
    CredentialError,
    CredentialProvider,
    CredentialsNotFound,
    ProjectIdResolver,
    ProjectLookupError,
    default_chain,
)
from cph_exporter.credentials import Credentials
from cph_exporter.models import Server
from cph_exporter.targets import TargetSpec

log = logging.getLogger(__name__)

_NO_CREDENTIALS = (
    "none found; set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or their _FILE variants), "
    "write ~/.huaweicloud/credentials, use --cph.metadata on an ECS, or run with --simulate"
)


class SecretLedger:
    """Remembers every secret handed to the signer, for the log scrubber: it can then blank
    them without ever triggering a (logged) credential fetch itself."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def issuing(self, provider: CredentialProvider) -> Callable[[], Credentials]:
        def get() -> Credentials:
            creds = provider.get()
            self._secrets.update(creds.secrets())
            return creds

        return get

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)


def _checked(provider: CredentialProvider, ledger: SecretLedger, where: str) -> None:
    """Read the credentials once now, so a missing or broken source stops the start."""
    try:
        ledger.issuing(provider)()
    except CredentialsNotFound as exc:
        detail = _NO_CREDENTIALS if where == "credentials" else str(exc)
        raise ConfigError(f"{where}: {detail}") from None
    except CredentialError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _project_id(
    region: str, provider: CredentialProvider, iam_endpoint: str, environ: Mapping[str, str]
) -> str:
    resolver = ProjectIdResolver(
        requests.Session(), provider, iam_endpoint=iam_endpoint or None, environ=environ
    )
    return resolver.resolve(region)


def flag_target(
    config: Config, environ: Mapping[str, str], ledger: SecretLedger
) -> tuple[Config, TargetSpec]:
    """The one target the --cph.* flags describe."""
    provider = default_chain(environ, None, config.metadata_url, config.use_metadata)
    _checked(provider, ledger, "credentials")
    log.info("using credentials from %s", provider.describe())
    if not config.project_id:
        try:
            project_id = _project_id(config.region, provider, config.iam_endpoint, environ)
        except ProjectLookupError as exc:
            raise ConfigError(f"--cph.project-id: not set, and IAM lookup failed: {exc}") from None
        config = dataclasses.replace(config, project_id=project_id)
    spec = TargetSpec(
        region=config.region,
        project_id=config.project_id,
        endpoint=config.endpoint,
        credentials=ledger.issuing(provider),
        on_auth_failure=provider.invalidate,
        server_ids=config.server_ids,
    )
    return config, spec


def _filter(filters: ServerFilters) -> Callable[[Server], bool] | None:
    if not filters:
        return None
    return lambda s: filters.matches(s.server_name, s.network_version, s.status)


def file_targets(
    targets: tuple[TargetConfig, ...], environ: Mapping[str, str], ledger: SecretLedger
) -> list[TargetSpec]:
    """One spec per target of the config file; two targets may not watch one project."""
    specs: list[TargetSpec] = []
    owners: dict[tuple[str, str], str] = {}
    for target in targets:
        where = f"config file target {target.name!r}"
        provider = target.credentials.provider(environ)
        _checked(provider, ledger, f"{where}: credentials")
        project_id = target.project_id
        if not project_id:
            try:
                project_id = _project_id(target.region, provider, target.iam_endpoint, environ)
            except ProjectLookupError as exc:
                raise ConfigError(
                    f"{where}: project_id: not set, and IAM lookup failed: {exc}"
                ) from None
        other = owners.setdefault((target.region, project_id), target.name)
        if other != target.name:
            # Their series would collide: cph_up and servers carry region and project_id only.
            raise ConfigError(f"{where}: watches the same project as target {other!r}")
        specs.append(
            TargetSpec(
                region=target.region,
                project_id=project_id,
                endpoint=target.endpoint,
                credentials=ledger.issuing(provider),
                on_auth_failure=provider.invalidate,
                server_ids=target.server_ids,
                server_filter=_filter(target.filters),
                name=target.name,
            )
        )
        log.info(
            "target %s: region %s, project %s, credentials from %s",
            target.name,
            target.region,
            project_id,
            provider.describe(),
        )
    return specs
