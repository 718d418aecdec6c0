"""The --config.file: strict loading with located one-line errors, credential specs, filters."""

from __future__ import annotations

import logging
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cph_exporter.credentials.chain import ChainCredentials
from cph_exporter.credentials.metadata import METADATA_URL, MetadataCredentials
from cph_exporter.credentials.providers import (
    CredentialError,
    EnvCredentials,
    FileCredentials,
    NamedEnvCredentials,
    StaticCredentials,
)
from cph_exporter.credentials.values import Credentials
from cph_exporter.settings.config import ConfigError
from cph_exporter.settings.config_file import load_config_file
from cph_exporter.settings.target_config import CredentialSpec, ServerFilters, TargetConfig
from tests.helpers.metadata import meta_secret, meta_token, metadata_service

SECRET = "Sk+SECRET/never-shown=="
TOKEN = "TOKEN-never-shown"
HEAD = "targets:\n  - name: t\n    region: cn-north-4\n"


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "cph.yml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return str(path)


def load_error(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert SECRET not in message and TOKEN not in message
    return message


def assert_located(message: str, path: str, keypath: str, *fragments: str) -> None:
    assert message.startswith(f"config file {path}: {keypath}: "), message
    for fragment in fragments:
        assert fragment in message, message


# --- errors: every one names the file and the key ---------------------------------------------

ERRORS: list[tuple[str, str, str, tuple[str, ...]]] = [
    # id, file text, key path, fragments of the message
    ("empty-file", "", "top level", ("empty",)),
    ("comments-only", "# nothing\n", "top level", ("empty",)),
    ("list-at-top", "- a\n- b\n", "top level", ("expected a mapping", "a list")),
    ("scalar-at-top", "hello\n", "top level", ("expected a mapping", "a string")),
    ("unknown-top-key", HEAD + "extra: 1\n", "extra", ("unknown key (allowed: targets)",)),
    ("unknown-top-key-only", "target: []\n", "target", ("unknown key", "did you mean targets")),
    ("no-targets", "{}\n", "targets", ("required",)),
    ("targets-null", "targets:\n", "targets", ("expected a list", "nothing")),
    ("targets-mapping", "targets: {a: 1}\n", "targets", ("expected a list", "a mapping")),
    ("targets-empty", "targets: []\n", "targets", ("empty list",)),
    ("target-scalar", "targets: [prod]\n", "targets[0]", ("expected a mapping",)),
    ("unknown-target-key", HEAD + "    regoin: x\n", "targets[0].regoin", ("did you mean region",)),
    ("name-missing", "targets:\n  - region: cn-north-4\n", "targets[0].name", ("required",)),
    ("name-bad", "targets:\n  - {name: 'a b', region: cn-north-4}\n", "targets[0].name", ()),
    (
        "name-long",
        f"targets:\n  - {{name: {'x' * 65}, region: cn-north-4}}\n",
        "targets[0].name",
        (),
    ),
    (
        "name-bool",
        "targets:\n  - {name: yes, region: cn-north-4}\n",
        "targets[0].name",
        ("true/false",),
    ),
    ("name-empty", "targets:\n  - {name: '', region: cn-north-4}\n", "targets[0].name", ("empty",)),
    ("region-missing", "targets:\n  - name: t\n", "targets[0].region", ("required",)),
    (
        "region-bad",
        "targets:\n  - {name: t, region: North}\n",
        "targets[0].region",
        ("not a region",),
    ),
    ("region-list", "targets:\n  - {name: t, region: [a]}\n", "targets[0].region", ("a list",)),
    (
        "project-bad",
        HEAD + "    project_id: 'a/b'\n",
        "targets[0].project_id",
        ("not a project ID",),
    ),
    ("project-null", HEAD + "    project_id:\n", "targets[0].project_id", ("nothing",)),
    ("endpoint-ftp", HEAD + "    endpoint: ftp://x\n", "targets[0].endpoint", ("http(s)",)),
    ("endpoint-nohost", HEAD + "    endpoint: 'https://'\n", "targets[0].endpoint", ("http(s)",)),
    (
        "endpoint-userinfo",
        HEAD + f"    endpoint: 'https://ak:{SECRET}@cph.example'\n",
        "targets[0].endpoint",
        ("credentials",),
    ),
    (
        "endpoint-user",
        HEAD + "    endpoint: 'https://user@cph.example'\n",
        "targets[0].endpoint",
        ("credentials",),
    ),
    ("endpoint-query", HEAD + "    endpoint: https://x/?a=1\n", "targets[0].endpoint", ("query",)),
    ("endpoint-port", HEAD + "    endpoint: https://x:99999\n", "targets[0].endpoint", ("URL",)),
    ("iam-endpoint-bad", HEAD + "    iam_endpoint: iam\n", "targets[0].iam_endpoint", ("http(s)",)),
    ("server-ids-scalar", HEAD + "    server_ids: abc\n", "targets[0].server_ids", ("a list",)),
    ("server-ids-empty", HEAD + "    server_ids: []\n", "targets[0].server_ids", ("empty",)),
    ("server-id-bad", HEAD + "    server_ids: [ok, 'no/pe']\n", "targets[0].server_ids[1]", ()),
    ("server-id-dup", HEAD + "    server_ids: [a, b, a]\n", "targets[0].server_ids[2]", ("dup",)),
    ("server-id-map", HEAD + "    server_ids: [{a: 1}]\n", "targets[0].server_ids[0]", ()),
    (
        "filters-unknown",
        HEAD + "    filters: {state: [1]}\n",
        "targets[0].filters.state",
        ("did you mean status",),
    ),
    ("filters-empty", HEAD + "    filters: {}\n", "targets[0].filters", ("no filter",)),
    ("filters-list", HEAD + "    filters: [v2]\n", "targets[0].filters", ("a list",)),
    (
        "filters-network",
        HEAD + "    filters: {network_version: v3}\n",
        "targets[0].filters.network_version",
        ("v1, v2",),
    ),
    (
        "filters-regex",
        HEAD + "    filters: {name_pattern: 'game-(['}\n",
        "targets[0].filters.name_pattern",
        ("regular expression",),
    ),
    (
        "filters-status-str",
        HEAD + "    filters: {status: ['5']}\n",
        "targets[0].filters.status[0]",
        ("integer", "a string"),
    ),
    (
        "filters-status-bool",
        HEAD + "    filters: {status: [5, true]}\n",
        "targets[0].filters.status[1]",
        ("integer", "true/false"),
    ),
    (
        "filters-status-float",
        HEAD + "    filters: {status: [5.0]}\n",
        "targets[0].filters.status[0]",
        ("integer",),
    ),
    (
        "filters-status-negative",
        HEAD + "    filters: {status: [-1]}\n",
        "targets[0].filters.status[0]",
        ("status code",),
    ),
    (
        "filters-status-scalar",
        HEAD + "    filters: {status: 5}\n",
        "targets[0].filters.status",
        ("a list",),
    ),
    (
        "filters-with-ids",
        HEAD + "    server_ids: [a]\n    filters: {network_version: v2}\n",
        "targets[0].filters",
        ("server_ids",),
    ),
    (
        "duplicate-target-key",
        HEAD + "    region: cn-south-1\n",
        "targets[0].region",
        ("duplicate key", "line 4"),
    ),
    ("duplicate-top-key", "targets: []\ntargets: []\n", "targets", ("duplicate key",)),
    (
        "merge-key",
        "base: &b {region: cn-north-4}\ntargets:\n  - <<: *b\n    name: t\n",
        "base",
        ("unknown key",),
    ),
    ("merge-key-in-target", "targets:\n  - <<: {region: cn-north-4}\n", "targets[0]", ("merge",)),
    (
        "credentials-sk-missing",
        HEAD + "    credentials:\n      access_key_env: PROD_AK\n",
        "targets[0].credentials.secret_key_env",
        ("required with access_key_env",),
    ),
    (
        "credentials-ak-missing",
        HEAD + "    credentials:\n      security_token_env: T\n      secret_key_env: S\n",
        "targets[0].credentials.access_key_env",
        ("required with secret_key_env",),
    ),
    (
        "credentials-token-alone",
        HEAD + "    credentials:\n      security_token_file: /t\n",
        "targets[0].credentials.access_key_file",
        ("required with security_token_file",),
    ),
    (
        "credentials-inline-sk-missing",
        HEAD + "    credentials:\n      access_key: AK\n",
        "targets[0].credentials.secret_key",
        ("required with access_key",),
    ),
    (
        "credentials-inline-and-env",
        HEAD
        + "    credentials:\n      access_key_env: A\n      secret_key_env: B\n"
        + f"      secret_key: '{SECRET}'\n",
        "targets[0].credentials.secret_key",
        ("cannot be combined with access_key_env",),
    ),
    (
        "credentials-env-and-file",
        HEAD + "    credentials:\n      access_key_env: A\n      secret_key_file: /s\n",
        "targets[0].credentials.secret_key_file",
        ("one way only",),
    ),
    (
        "credentials-env-and-metadata",
        HEAD + "    credentials: {metadata: true, access_key_env: A, secret_key_env: B}\n",
        "targets[0].credentials.access_key_env",
        ("cannot be combined with metadata",),
    ),
    (
        "credentials-empty",
        HEAD + "    credentials: {}\n",
        "targets[0].credentials",
        ("none of the ways",),
    ),
    (
        "credentials-null",
        HEAD + "    credentials:\n",
        "targets[0].credentials",
        ("none of the ways",),
    ),
    (
        "credentials-list",
        HEAD + "    credentials: [a]\n",
        "targets[0].credentials",
        ("expected a mapping",),
    ),
    (
        "credentials-unknown",
        HEAD + f"    credentials:\n      sk: '{SECRET}'\n",
        "targets[0].credentials.sk",
        ("unknown key",),
    ),
    (
        "credentials-env-value-not-name",
        HEAD + f"    credentials:\n      access_key_env: AK\n      secret_key_env: '{SECRET}'\n",
        "targets[0].credentials.secret_key_env",
        ("not an environment variable name",),
    ),
    (
        "credentials-inline-wrong-type",
        HEAD + f"    credentials:\n      access_key: AK\n      secret_key: ['{SECRET}']\n",
        "targets[0].credentials.secret_key",
        ("expected a string", "a list"),
    ),
    (
        "credentials-inline-empty",
        HEAD + "    credentials:\n      access_key: AK\n      secret_key: ' '\n",
        "targets[0].credentials.secret_key",
        ("empty",),
    ),
    (
        "credentials-token-wrong-type",
        HEAD + "    credentials: {access_key: AK, secret_key: SK, security_token: true}\n",
        "targets[0].credentials.security_token",
        ("true/false",),
    ),
    (
        "credentials-file-empty",
        HEAD + "    credentials: {access_key_file: /a, secret_key_file: ''}\n",
        "targets[0].credentials.secret_key_file",
        ("empty",),
    ),
    (
        "credentials-metadata-false",
        HEAD + "    credentials: {metadata: false}\n",
        "targets[0].credentials.metadata",
        ("set true",),
    ),
    (
        "credentials-metadata-string",
        HEAD + "    credentials: {metadata: 'on'}\n",
        "targets[0].credentials.metadata",
        ("true or false", "a string"),
    ),
    (
        "credentials-metadata-url-alone",
        HEAD + "    credentials: {metadata_url: 'http://127.0.0.1:1'}\n",
        "targets[0].credentials.metadata",
        ("required with metadata_url",),
    ),
    (
        "credentials-metadata-url-bad",
        HEAD + "    credentials: {metadata: true, metadata_url: '169.254.169.254'}\n",
        "targets[0].credentials.metadata_url",
        ("http(s)",),
    ),
    (
        "credentials-duplicate-key",
        HEAD
        + "    credentials:\n      access_key: AK\n      secret_key: a\n"
        + f"      secret_key: '{SECRET}'\n",
        "targets[0].credentials.secret_key",
        ("duplicate key",),
    ),
    (
        "second-target",
        HEAD + "  - name: u\n    region: cn-north-4\n    credentials: {access_key_env: A}\n",
        "targets[1].credentials.secret_key_env",
        ("required with access_key_env",),
    ),
    (
        "duplicate-names",
        HEAD + "  - name: u\n    region: cn-east-3\n  - name: t\n    region: cn-east-3\n",
        "targets[2].name",
        ("duplicate target name t", "targets[0]"),
    ),
]


@pytest.mark.parametrize(
    ("text", "keypath", "fragments"),
    [pytest.param(text, keypath, fragments, id=case) for case, text, keypath, fragments in ERRORS],
)
def test_validation_errors_name_the_file_and_key(
    tmp_path: Path, text: str, keypath: str, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, text)
    assert_located(load_error(path), path, keypath, *fragments)


def test_the_documented_example_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        targets:
          - name: a
            region: cn-north-4
          - name: b
            region: cn-north-4
            credentials:
              access_key_env: PROD_AK
        """,
    )
    assert load_error(path) == (
        f"config file {path}: targets[1].credentials.secret_key_env: required with access_key_env"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yml")
    message = load_error(path)
    assert message.startswith(f"config file {path}: cannot read the file: ")
    assert "No such file" in message


def test_directory(tmp_path: Path) -> None:
    message = load_error(str(tmp_path))
    assert message.startswith(f"config file {tmp_path}: cannot read the file: ")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD, mode=0o000)
    message = load_error(path)
    assert message == f"config file {path}: cannot read the file: Permission denied"


@pytest.mark.parametrize(
    "text",
    [
        "targets: [\n",
        "targets:\n  - name: t\n   region: x\n",
        f"targets:\n  - name: t\n    secret: '{SECRET}\n",
        "a: 1\n---\nb: 2\n",
        "targets: !!python/object:os.system {}\n",
    ],
    ids=["unclosed", "bad-indent", "unclosed-quote-with-secret", "two-documents", "python-tag"],
)
def test_not_yaml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    if "python" in text:
        # Composed fine, refused as a value: no tag is ever constructed.
        assert_located(message, path, "targets", "expected a list")
    else:
        assert re.match(rf"config file {re.escape(path)}: not valid YAML at line \d+", message)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cph.yml"
    path.write_bytes(b"targets:\n  - name: \xff\xfe\xff\n")
    message = load_error(str(path))
    assert message.startswith(f"config file {path}: not valid YAML")


# --- valid files --------------------------------------------------------------------------------


def test_every_credential_kind_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        targets:
          - name: prod-north
            region: cn-north-4
            project_id: 00000000000000000000000000000123
            endpoint: https://cph.example.com:8443/
            iam_endpoint: https://iam.example.com
            credentials:
              access_key_env: PROD_AK
              secret_key_env: PROD_SK
              security_token_env: PROD_TOKEN
            server_ids: [12345, abc-def]
          - name: files.1
            region: cn-east-3
            credentials:
              access_key_file: secrets/ak
              secret_key_file: /run/secrets/sk
            filters:
              network_version: v2
              name_pattern: "^game-"
              status: [2, 5, 0x8]
          - name: agency
            region: ap-southeast-1
            credentials: {{metadata: true}}
          - name: agency_custom
            region: ap-southeast-1
            credentials: {{metadata: yes, metadata_url: "http://127.0.0.1:8775/"}}
          - name: inline
            region: cn-south-1
            credentials:
              access_key: AKINLINE
              secret_key: "{SECRET}"
              security_token: {TOKEN}
          - name: chain
            region: cn-south-1
        """,
    )
    targets = load_config_file(path)
    assert [t.name for t in targets] == [
        "prod-north",
        "files.1",
        "agency",
        "agency_custom",
        "inline",
        "chain",
    ]
    prod, files, agency, custom, inline, chain = targets
    origin = f"config file {path}, targets[0]"
    assert prod == TargetConfig(
        name="prod-north",
        region="cn-north-4",
        project_id="00000000000000000000000000000123",  # as written, not the number 123
        endpoint="https://cph.example.com:8443",
        iam_endpoint="https://iam.example.com",
        credentials=CredentialSpec(
            kind="env",
            access_key_env="PROD_AK",
            secret_key_env="PROD_SK",
            security_token_env="PROD_TOKEN",
            origin=origin,
        ),
        server_ids=("12345", "abc-def"),
        filters=ServerFilters(),
    )
    assert files.endpoint == "https://cph.cn-east-3.myhuaweicloud.com"
    assert files.project_id == "" and files.iam_endpoint == "" and files.server_ids == ()
    assert files.credentials.kind == "file"
    # Relative paths are relative to the config file's folder.
    assert files.credentials.access_key_file == str(tmp_path / "secrets" / "ak")
    assert files.credentials.secret_key_file == "/run/secrets/sk"
    assert files.credentials.security_token_file is None
    assert files.filters.network_version == "v2"
    assert files.filters.name_pattern is not None
    assert files.filters.name_pattern.pattern == "^game-"
    assert files.filters.statuses == frozenset({2, 5, 8})
    assert agency.credentials.kind == "metadata"
    assert agency.credentials.metadata_url == METADATA_URL
    assert custom.credentials.metadata_url == "http://127.0.0.1:8775"
    assert inline.credentials.kind == "inline"
    assert inline.credentials.access_key == "AKINLINE"
    assert inline.credentials.secret_key == SECRET
    assert inline.credentials.security_token == TOKEN
    assert chain.credentials.kind == "default"
    assert not chain.filters
    assert files.filters
    for target in targets:
        assert SECRET not in repr(target) and TOKEN not in repr(target)
        assert SECRET not in str(target.credentials)


def test_a_minimal_target(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD)
    (target,) = load_config_file(path)
    assert target.name == "t"
    assert target.region == "cn-north-4"
    assert target.endpoint == "https://cph.cn-north-4.myhuaweicloud.com"
    assert target.credentials.kind == "default"
    assert target.credentials.access_key_env is None


def test_fields_of_other_ways_are_none(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "    credentials: {access_key_env: A, secret_key_env: B}\n")
    spec = load_config_file(path)[0].credentials
    assert spec.kind == "env"
    assert spec.security_token_env is None
    assert spec.access_key_file is None and spec.metadata_url is None
    assert spec.access_key is None and spec.secret_key is None


# --- providers built from specs -----------------------------------------------------------------


def test_env_names_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "    credentials: {access_key_env: P_AK, secret_key_env: P_SK}\n",
    )
    spec = load_config_file(path)[0].credentials
    environ = {"P_AK": "AK1", "P_SK": SECRET, "HUAWEICLOUD_SDK_AK": "other"}
    provider = spec.provider(environ)
    assert isinstance(provider, NamedEnvCredentials)
    assert provider.get() == Credentials("AK1", SECRET)
    assert provider.describe() == "environment variables P_AK, P_SK"
    # Rotation: read again after invalidate().
    environ["P_SK"] = "rotated"
    assert provider.get().secret_key == SECRET
    provider.invalidate()
    assert provider.get() == Credentials("AK1", "rotated")


def test_env_names_provider_with_token_and_missing_variables() -> None:
    spec = CredentialSpec(
        kind="env", access_key_env="A", secret_key_env="S", security_token_env="T"
    )
    assert spec.provider({"A": "ak", "S": SECRET, "T": TOKEN}).get() == Credentials(
        "ak", SECRET, TOKEN
    )
    with pytest.raises(CredentialError) as info:
        spec.provider({"A": "ak", "S": SECRET, "T": ""}).get()
    assert str(info.value) == "environment variables A, S, T: T not set or empty"
    with pytest.raises(CredentialError, match=r": A, S not set"):
        spec.provider({"T": TOKEN}).get()


def test_file_provider(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "ak").write_text("AKFILE\n")
    (tmp_path / "creds" / "sk").write_text(f"  {SECRET}\n")
    (tmp_path / "creds" / "token").write_text(TOKEN)
    path = write(
        tmp_path,
        HEAD
        + "    credentials:\n      access_key_file: creds/ak\n"
        + f"      secret_key_file: {tmp_path}/creds/sk\n"
        + "      security_token_file: ./creds/token\n",
    )
    provider = load_config_file(path)[0].credentials.provider({})
    assert isinstance(provider, FileCredentials)
    assert provider.get() == Credentials("AKFILE", SECRET, TOKEN)
    (tmp_path / "creds" / "sk").write_text("rotated")
    provider.invalidate()
    assert provider.get().secret_key == "rotated"
    (tmp_path / "creds" / "ak").unlink()
    provider.invalidate()
    with pytest.raises(CredentialError) as info:
        provider.get()
    assert f"cannot read {tmp_path}/creds/ak" in str(info.value)
    (tmp_path / "creds" / "ak").write_text("\n")
    with pytest.raises(CredentialError, match="is empty"):
        provider.get()


def test_inline_provider(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + f"    credentials: {{access_key: AKI, secret_key: '{SECRET}'}}\n")
    provider = load_config_file(path)[0].credentials.provider({})
    assert isinstance(provider, StaticCredentials)
    assert provider.get() == Credentials("AKI", SECRET, None)
    assert provider.describe() == f"inline credentials in config file {path}, targets[0]"


def test_default_chain_provider(tmp_path: Path) -> None:
    spec = load_config_file(write(tmp_path, HEAD))[0].credentials
    provider = spec.provider(
        {"HUAWEICLOUD_SDK_AK": "AKENV", "HUAWEICLOUD_SDK_SK": SECRET, "HOME": str(tmp_path)}
    )
    assert isinstance(provider, ChainCredentials)
    assert isinstance(provider.providers[0], EnvCredentials)
    # Never the metadata service unless asked for.
    assert not any(isinstance(p, MetadataCredentials) for p in provider.providers)
    assert provider.get() == Credentials("AKENV", SECRET)


@pytest.fixture
def metadata_url() -> Iterator[str]:
    for stand_in in metadata_service():
        yield stand_in.url


def test_metadata_provider_uses_the_configured_url(tmp_path: Path, metadata_url: str) -> None:
    path = write(
        tmp_path, HEAD + f"    credentials: {{metadata: true, metadata_url: '{metadata_url}/'}}\n"
    )
    provider = load_config_file(path)[0].credentials.provider({})
    assert isinstance(provider, MetadataCredentials)
    assert provider.get() == Credentials("TMPAK1", meta_secret(1), meta_token(1))


def test_metadata_provider_default_url_is_not_contacted(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "    credentials: {metadata: true}\n")
    spec = load_config_file(path)[0].credentials
    assert spec.metadata_url == METADATA_URL
    assert isinstance(spec.provider({}), MetadataCredentials)  # built, never asked here


# --- the permission warning for inline secrets ------------------------------------------------

INLINE = HEAD + f"    credentials: {{access_key: AKI, secret_key: '{SECRET}'}}\n"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "cph_exporter.settings.config_file" and r.levelno >= logging.WARNING
    ]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_inline_secrets_in_an_open_file_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.DEBUG)
    text = INLINE + "  - name: u\n    region: cn-north-4\n    credentials:\n"
    text += f"      access_key: AK2\n      secret_key: '{SECRET}'\n"
    path = write(tmp_path, text, mode=mode)
    targets = load_config_file(path)
    assert targets[0].credentials.secret_key == SECRET  # loaded all the same
    (record,) = _warnings(caplog)  # once per file, however many targets
    message = record.getMessage()
    assert path in message
    assert f"{mode:04o}" in message
    assert "targets[0].credentials, targets[1].credentials" in message
    assert SECRET not in caplog.text and "AKI" not in caplog.text


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_inline_secrets_in_an_owner_only_file_are_fine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.DEBUG)
    load_config_file(write(tmp_path, INLINE, mode=mode))
    assert _warnings(caplog) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_references_in_an_open_file_are_fine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = HEAD + "    credentials: {access_key_env: A, secret_key_env: B}\n"
    load_config_file(write(tmp_path, text, mode=0o644))
    assert _warnings(caplog) == []


# --- filters ------------------------------------------------------------------------------------


def test_no_filters_match_everything() -> None:
    assert ServerFilters().matches("anything", "v1", None)
    assert ServerFilters().matches("", "v2", 5)


@pytest.mark.parametrize(
    ("name", "version", "status", "expected"),
    [
        ("game-01", "v2", 5, True),
        ("game-01", "v1", 5, False),  # network version differs
        ("test-game-01", "v2", 5, False),  # the pattern is anchored with ^
        ("game-01", "v2", 10, False),  # status not listed
        ("game-01", "v2", None, False),  # an unknown status matches no listed code
        ("game-02", "v2", 2, True),
    ],
)
def test_all_given_filters_must_hold(
    name: str, version: str, status: int | None, expected: bool
) -> None:
    filters = ServerFilters("v2", re.compile("^game-"), frozenset({2, 5, 8}))
    assert filters.matches(name, version, status) is expected


def test_name_pattern_is_searched_anywhere(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "    filters: {name_pattern: 'prod'}\n")
    filters = load_config_file(path)[0].filters
    assert filters.matches("eu-prod-7", "v1", None)
    assert not filters.matches("eu-test-7", "v1", None)
    assert filters.network_version is None and filters.statuses is None


def test_single_filters() -> None:
    assert ServerFilters(network_version="v1").matches("x", "v1", None)
    assert not ServerFilters(network_version="v1").matches("x", "v2", 5)
    assert ServerFilters(statuses=frozenset({10})).matches("x", "v2", 10)
    assert not ServerFilters(statuses=frozenset({10})).matches("x", "v2", 11)
