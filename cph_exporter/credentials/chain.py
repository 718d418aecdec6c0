"""The order the official SDKs look for credentials in, as one provider: the first that has any."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import requests

from cph_exporter.credentials.metadata import METADATA_URL, MetadataCredentials, utcnow
from cph_exporter.credentials.providers import (
    CredentialError,
    CredentialProvider,
    CredentialsNotFound,
    EnvCredentials,
    ProfileCredentials,
    StaticCredentials,
    default_profile_path,
)
from cph_exporter.credentials.values import Credentials

log = logging.getLogger(__name__)


class ChainCredentials:
    """The first source that yields complete credentials wins, and is remembered.

    Sources without credentials are skipped; a source that is configured but broken stops
    the chain with its error. `invalidate()` (or a failure of the remembered source) makes the
    next get() start again from the first source, so rotated keys are picked up wherever they
    now live.
    """

    def __init__(self, providers: Sequence[CredentialProvider]) -> None:
        if not providers:
            raise ValueError("a credential chain needs at least one source")
        self._providers = tuple(providers)
        self._lock = threading.Lock()
        self._active: CredentialProvider | None = None
        self._last_used: CredentialProvider | None = None  # survives invalidate()

    @property
    def providers(self) -> tuple[CredentialProvider, ...]:
        return self._providers

    @property
    def active(self) -> CredentialProvider | None:
        """The source the current credentials come from, once one has worked."""
        return self._active

    def describe(self) -> str:
        active = self._active
        if active is not None:
            return active.describe()
        return "credential chain (" + ", ".join(p.describe() for p in self._providers) + ")"

    def get(self) -> Credentials:
        with self._lock:
            failed: tuple[CredentialProvider, CredentialError] | None = None
            if self._active is not None:
                try:
                    return self._active.get()
                except CredentialError as exc:
                    log.warning(
                        "credentials from %s failed, trying all sources: %s",
                        self._active.describe(),
                        exc,
                    )
                    failed = (self._active, exc)
                    self._active = None
            reasons: list[str] = []
            for provider in self._providers:
                try:
                    if failed is not None and provider is failed[0]:
                        # Just failed: asking again at once would only double the wait.
                        raise failed[1]
                    creds = provider.get()
                except CredentialsNotFound as exc:
                    reasons.append(str(exc))
                    continue
                self._active = provider
                self._note_source(provider)
                return creds
            raise CredentialsNotFound("no credentials found: " + "; ".join(reasons))

    def _note_source(self, provider: CredentialProvider) -> None:
        """Said once: the start line names the first source, a re-read only a change."""
        previous, self._last_used = self._last_used, provider
        if previous is None or previous is provider:
            log.debug("using credentials from %s", provider.describe())
        else:
            log.info(
                "credentials now from %s (were from %s)", provider.describe(), previous.describe()
            )

    def invalidate(self) -> None:
        with self._lock:
            self._active = None
            for provider in self._providers:
                provider.invalidate()


def default_chain(
    environ: Mapping[str, str],
    explicit: Credentials | None,
    metadata_url: str | None,
    use_metadata: bool,
    session: requests.Session | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ChainCredentials:
    """Explicit configuration, environment (+ _FILE), profile file, ECS metadata service."""
    providers: list[CredentialProvider] = []
    if explicit is not None:
        providers.append(StaticCredentials(explicit))
    providers.append(EnvCredentials(environ))
    path, required = default_profile_path(environ)
    if path is not None:
        providers.append(ProfileCredentials(path, required=required))
    if use_metadata:
        providers.append(
            MetadataCredentials(metadata_url or METADATA_URL, session=session, clock=clock)
        )
    return ChainCredentials(providers)
