"""A web config that follows its files, so certificates rotate without a restart."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable

from cph_exporter.http.web_config import WebConfig, WebConfigError

log = logging.getLogger(__name__)

# Reads and validates the file at a path: the config, and whether the file was empty.
WebConfigLoader = Callable[[str], tuple[WebConfig, bool]]

_Stamp = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


def _stamp(paths: tuple[str, ...]) -> _Stamp:
    out: list[tuple[str, tuple[int, int, int, int] | None]] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks, so Kubernetes' ..data swaps count
        except OSError:
            out.append((path, None))
        else:
            out.append((path, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)))
    return tuple(out)


class ReloadingWebConfig:
    """A web config that follows its files, so certificates rotate without a restart.

    Every ``current()`` stats the config file and the files it names; when one changed, the
    config is loaded again. A config that fails to load leaves the last good one in place and
    logs one warning (again only when the error changes); it is retried on the next change or
    after ``retry_interval`` seconds, for files that appear without anything else changing.
    Two changes need a restart and are refused while running: turning TLS on or off, and an
    emptied file (most likely a rewrite in progress, which must not drop TLS and basic auth).
    """

    def __init__(
        self,
        path: str,
        load: WebConfigLoader,
        *,
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._load = load
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._config = load(path)[0]
        self._stamp = _stamp(self._config.files())
        self._failed_at: float | None = None
        self._last_error: str | None = None

    def current(self) -> WebConfig:
        """The config to use now, reloaded first if its files changed."""
        if not self._due(_stamp(self._config.files())):
            return self._config
        with self._lock:
            before = _stamp(self._config.files())
            if self._due(before):  # another thread may have reloaded meanwhile
                self._reload(before)
            return self._config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The current server context: wrap each new connection with this."""
        return self.current().ssl_context()

    def _due(self, stamp: _Stamp) -> bool:
        if stamp != self._stamp:
            return True
        return self._failed_at is not None and (
            self._clock() - self._failed_at >= self._retry_interval
        )

    def _reload(self, before: _Stamp) -> None:
        old = self._config
        try:
            new, empty = self._load(self.path)
            if empty and (old.tls or old.headers or old.basic_auth_users):
                raise WebConfigError(
                    f"web config {self.path}: the file is empty; an emptied file is not applied "
                    "while running (restart to drop TLS and basic auth)"
                )
            if (new.tls is None) != (old.tls is None):
                raise WebConfigError(
                    f"web config {self.path}: tls_server_config: turning TLS on or off "
                    "needs a restart"
                )
        except WebConfigError as e:
            # `before` was taken ahead of the read: a change during it triggers another try.
            self._stamp = before
            self._failed_at = self._clock()
            if str(e) != self._last_error:
                self._last_error = str(e)
                log.warning("keeping the last good web config: %s", e)
            return
        # With the same files, `before` makes a change made during the load count next time.
        self._stamp = before if new.files() == old.files() else _stamp(new.files())
        self._config = new
        self._failed_at = None
        self._last_error = None
        log.info("web config %s reloaded", self.path)
