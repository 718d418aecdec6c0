"""Every secret handed out, for the log scrubber."""

from __future__ import annotations

from collections.abc import Callable

from cph_exporter.credentials.providers import CredentialProvider
from cph_exporter.credentials.values import Credentials


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
