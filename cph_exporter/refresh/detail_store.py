"""Each server's last details on disk, for warm restarts: one SQLite file per endpoint and
project, so that one project's details are never served for another.

The file holds what the detail calls said (bandwidth and volume IDs, names, sizes and types)
with each server's `update_time` and when the details were fetched; never credentials,
tokens or anything signed. It is written after each refresh in one transaction, so a crash
leaves the last complete write (SQLite's journal rolls a torn one back). On opening, a file
that is not this exporter's, of another endpoint or project, of a newer schema, or corrupt in
any way is renamed aside with one warning and the exporter starts cold: it is never trusted
in part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from cph_exporter.cph.models import Bandwidth, ServerDetails, Volume

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x43504845  # "CPHE": tells this exporter's files from any other SQLite file
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE details (server_id TEXT PRIMARY KEY, update_time TEXT NOT NULL, "
    "fetched_at REAL NOT NULL, details TEXT NOT NULL)",
)


class UntrustedFile(Exception):
    """Why a cache file is not used; a reason, never its content."""


@dataclass(frozen=True, slots=True)
class StoredDetails:
    update_time: str  # as the list said it when these details were fetched
    fetched_at: float  # wall clock, Unix seconds
    details: ServerDetails


def file_name(endpoint: str, project_id: str) -> str:
    """The file of one endpoint and project inside --cache.dir."""
    key = hashlib.sha256(f"{endpoint.rstrip('/')}\n{project_id}".encode()).hexdigest()[:16]
    return f"details-{key}.sqlite3"


class DetailStore:
    """The open file of one target; every method logs and swallows its own failures."""

    def __init__(
        self,
        directory: str | Path,
        endpoint: str,
        project_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(directory) / file_name(endpoint, project_id)
        self._endpoint = endpoint.rstrip("/")
        self._project_id = project_id
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._stored: set[str] = set()  # the server IDs the file holds
        self._lock = threading.Lock()  # a close waits for the write under way

    def load(self) -> dict[str, StoredDetails]:
        """The file's details by server ID; empty (a cold start) when the file is absent or
        not to be trusted, which is then set aside with one warning."""
        with self._lock:
            return self._load()

    def _load(self) -> dict[str, StoredDetails]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            if existed:
                try:
                    loaded = self._open_existing()
                    self._stored = set(loaded)
                    return loaded
                except (UntrustedFile, sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                    why = str(exc) if isinstance(exc, UntrustedFile) else "corrupt"
                    self._set_aside(why)
            self._create()
        except (OSError, sqlite3.Error) as exc:
            log.warning("detail cache %s unusable, running without it: %s", self.path, exc)
            self._close()
        return {}

    def save(self, fetched: Mapping[str, StoredDetails], listed: Collection[str]) -> None:
        """After a refresh: the details fetched in it, and no row for a server no longer listed;
        one transaction."""
        with self._lock:
            self._save(fetched, listed)

    def _save(self, fetched: Mapping[str, StoredDetails], listed: Collection[str]) -> None:
        db = self._db
        if db is None:
            return
        gone = [(server_id,) for server_id in self._stored if server_id not in listed]
        rows = [
            (server_id, d.update_time, d.fetched_at, _encode(d.details))
            for server_id, d in fetched.items()
        ]
        if not gone and not rows:
            return
        try:
            with db:
                db.executemany("DELETE FROM details WHERE server_id = ?", gone)
                db.executemany("INSERT OR REPLACE INTO details VALUES (?, ?, ?, ?)", rows)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('written_at', ?)", (repr(self._clock()),)
                )
        except sqlite3.Error as exc:
            log.warning("detail cache %s not written: %s", self.path, exc)
            return
        self._stored.difference_update(server_id for (server_id,) in gone)
        self._stored.update(fetched)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        # The refresh thread writes; the file is opened on it too, but say so explicitly.
        return sqlite3.connect(self.path, check_same_thread=False)

    def _open_existing(self) -> dict[str, StoredDetails]:
        db = self._db = self._connect()
        if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise UntrustedFile("not a cph-exporter detail cache")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UntrustedFile(f"written by a newer schema ({version} > {SCHEMA_VERSION})")
        if version != SCHEMA_VERSION:
            raise UntrustedFile(f"unknown schema {version}")
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise UntrustedFile("corrupt")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if (meta.get("endpoint"), meta.get("project_id")) != (self._endpoint, self._project_id):
            raise UntrustedFile("written for another endpoint or project")
        loaded: dict[str, StoredDetails] = {}
        for server_id, update_time, fetched_at, details in db.execute(
            "SELECT server_id, update_time, fetched_at, details FROM details"
        ):
            if not (isinstance(server_id, str) and isinstance(update_time, str)):
                raise UntrustedFile("corrupt")
            if not isinstance(fetched_at, float) or not math.isfinite(fetched_at):
                raise UntrustedFile("corrupt")
            loaded[server_id] = StoredDetails(update_time, fetched_at, _decode(details))
        return loaded

    def _create(self) -> None:
        self._close()
        db = self._db = self._connect()
        with db:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("endpoint", self._endpoint), ("project_id", self._project_id)],
            )
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        self._stored = set()

    def _set_aside(self, why: str) -> None:
        self._close()
        aside = self.path.with_name(f"{self.path.name}.set-aside-{int(self._clock())}")
        log.warning(
            "detail cache %s not used (%s): moved to %s; starting cold", self.path, why, aside.name
        )
        os.replace(self.path, aside)
        for suffix in ("-journal", "-wal", "-shm"):  # a journal belongs to the file set aside
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")


# Details as compact JSON arrays; every field checked on the way back in.


def _encode(details: ServerDetails) -> str:
    return json.dumps(
        [
            [
                [b.bandwidth_id, b.name, b.size_mbit_per_second, b.charge_mode, b.share_type]
                for b in details.bandwidths
            ],
            [[v.volume_id, v.name, v.size_gb, v.volume_type] for v in details.volumes],
        ],
        separators=(",", ":"),
        allow_nan=False,
    )


def _decode(text: object) -> ServerDetails:
    if not isinstance(text, str):
        raise UntrustedFile("corrupt")
    bandwidths, volumes = json.loads(text)
    return ServerDetails(
        bandwidths=tuple(
            Bandwidth(_text(i), _text(n), _number(s), _int(c), _int(t))
            for i, n, s, c, t in bandwidths
        ),
        volumes=tuple(Volume(_text(i), _text(n), _number(s), _text(t)) for i, n, s, t in volumes),
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise UntrustedFile("corrupt")
    return value


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise UntrustedFile("corrupt")


def _int(value: object) -> int | None:
    if value is None or type(value) is int:
        return value
    raise UntrustedFile("corrupt")
