"""The ``--web.config.file`` of exporter-toolkit, validated: TLS, basic auth, response headers.

Reading and checking the file is the settings' work (:mod:`cph_exporter.settings.web_config_file`);
this is what it produces, and what the HTTP server serves with.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from cph_exporter.http.basic_auth import BasicAuth
from cph_exporter.http.tls import TlsSettings


class WebConfigError(Exception):
    """A web config that cannot be used. The message is one line and holds no secret."""


@dataclass(frozen=True)
class WebConfig:
    """A validated web config, its certificates loaded (so a bad one fails at start)."""

    source: str
    tls: TlsSettings | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    # repr=False: hashes are not for logs either.
    basic_auth_users: dict[str, str] = field(default_factory=dict, hash=False, repr=False)
    context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    _auth: BasicAuth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_auth", BasicAuth(self.basic_auth_users))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context built (and so checked) when the config was loaded."""
        return self.context

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """Whether the ``Authorization`` header lets the request in."""
        return self._auth.check(authorization_header)

    def files(self) -> tuple[str, ...]:
        """The config file and every file it refers to."""
        return (self.source, *(self.tls.files() if self.tls else ()))
