"""AK/SK credentials: values that must never reach a log line, a label or an error."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

# Any run of this many characters of a secret is blanked too: an answer may echo a piece.
FRAGMENT = 16
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    # repr=False keeps the secret out of tracebacks, logs and debug dumps.
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """Every value to keep out of text that might echo one back: SK, token and the AK."""
        return tuple(s for s in (self.secret_key, self.security_token, self.access_key) if s)


@functools.lru_cache(maxsize=8)
def _fragments(secrets: tuple[str, ...]) -> frozenset[str]:
    """Every FRAGMENT-long piece of the secrets: built once per set, not once per log line."""
    return frozenset(s[i : i + FRAGMENT] for s in secrets for i in range(len(s) - FRAGMENT + 1))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Blank every secret in text, and every piece of FRAGMENT or more characters of one;
    the last line of defence before a log line, a label or an error."""
    if not text:  # most fields of a good answer: absent
        return text
    ordered = tuple(sorted({s for s in secrets if s}, key=lambda s: (-len(s), s)))
    for secret in ordered:
        text = text.replace(secret, REDACTED)
    grams = _fragments(ordered)
    if not grams or len(text) < FRAGMENT:
        return text
    hidden = [False] * len(text)
    found = False
    for i in range(len(text) - FRAGMENT + 1):
        if text[i : i + FRAGMENT] in grams:
            hidden[i : i + FRAGMENT] = [True] * FRAGMENT
            found = True
    if not found:
        return text
    out: list[str] = []
    for i, char in enumerate(text):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(REDACTED)
    return "".join(out)
