"""Start-up: from settings to checked targets (credentials found, project IDs known), once.

`app.py` builds the running exporter from what this returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from cph_exporter import __version__
from cph_exporter.cph.iam import ProjectIdResolver, ProjectLookupError, iam_endpoint_from
from cph_exporter.cph.transport import DEFAULT_MAX_RESPONSE_SIZE, configure_session
from cph_exporter.credentials.ledger import SecretLedger
from cph_exporter.credentials.providers import (
    CredentialError,
    CredentialProvider,
    CredentialsNotFound,
)
from cph_exporter.credentials.values import Credentials
from cph_exporter.refresh.shard import Shard
from cph_exporter.refresh.targets import TargetSpec
from cph_exporter.settings.config import ConfigError
from cph_exporter.settings.target_config import ServerFilters, TargetConfig

log = logging.getLogger(__name__)

_NO_CREDENTIALS = (
    "none found; set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or their _FILE variants), "
    "write ~/.huaweicloud/credentials, use --cph.metadata on an ECS, or run with --simulate"
)


# ---------------------------------------------------------------------------------------------
# Targets: from settings to what a refresher needs, once at start


def target_spec(
    target: TargetConfig,
    credentials: Callable[[], Credentials],
    on_auth_failure: Callable[[], None] | None = None,
    project_id: str | None = None,
    credential_source: str = "",
) -> TargetSpec:
    """The one way a target is built, from flags, the config file or the simulator alike."""
    filters = target.filters
    return TargetSpec(
        region=target.region,
        project_id=target.project_id if project_id is None else project_id,
        endpoint=target.endpoint,
        credentials=credentials,
        on_auth_failure=on_auth_failure,
        server_ids=target.server_ids,
        server_filter=_server_filter(filters) if filters else None,
        name=target.name,
        credential_source=credential_source,
    )


def _server_filter(filters: ServerFilters) -> Callable[[Any], bool]:
    return lambda s: filters.matches(s.server_name, s.network_version, s.status)


def _checked(provider: CredentialProvider, ledger: SecretLedger, where: str) -> None:
    """Read the credentials once now, so a missing or broken source stops the start."""
    try:
        ledger.issuing(provider)()
    except CredentialsNotFound as exc:
        detail = _NO_CREDENTIALS if where == "credentials" else str(exc)
        raise ConfigError(f"{where}: {detail}") from None
    except CredentialError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def resolve_targets(
    targets: Sequence[TargetConfig],
    environ: Mapping[str, str],
    ledger: SecretLedger,
    *,
    from_flags: bool = False,
    verify: bool | str = True,
    request_timeout: float = 10.0,
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
) -> list[TargetSpec]:
    """Credentials found and project IDs known; two targets may not watch one project.

    A problem is a ConfigError naming the flag, or the config file's target.
    """
    specs: list[TargetSpec] = []
    owners: dict[tuple[str, str], str] = {}
    for target in targets:
        where = "" if from_flags else f"config file target {target.name!r}: "
        provider = target.credentials.provider(environ)
        _checked(provider, ledger, f"{where}credentials")
        project_id = target.project_id
        if not project_id:
            iam = target.iam_endpoint or iam_endpoint_from(environ)
            resolver = ProjectIdResolver(
                # Configured as the API client's is: CA file, TLS verification, proxies.
                configure_session(requests.Session(), iam, verify, pool_size=1),
                provider,
                iam_endpoint=iam,
                timeout=request_timeout,
                max_response_size=max_response_size,
            )
            try:
                project_id = resolver.resolve(target.region)
            except ProjectLookupError as exc:
                setting = "--cph.project-id" if from_flags else "project_id"
                raise ConfigError(
                    f"{where}{setting}: not set, and IAM lookup failed: {exc}"
                ) from None
        other = owners.setdefault((target.region, project_id), target.name)
        if other != target.name:
            # Their series would collide: cph_up and servers carry region and project_id only.
            raise ConfigError(f"{where}watches the same project as target {other!r}")
        # After the check above, a chain describes the source that answered, not the chain.
        source = provider.describe()
        credentials = ledger.issuing(provider)
        specs.append(target_spec(target, credentials, provider.invalidate, project_id, source))
    return specs


# ---------------------------------------------------------------------------------------------
# What the operator is told: one start line, and the --config.check summary


def start_line(specs: Sequence[TargetSpec], revision: str = "") -> str:
    """Version, and each target's region, project, endpoint and credential source (by kind)."""
    built = f" (revision {revision})" if revision else ""
    targets = "; ".join(
        (f"target {spec.name}: " if spec.name else "")
        + f"region {spec.region}, project {spec.project_id}, endpoint {spec.endpoint}, "
        f"credentials from {spec.credential_source or 'the caller'}"
        + (f", {len(spec.server_ids)} server IDs" if spec.server_ids else "")
        for spec in specs
    )
    return f"cph-exporter {__version__}{built} starting with {len(specs)} target(s): {targets}"


def check_summary(
    targets: Sequence[TargetConfig], environ: Mapping[str, str], shard: Shard, source: str
) -> list[str]:
    """One block per target, from the settings alone: nothing is read or asked for."""
    lines = [f"configuration OK: {len(targets)} target(s) from {source}"]
    for target in targets:
        lines += [
            f"target {target.name or '(flags)'}:",
            f"  region:       {target.region}",
            f"  project:      {target.project_id or 'looked up at start (IAM)'}",
            f"  endpoint:     {target.endpoint}",
            f"  credentials:  {target.credentials.provider(environ).describe()}",
            f"  servers:      {_servers(target)}",
            f"  shard:        {'all servers (0/1)' if shard.whole else shard}",
        ]
    return lines


def _servers(target: TargetConfig) -> str:
    chosen = []
    if target.server_ids:
        chosen.append("only IDs " + ", ".join(target.server_ids))
    filters = target.filters
    if filters.network_version is not None:
        chosen.append(f"network_version {filters.network_version}")
    if filters.name_pattern is not None:
        chosen.append(f"name matching {filters.name_pattern.pattern!r}")
    if filters.statuses is not None:
        chosen.append("status in " + ", ".join(str(s) for s in sorted(filters.statuses)))
    return "; ".join(chosen) or "all listed"
