"""The ``--config.file``: several CPH targets (regions, projects, credentials) in one YAML file.

Loading is strict, in the way of the web config file (both use :mod:`.yaml_nodes`): the
YAML is walked as nodes, so duplicate keys are seen and scalars are read as written (a
project ID like ``0123`` stays a string), and every problem
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
from urllib.parse import urlsplit

import yaml

from cph_exporter.credentials.metadata import METADATA_URL
from cph_exporter.settings.config import (
    ENDPOINT_TEMPLATE,
    IDENTIFIER,
    REGION,
    ConfigError,
    project_id_problem,
)
from cph_exporter.settings.target_config import (
    NETWORK_VERSIONS,
    TARGET_NAME,
    CredentialSpec,
    ServerFilters,
    TargetConfig,
)
from cph_exporter.settings.yaml_nodes import NodeParser, show

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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
        if not REGION.match(region):
            self.fail(where("region"), f"not a region name: {_show(region)} (like cn-north-4)")
        project_id = ""
        if "project_id" in entries:
            project_id = self.string(entries["project_id"], where("project_id"))
            if project_id_problem(project_id):
                self.fail(
                    where("project_id"),
                    f"not a project ID: {_show(project_id)} (expected 32 hex characters)",
                )
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
            if not IDENTIFIER.match(server_id):
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
    parser = _Parser(path)
    data, mode = parser.read()
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
