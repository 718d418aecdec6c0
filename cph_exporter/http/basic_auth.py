"""Basic auth against bcrypt hashes, as exporter-toolkit checks it: slow on purpose, one check
at a time, with a decoy hash for unknown users so that timing does not tell who exists."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

_AUTH_CACHE_SIZE = 100
# bcrypt is deliberately CPU-heavy: one check at a time, so a flood of bad passwords costs one
# core, not all of them (exporter-toolkit serialises them too).
_BCRYPT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _decoy_hash(cost: int) -> bytes:
    """A hash nobody knows the password of, as slow to check as the real ones."""
    return bcrypt.hashpw(secrets.token_urlsafe(24).encode(), bcrypt.gensalt(rounds=cost))


def _parse_basic(header: str | None) -> tuple[str | None, bytes] | None:
    """(user or None if not UTF-8, password) from ``Basic base64(user:password)``."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None, password


class BasicAuth:
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # The decoy costs as much as the dearest real hash, so timing shows nothing.
        self._decoy_cost = max((int(h[4:6]) for h in self._users.values()), default=4)
        # Successful checks only: a wrong password always pays bcrypt's price. Keys are
        # keyed digests so the cache holds no password and nothing to look up offline.
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)

    def _cache_key(self, user: str, password: bytes, hashed: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod="sha256")
        for part in (user.encode(), password, hashed):
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        creds = _parse_basic(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user) if user is not None else None
        if hashed is None:
            _checkpw(password, _decoy_hash(self._decoy_cost))
            return False
        assert user is not None
        key = self._cache_key(user, password, hashed)
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if not _checkpw(password, hashed):
            return False
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > _AUTH_CACHE_SIZE:
                self._ok.popitem(last=False)
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        with _BCRYPT_LOCK:
            return bcrypt.checkpw(password, hashed)
    except ValueError:  # a password over bcrypt's 72 bytes can never match
        return False
