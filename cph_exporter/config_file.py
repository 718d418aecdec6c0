"""The ``--config.file``: several CPH targets (regions, projects, credentials) in one YAML file.

Loading is strict, in the way of :mod:`cph_exporter.webconfig` (both use
:mod:`cph_exporter.yaml_nodes`): the YAML is walked as nodes, so duplicate keys are seen and
scalars are read as written (a project ID like ``0123`` stays a string), and every problem
stops the load with one ``ConfigError`` line naming the file, the key path and what is wrong,
for example::

    config file /etc/cph.yml: targets[1].credentials.secret_key_env: required with access_key_env

No message ever holds a credential value: values under ``credentials`` are never echoed, and
misplaced values are named by their type only.

Credentials are given by reference (environment variable names, files, the ECS metadata
service) or, only in a file readable by its owner alone, inline; an inline secret in a file
that group or others can access is logged as a warning (without the value).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import yaml

from cph_exporter.config import _IDENTIFIER, _REGION, ENDPOINT_TEMPLATE, ConfigError
from cph_exporter.credential_sources import (
    METADATA_URL,
    CredentialError,
    CredentialProvider,
    MetadataCredentials,
    StaticCredentials,
    _CachedProvider,
    default_chain,
)
from cph_exporter.credentials import Credentials
from cph_exporter.yaml_nodes import NodeParser, show

log = logging.getLogger(__name__)

TARGET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NETWORK_VERSIONS = ("v1", "v2")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CredentialKind = Literal["default", "env", "file", "metadata", "inline"]

_TOP_KEYS = ("targets",)
_TARGET_KEYS = (
    "name",
    "region",
    "project_id",
    "endpoint",
    "iam_endpoint",
    "credentials",
    "server_ids",
    "filters",
)
_FILTER_KEYS = ("network_version", "name_pattern", "status")
# The ways of giving credentials: (keys that must come together, optional keys).
_WAYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "env": (("access_key_env", "secret_key_env"), ("security_token_env",)),
    "file": (("access_key_file", "secret_key_file"), ("security_token_file",)),
    "metadata": (("metadata",), ("metadata_url",)),
    "inline": (("access_key", "secret_key"), ("security_token",)),
}
_CREDENTIAL_KEYS = tuple(
    key for required, optional in _WAYS.values() for key in required + optional
)
_WAY_OF = {key: way for way, (req, opt) in _WAYS.items() for key in req + opt}

_STRING_TAGS = {"tag:yaml.org,2002:" + name for name in ("str", "int", "float")}


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

    - ``default``: the exporter's usual chain (``HUAWEICLOUD_SDK_*`` variables, profile file);
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
        return default_chain(environ, None, None, False)


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


class NamedEnvCredentials(_CachedProvider):
    """AK/SK (and optionally a security token) from environment variables named in the file.

    Empty variables count as unset. A variable that is not set is an error, not "no
    credentials here": the file asked for it explicitly.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        access_key_var: str,
        secret_key_var: str,
        security_token_var: str | None = None,
    ) -> None:
        super().__init__()
        self._environ = environ
        self._names = (access_key_var, secret_key_var, security_token_var)

    @property
    def variables(self) -> tuple[str, str, str | None]:
        return self._names

    def describe(self) -> str:
        return "environment variables " + ", ".join(n for n in self._names if n)

    def _load(self) -> Credentials:
        access_var, secret_var, token_var = self._names
        missing = [n for n in (access_var, secret_var, token_var) if n and not self._environ.get(n)]
        if missing:
            raise CredentialError(f"{self.describe()}: {', '.join(missing)} not set or empty")
        return Credentials(
            access_key=self._environ[access_var],
            secret_key=self._environ[secret_var],
            security_token=self._environ[token_var] if token_var else None,
        )


class FileCredentials(_CachedProvider):
    """AK/SK (and optionally a security token) from files, one value each, stripped.

    Read again after ``invalidate()``, so keys rotated in the files are picked up.
    """

    def __init__(
        self, access_key_file: str, secret_key_file: str, security_token_file: str | None = None
    ) -> None:
        super().__init__()
        self._paths = (access_key_file, secret_key_file, security_token_file)

    @property
    def paths(self) -> tuple[str, str, str | None]:
        return self._paths

    def describe(self) -> str:
        return "credential files " + ", ".join(p for p in self._paths if p)

    def _read(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except UnicodeDecodeError:
            raise CredentialError(f"{self.describe()}: {path} is not UTF-8 text") from None
        except OSError as exc:
            raise CredentialError(
                f"{self.describe()}: cannot read {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        if not value:
            raise CredentialError(f"{self.describe()}: {path} is empty")
        return value

    def _load(self) -> Credentials:
        access_path, secret_path, token_path = self._paths
        return Credentials(
            access_key=self._read(access_path),
            secret_key=self._read(secret_path),
            security_token=self._read(token_path) if token_path else None,
        )


# ---------------------------------------------------------------------------------------------
# Loading


def _show(text: str) -> str:
    """A user-written key or (non-secret) value, made safe for a one-line message."""
    return show(text, ":")


class _Parser(NodeParser):
    error = ConfigError
    label = "config file"
    show_also = ":"  # as in _show
    bad_key = "keys must be plain strings (no merge keys)"

    def unknown_key(self, key: str, dotted: str, allowed: tuple[str, ...]) -> str:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown key ({hint}allowed: {', '.join(allowed)})"

    def string(self, node: yaml.Node, keypath: str) -> str:
        """A non-empty scalar, as written (``0123`` stays ``0123``)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _STRING_TAGS:
            self.fail(keypath, f"expected a string, got {self.kind(node)}")
        text = str(node.value)
        if not text.strip():
            self.fail(keypath, "must not be empty")
        return text

    def integer(self, node: yaml.Node, keypath: str) -> int:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            value = yaml.constructor.SafeConstructor().construct_yaml_int(node)
            if isinstance(value, int):
                return value
        self.fail(keypath, f"expected an integer, got {self.kind(node)}")

    def sequence(self, node: yaml.Node, keypath: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(keypath, f"expected a list, got {self.kind(node)}")
        if not node.value:
            self.fail(keypath, "empty list")
        return list(node.value)

    def url(self, node: yaml.Node, keypath: str) -> str:
        text = self.string(node, keypath).strip()
        # Refused (and never echoed) before parsing: a password may hold '/', which would make
        # the URL parse as something else altogether.
        if "@" in text:
            self.fail(keypath, "must not carry credentials (user:password@) or an '@'")
        shown = f": {_show(text)}"
        try:
            url = urlsplit(text)
            url.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.fail(keypath, f"not a valid URL{shown}")
        if url.scheme not in ("http", "https") or not url.hostname:
            self.fail(keypath, f"not an http(s) URL{shown}")
        if url.query or url.fragment:
            self.fail(keypath, "must not carry a query or a fragment")
        return text.rstrip("/")

    def file_path(self, node: yaml.Node, keypath: str) -> str:
        value = self.string(node, keypath)
        if "\x00" in value:
            self.fail(keypath, "not a file path")
        return os.path.normpath(os.path.join(self.folder, value))

    # --- the parts of the file ---------------------------------------------------------------

    def targets(self, root: yaml.Node) -> tuple[TargetConfig, ...]:
        if self.is_null(root):
            self.fail("top level", "the file is empty; expected a mapping with a targets list")
        if not isinstance(root, yaml.MappingNode):
            self.fail("top level", f"expected a mapping with a targets list, got {self.kind(root)}")
        entries = self.mapping(root, "top level", _TOP_KEYS)
        if "targets" not in entries:
            self.fail("targets", "required: a list of targets")
        items = self.sequence(entries["targets"], "targets")
        seen: dict[str, int] = {}
        out: list[TargetConfig] = []
        for i, item in enumerate(items):
            target = self.target(item, f"targets[{i}]")
            if target.name in seen:
                self.fail(
                    f"targets[{i}].name",
                    f"duplicate target name {target.name} (also targets[{seen[target.name]}])",
                )
            seen[target.name] = i
            out.append(target)
        return tuple(out)

    def target(self, node: yaml.Node, keypath: str) -> TargetConfig:
        if not isinstance(node, yaml.MappingNode):
            self.fail(keypath, f"expected a mapping, got {self.kind(node)}")
        entries = self.mapping(node, keypath, _TARGET_KEYS)

        def where(key: str) -> str:
            return f"{keypath}.{key}"

        for required in ("name", "region"):
            if required not in entries:
                self.fail(where(required), "required")
        name = self.string(entries["name"], where("name"))
        if not TARGET_NAME.match(name):
            self.fail(
                where("name"),
                f"not a target name: {_show(name)} (1 to 64 of A-Z, a-z, 0-9, '_', '.', '-')",
            )
        region = self.string(entries["region"], where("region"))
        if not _REGION.match(region):
            self.fail(where("region"), f"not a region name: {_show(region)} (like cn-north-4)")
        project_id = ""
        if "project_id" in entries:
            project_id = self.string(entries["project_id"], where("project_id"))
            if not _IDENTIFIER.match(project_id):
                self.fail(where("project_id"), f"not a project ID: {_show(project_id)}")
        endpoint = ENDPOINT_TEMPLATE.format(region=region)
        if "endpoint" in entries:
            endpoint = self.url(entries["endpoint"], where("endpoint"))
        iam_endpoint = ""
        if "iam_endpoint" in entries:
            iam_endpoint = self.url(entries["iam_endpoint"], where("iam_endpoint"))
        credentials = CredentialSpec(origin=f"config file {self.source}, {keypath}")
        if "credentials" in entries:
            credentials = self.credentials(entries["credentials"], where("credentials"))
        server_ids: tuple[str, ...] = ()
        if "server_ids" in entries:
            server_ids = self.server_ids(entries["server_ids"], where("server_ids"))
        filters = ServerFilters()
        if "filters" in entries:
            if server_ids:
                self.fail(
                    where("filters"),
                    "cannot be combined with server_ids (filters apply to listed servers; "
                    "servers given by ID are not listed)",
                )
            filters = self.filters(entries["filters"], where("filters"))
        return TargetConfig(
            name=name,
            region=region,
            project_id=project_id,
            endpoint=endpoint,
            iam_endpoint=iam_endpoint,
            credentials=credentials,
            server_ids=server_ids,
            filters=filters,
        )

    def server_ids(self, node: yaml.Node, keypath: str) -> tuple[str, ...]:
        ids: list[str] = []
        for i, item in enumerate(self.sequence(node, keypath)):
            server_id = self.string(item, f"{keypath}[{i}]")
            if not _IDENTIFIER.match(server_id):
                self.fail(f"{keypath}[{i}]", f"not a server ID: {_show(server_id)}")
            if server_id in ids:
                self.fail(f"{keypath}[{i}]", f"duplicate server ID {server_id}")
            ids.append(server_id)
        return tuple(ids)

    def filters(self, node: yaml.Node, keypath: str) -> ServerFilters:
        entries = self.mapping(node, keypath, _FILTER_KEYS)
        if not entries:
            self.fail(
                keypath,
                f"no filter given (allowed: {', '.join(_FILTER_KEYS)}); "
                "remove the key to keep every server",
            )
        network_version = None
        if "network_version" in entries:
            key = f"{keypath}.network_version"
            network_version = self.string(entries["network_version"], key)
            if network_version not in NETWORK_VERSIONS:
                self.fail(
                    key,
                    f"must be one of {', '.join(NETWORK_VERSIONS)}, not {_show(network_version)}",
                )
        pattern = None
        if "name_pattern" in entries:
            key = f"{keypath}.name_pattern"
            text = self.string(entries["name_pattern"], key)
            try:
                pattern = re.compile(text)
            except re.error as exc:
                at = f" at position {exc.pos}" if exc.pos is not None else ""
                self.fail(key, f"not a valid regular expression: {exc.msg}{at}")
        statuses = None
        if "status" in entries:
            key = f"{keypath}.status"
            codes: set[int] = set()
            for i, item in enumerate(self.sequence(entries["status"], key)):
                code = self.integer(item, f"{key}[{i}]")
                if code < 0:
                    self.fail(f"{key}[{i}]", f"not a status code: {code}")
                if code in codes:
                    self.fail(f"{key}[{i}]", f"duplicate status code {code}")
                codes.add(code)
            statuses = frozenset(codes)
        return ServerFilters(network_version, pattern, statuses)

    def credentials(self, node: yaml.Node, keypath: str) -> CredentialSpec:
        entries = self.mapping(node, keypath, _CREDENTIAL_KEYS)
        origin = f"config file {self.source}, {keypath.rsplit('.', 1)[0]}"
        ways = [way for way in _WAYS if any(_WAY_OF[key] == way for key in entries)]
        if not ways:
            self.fail(
                keypath,
                "none of the ways is given: access_key_env and secret_key_env, "
                "access_key_file and secret_key_file, metadata: true, or (in a file only its "
                "owner can read) access_key and secret_key; remove the block for the default "
                "chain",
            )
        if len(ways) > 1:
            # Name the first key (in file order) of the second way met.
            first_way = _WAY_OF[next(iter(entries))]
            clash = next(key for key in entries if _WAY_OF[key] != first_way)
            other = next(key for key in entries if _WAY_OF[key] == first_way)
            self.fail(
                f"{keypath}.{clash}",
                f"cannot be combined with {other}: give the credentials one way only",
            )
        way = ways[0]
        required, _optional = _WAYS[way]
        # The partner named in the message: a required key that is given, else an optional one.
        partner = next((key for key in entries if key in required), next(iter(entries)))
        for key in required:
            if key not in entries:
                self.fail(f"{keypath}.{key}", f"required with {partner}")

        def where(key: str) -> str:
            return f"{keypath}.{key}"

        if way == "metadata":
            if not self.boolean(entries["metadata"], where("metadata")):
                self.fail(
                    where("metadata"),
                    "false is not a way of giving credentials: set true to use the metadata "
                    "service, or remove the block for the default chain",
                )
            url = METADATA_URL
            if "metadata_url" in entries:
                url = self.url(entries["metadata_url"], where("metadata_url"))
            return CredentialSpec(kind="metadata", metadata_url=url, origin=origin)
        values: dict[str, str] = {}
        for key, value_node in entries.items():
            # Never echo these values: a secret may have been pasted in the wrong place.
            if not isinstance(value_node, yaml.ScalarNode) or value_node.tag not in _STRING_TAGS:
                self.fail(where(key), f"expected a string, got {self.kind(value_node)}")
            text = str(value_node.value)
            if not text.strip():
                self.fail(where(key), "must not be empty")
            if way == "env" and not _ENV_NAME.match(text):
                self.fail(
                    where(key),
                    "not an environment variable name (letters, digits and '_', not starting "
                    "with a digit); give the name of the variable, not its value",
                )
            if way == "file":
                text = self.file_path(value_node, where(key))
            values[key] = text
        if way == "env":
            return CredentialSpec(
                kind="env",
                access_key_env=values["access_key_env"],
                secret_key_env=values["secret_key_env"],
                security_token_env=values.get("security_token_env"),
                origin=origin,
            )
        if way == "file":
            return CredentialSpec(
                kind="file",
                access_key_file=values["access_key_file"],
                secret_key_file=values["secret_key_file"],
                security_token_file=values.get("security_token_file"),
                origin=origin,
            )
        return CredentialSpec(
            kind="inline",
            access_key=values["access_key"].strip(),
            secret_key=values["secret_key"].strip(),
            security_token=values["security_token"].strip() if "security_token" in values else None,
            origin=origin,
        )


def _owner_only(mode: int) -> bool:
    """Whether a file of this mode is accessible by its owner alone."""
    return os.name != "posix" or stat.S_IMODE(mode) & 0o077 == 0


def load_config_file(path: str) -> tuple[TargetConfig, ...]:
    """Read and strictly validate the config file at ``path``; raise ConfigError (one line).

    Logs one warning when the file holds inline credentials but group or others can access it.
    Credential sources are not read here: ``CredentialSpec.provider`` does that on first use.
    """
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(21, "Is a directory")
            data = handle.read()
    except OSError as exc:
        raise ConfigError(
            f"config file {path}: cannot read the file: {exc.strerror or type(exc).__name__}"
        ) from None
    parser = _Parser(path)
    targets = parser.targets(parser.compose(data))
    inline = [
        f"targets[{i}].credentials"
        for i, target in enumerate(targets)
        if target.credentials.kind == "inline"
    ]
    if inline and not _owner_only(mode):
        log.warning(
            "config file %s holds inline credentials (%s) but group or others can access it "
            "(mode %04o): make it readable by its owner only (chmod 600), or give the "
            "credentials by environment variable, file or metadata service",
            path,
            ", ".join(inline),
            stat.S_IMODE(mode),
        )
    return targets
