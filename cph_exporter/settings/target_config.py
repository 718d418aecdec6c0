"""One CPH target as the settings describe it: where to reach it, with what, and which servers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cph_exporter.credentials.chain import default_chain
from cph_exporter.credentials.metadata import METADATA_URL, MetadataCredentials
from cph_exporter.credentials.providers import (
    CredentialProvider,
    FileCredentials,
    NamedEnvCredentials,
    StaticCredentials,
)
from cph_exporter.credentials.values import Credentials
from cph_exporter.settings.config import Config

TARGET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NETWORK_VERSIONS = ("v1", "v2")

CredentialKind = Literal["default", "env", "file", "metadata", "inline"]


# ---------------------------------------------------------------------------------------------
# What a loaded file describes


@dataclass(frozen=True)
class ServerFilters:
    """Which listed servers a target exports. Every condition given must hold; none: all.

    ``name_pattern`` is searched for anywhere in the name (``re.search``): anchor it with ``^``
    and ``$`` as needed.
    """

    network_version: str | None = None
    name_pattern: re.Pattern[str] | None = None
    statuses: frozenset[int] | None = None

    def matches(self, server_name: str, network_version: str, status: int | None) -> bool:
        if self.network_version is not None and network_version != self.network_version:
            return False
        if self.name_pattern is not None and not self.name_pattern.search(server_name):
            return False
        return self.statuses is None or (status is not None and status in self.statuses)

    def __bool__(self) -> bool:
        """Whether any filter is set."""
        return (
            self.network_version is not None
            or self.name_pattern is not None
            or self.statuses is not None
        )


@dataclass(frozen=True)
class CredentialSpec:
    """The one way a target's credentials are given; fields of other ways are None.

    - ``default``: the exporter's usual chain (``HUAWEICLOUD_SDK_*`` variables, profile file,
      and the ECS metadata service last when ``use_metadata`` is set);
    - ``env``: names of environment variables holding the values;
    - ``file``: absolute paths of files holding the values (stripped when read);
    - ``metadata``: the ECS metadata service at ``metadata_url`` (temporary agency keys);
    - ``inline``: the values themselves, kept out of ``repr``.

    ``origin`` names where the spec was written (file and key path), for messages.
    """

    kind: CredentialKind = "default"
    access_key_env: str | None = None
    secret_key_env: str | None = None
    security_token_env: str | None = None
    access_key_file: str | None = None
    secret_key_file: str | None = None
    security_token_file: str | None = None
    metadata_url: str | None = None
    use_metadata: bool = False  # default: the chain ends with the metadata service
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    origin: str = ""

    def provider(self, environ: Mapping[str, str]) -> CredentialProvider:
        """A provider reading the credentials this spec names; nothing is read until get()."""
        if self.kind == "env":
            assert self.access_key_env is not None and self.secret_key_env is not None
            return NamedEnvCredentials(
                environ, self.access_key_env, self.secret_key_env, self.security_token_env
            )
        if self.kind == "file":
            assert self.access_key_file is not None and self.secret_key_file is not None
            return FileCredentials(
                self.access_key_file, self.secret_key_file, self.security_token_file
            )
        if self.kind == "metadata":
            return MetadataCredentials(self.metadata_url or METADATA_URL)
        if self.kind == "inline":
            return StaticCredentials(
                Credentials(
                    access_key=self.access_key or "",
                    secret_key=self.secret_key or "",
                    security_token=self.security_token or None,
                ),
                description=f"inline credentials in {self.origin or 'the config file'}",
            )
        return default_chain(environ, None, self.metadata_url, self.use_metadata)


@dataclass(frozen=True)
class TargetConfig:
    """One CPH target: the ``target`` label ``name``, where to reach it and with what.

    As in ``Config``: ``project_id`` "" means "look it up through IAM", ``iam_endpoint`` ""
    means the default (``HUAWEICLOUD_SDK_IAM_ENDPOINT`` or the global one). The loader always
    fills ``endpoint`` (default ``https://cph.{region}.myhuaweicloud.com``, no trailing slash).
    """

    name: str
    region: str
    project_id: str = ""
    endpoint: str = ""
    iam_endpoint: str = ""
    credentials: CredentialSpec = CredentialSpec()
    server_ids: tuple[str, ...] = ()
    filters: ServerFilters = ServerFilters()


# ---------------------------------------------------------------------------------------------
# Providers for the ways credential_sources has no class for


def flag_target(config: Config) -> TargetConfig:
    """The one target the --cph.* flags describe (validated: the endpoint is filled in)."""
    return TargetConfig(
        name="",
        region=config.region,
        project_id=config.project_id,
        endpoint=config.endpoint,
        iam_endpoint=config.iam_endpoint,
        credentials=CredentialSpec(
            metadata_url=config.metadata_url, use_metadata=config.use_metadata
        ),
        server_ids=config.server_ids,
    )
