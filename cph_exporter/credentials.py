"""AK/SK credentials: values that must never reach a log line, a label or an error."""

from __future__ import annotations

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
