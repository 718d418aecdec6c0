"""AK/SK credentials: values that must never reach a log line, a label or an error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    access_key: str
    # repr=False keeps the secret out of tracebacks, logs and debug dumps.
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that might echo one back."""
        return tuple(s for s in (self.secret_key, self.security_token) if s)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in text; the last line of defence before a log or an error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text
