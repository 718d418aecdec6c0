"""Credential sources and project ID lookup, against real local stand-in HTTP servers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cph_exporter.cph.iam import (
    ProjectIdResolver,
    ProjectLookupError,
    iam_endpoint_from,
    lookup_project_id,
)
from cph_exporter.cph.signing import SignatureError, verify_request
from cph_exporter.credentials.chain import ChainCredentials, default_chain
from cph_exporter.credentials.metadata import (
    MAX_ANSWER_BYTES,
    MetadataCredentials,
    parse_expires_at,
)
from cph_exporter.credentials.providers import (
    CredentialError,
    CredentialsNotFound,
    EnvCredentials,
    ProfileCredentials,
    StaticCredentials,
    default_profile_path,
)
from cph_exporter.credentials.values import Credentials
from tests.helpers.metadata import (
    StandIn,
    meta_secret,
    meta_token,
    metadata_service,
)
from tests.helpers.net import serve

# Every secret value any test hands out; none may appear in an error message or a log line.
ENV_SK = "envsk-SECRET-0001"
ENV_SK2 = "envsk-SECRET-0002"
ENV_TOKEN = "envtoken-SECRET-0003"
FILE_SK = "filesk-SECRET-0004"
PROFILE_SK = "profilesk-SECRET-0005"
EXPLICIT_SK = "explicitsk-SECRET-0006"
SECRETS = (ENV_SK, ENV_SK2, ENV_TOKEN, FILE_SK, PROFILE_SK, EXPLICIT_SK)
SECRET_MARK = "SECRET"  # every secret above (and every metadata one) contains it

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert SECRET_MARK not in text, text


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert_clean(caplog.text)


def raises_clean(kind: type[Exception], call: Callable[[], object], *fragments: str) -> Exception:
    """Run `call`, expect `kind`, check the message names `fragments` and holds no secret."""
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert_clean(message)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


# ---------------------------------------------------------------------------------------------
# Environment and *_FILE variants


def test_env_direct_variables() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "ENVAK",
        "HUAWEICLOUD_SDK_SK": ENV_SK,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": ENV_TOKEN,
    }
    creds = EnvCredentials(env).get()
    assert creds == Credentials("ENVAK", ENV_SK, ENV_TOKEN)
    assert EnvCredentials(env).describe() == "environment"


def test_env_file_variants_are_read_and_stripped(tmp_path: Path) -> None:
    ak_file, sk_file, token_file = tmp_path / "ak", tmp_path / "sk", tmp_path / "token"
    ak_file.write_text("FILEAK\n")
    sk_file.write_text(f"  {FILE_SK}\r\n")
    token_file.write_text(ENV_TOKEN)
    env = {
        "HUAWEICLOUD_SDK_AK_FILE": str(ak_file),
        "HUAWEICLOUD_SDK_SK_FILE": str(sk_file),
        "HUAWEICLOUD_SDK_SECURITY_TOKEN_FILE": str(token_file),
    }
    assert EnvCredentials(env).get() == Credentials("FILEAK", FILE_SK, ENV_TOKEN)


def test_env_mixing_direct_and_file_variants(tmp_path: Path) -> None:
    sk_file = tmp_path / "sk"
    sk_file.write_text(FILE_SK)
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK_FILE": str(sk_file)}
    assert EnvCredentials(env).get() == Credentials("ENVAK", FILE_SK, None)


def test_env_direct_and_file_both_set_is_an_error(tmp_path: Path) -> None:
    sk_file = tmp_path / "sk"
    sk_file.write_text(FILE_SK)
    env = {
        "HUAWEICLOUD_SDK_AK": "ENVAK",
        "HUAWEICLOUD_SDK_SK": ENV_SK,
        "HUAWEICLOUD_SDK_SK_FILE": str(sk_file),
    }
    err = raises_clean(
        CredentialError,
        EnvCredentials(env).get,
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SK_FILE",
        "environment",
    )
    # Broken, not absent: a chain must not fall through to another identity.
    assert not isinstance(err, CredentialsNotFound)


def test_env_missing_file_names_the_variable_not_the_secret(tmp_path: Path) -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "ENVAK",
        "HUAWEICLOUD_SDK_SK_FILE": str(tmp_path / "not-mounted"),
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": ENV_TOKEN,
    }
    err = raises_clean(CredentialError, EnvCredentials(env).get, "HUAWEICLOUD_SDK_SK_FILE")
    assert not isinstance(err, CredentialsNotFound)


def test_env_empty_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "sk"
    empty.write_text("\n")
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK_FILE": str(empty)}
    raises_clean(CredentialError, EnvCredentials(env).get, "HUAWEICLOUD_SDK_SK_FILE", "empty")


def test_env_half_configured_is_an_error_not_absent() -> None:
    err = raises_clean(
        CredentialError,
        EnvCredentials({"HUAWEICLOUD_SDK_SK": ENV_SK}).get,
        "HUAWEICLOUD_SDK_AK",
    )
    assert not isinstance(err, CredentialsNotFound)
    err = raises_clean(
        CredentialError,
        EnvCredentials({"HUAWEICLOUD_SDK_SECURITY_TOKEN": ENV_TOKEN}).get,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    )
    assert not isinstance(err, CredentialsNotFound)


def test_env_unset_or_empty_is_absent() -> None:
    raises_clean(CredentialsNotFound, EnvCredentials({}).get, "HUAWEICLOUD_SDK_AK")
    empty = {"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "HUAWEICLOUD_SDK_SK_FILE": ""}
    raises_clean(CredentialsNotFound, EnvCredentials(empty).get)


def test_env_is_cached_until_invalidated(tmp_path: Path) -> None:
    sk_file = tmp_path / "sk"
    sk_file.write_text(ENV_SK)
    env = {"HUAWEICLOUD_SDK_AK": "AK1", "HUAWEICLOUD_SDK_SK_FILE": str(sk_file)}
    provider = EnvCredentials(env)
    assert provider.get() == Credentials("AK1", ENV_SK)
    # Rotate both the variable and the secret file.
    env["HUAWEICLOUD_SDK_AK"] = "AK2"
    sk_file.write_text(ENV_SK2)
    assert provider.get() == Credentials("AK1", ENV_SK)
    provider.invalidate()
    assert provider.get() == Credentials("AK2", ENV_SK2)


# ---------------------------------------------------------------------------------------------
# Profile file (the SDK's format)

SDK_PROFILE = f"""\
[basic]
ak = PROFILEAK
sk = {PROFILE_SK}
project_id = 0123456789abcdef0123456789abcdef
security_token = {ENV_TOKEN}
iam_endpoint = https://iam.example.invalid

[global]
ak = GLOBALAK
sk = {ENV_SK2}
domain_id = fedcba9876543210
"""


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".huaweicloud" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_profile_reads_the_basic_section(tmp_path: Path) -> None:
    path = write_profile(tmp_path, SDK_PROFILE)
    provider = ProfileCredentials(str(path))
    assert provider.get() == Credentials("PROFILEAK", PROFILE_SK, ENV_TOKEN)
    assert provider.describe() == f"profile file {path}"


def test_profile_agrees_with_the_official_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk_provider = pytest.importorskip("huaweicloudsdkcore.auth.provider")
    path = write_profile(tmp_path, SDK_PROFILE)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(path))
    theirs = sdk_provider.ProfileCredentialProvider.get_basic().get_credentials()
    ours = ProfileCredentials(str(path)).get()
    assert (ours.access_key, ours.secret_key, ours.security_token) == (
        theirs.ak,
        theirs.sk,
        theirs.security_token,
    )


def test_profile_without_security_token(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f"[basic]\nak = A\nsk = {PROFILE_SK}\n")
    assert ProfileCredentials(str(path)).get() == Credentials("A", PROFILE_SK, None)


def test_profile_missing_default_file_is_absent(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    raises_clean(CredentialsNotFound, ProfileCredentials(missing).get, missing, "does not exist")


def test_profile_missing_named_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    err = raises_clean(CredentialError, ProfileCredentials(missing, required=True).get, missing)
    assert not isinstance(err, CredentialsNotFound)


def test_profile_without_basic_section_is_absent(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f"[global]\nak = G\nsk = {PROFILE_SK}\n")
    raises_clean(CredentialsNotFound, ProfileCredentials(str(path)).get, "[basic]")


@pytest.mark.parametrize(
    "body",
    [
        f"[basic]\nsk = {PROFILE_SK}\n",
        "[basic]\nak = A\n",
        f"[basic]\nak =\nsk = {PROFILE_SK}\n",
    ],
)
def test_profile_missing_keys_is_an_error(tmp_path: Path, body: str) -> None:
    path = write_profile(tmp_path, body)
    err = raises_clean(CredentialError, ProfileCredentials(str(path)).get, "ak and sk")
    assert not isinstance(err, CredentialsNotFound)


def test_profile_federated_entries_are_refused_clearly(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "[basic]\nidp_id = idp\nid_token_file = /tmp/t\n")
    raises_clean(CredentialError, ProfileCredentials(str(path)).get, "idp_id")


@pytest.mark.parametrize(
    "body",
    [
        # configparser itself would quote these lines, secrets and all.
        f"[basic]\nak = A\n{PROFILE_SK}\n",
        f"ak = A\nsk = {PROFILE_SK}\n",
        f"[basic]\nak = A\nsk = {PROFILE_SK}\nsk = {PROFILE_SK}\n",
    ],
)
def test_profile_syntax_errors_do_not_quote_the_file(tmp_path: Path, body: str) -> None:
    path = write_profile(tmp_path, body)
    raises_clean(CredentialError, ProfileCredentials(str(path)).get, "line")


def test_profile_bad_interpolation_does_not_quote_the_value(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f"[basic]\nak = A\nsk = x%{PROFILE_SK}\n")
    raises_clean(CredentialError, ProfileCredentials(str(path)).get, "interpolation")


def test_profile_is_reread_after_invalidate(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f"[basic]\nak = OLD\nsk = {PROFILE_SK}\n")
    provider = ProfileCredentials(str(path))
    assert provider.get().access_key == "OLD"
    write_profile(tmp_path, f"[basic]\nak = NEW\nsk = {ENV_SK2}\n")
    assert provider.get().access_key == "OLD"
    provider.invalidate()
    assert provider.get() == Credentials("NEW", ENV_SK2)


def test_default_profile_path() -> None:
    assert default_profile_path({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": "/run/c", "HOME": "/h"}) == (
        "/run/c",
        True,
    )
    assert default_profile_path({"HOME": "/home/x"}) == ("/home/x/.huaweicloud/credentials", False)
    assert default_profile_path({}) == (None, False)


@pytest.fixture
def metadata() -> Iterator[StandIn]:
    yield from metadata_service()


def test_metadata_token_dance(metadata: StandIn) -> None:
    provider = MetadataCredentials(metadata.url, clock=FakeClock())
    creds = provider.get()
    assert creds == Credentials("TMPAK1", meta_secret(1), meta_token(1))
    (put, get) = metadata.state.requests
    assert put[:2] == ("PUT", "/meta-data/latest/api/token")
    assert int(put[2]["X-Metadata-Token-Ttl-Seconds"]) > 0
    assert get[:2] == ("GET", "/openstack/latest/securitykey")
    assert get[2]["X-Metadata-Token"] == "mdtoken-1"
    assert provider.describe() == "ECS metadata service"
    assert provider.expires_at == datetime(2030, 1, 1, 13, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("status", ["404", "405"])
def test_metadata_without_token_support(metadata: StandIn, status: str) -> None:
    metadata.state.token_mode = status
    creds = MetadataCredentials(metadata.url, clock=FakeClock()).get()
    assert creds.access_key == "TMPAK1"
    assert creds.security_token == meta_token(1)
    (put, get) = metadata.state.requests
    assert put[0] == "PUT"
    assert "X-Metadata-Token" not in get[2]


def test_metadata_token_failure_other_than_404_is_an_error(metadata: StandIn) -> None:
    metadata.state.token_mode = "500"
    raises_clean(
        CredentialError, MetadataCredentials(metadata.url, clock=FakeClock()).get, "HTTP 500"
    )


def test_a_metadata_answer_over_its_size_limit_is_refused(metadata: StandIn) -> None:
    credential = {"access": "TMPAK1", "secret": meta_secret(1), "securitytoken": meta_token(1)}
    padding = "x" * MAX_ANSWER_BYTES
    metadata.state.key_body = json.dumps({"credential": credential, "pad": padding}).encode()
    provider = MetadataCredentials(metadata.url, clock=FakeClock())
    raises_clean(CredentialError, provider.get, f"more than {MAX_ANSWER_BYTES} bytes")
    metadata.state.key_body = None  # the limit is per answer: a normal one is read again
    assert provider.get().access_key == "TMPAK1"


def test_a_dripping_metadata_answer_is_cut_at_its_deadline(metadata: StandIn) -> None:
    metadata.state.drip = 0.05  # a ~150-byte answer would take over 7 s
    provider = MetadataCredentials(metadata.url, clock=FakeClock(), answer_timeout=0.3)
    raises_clean(CredentialError, provider.get, "took longer than 0.3 s")
    assert metadata.state.fetches == 1  # one exchange, abandoned, not retried into the drip


def test_metadata_is_cached_and_refreshed_before_expiry(metadata: StandIn) -> None:
    clock = FakeClock()  # keys live one hour, from T0 to T0 + 1 h
    provider = MetadataCredentials(metadata.url, clock=clock, refresh_margin=timedelta(minutes=5))
    first = provider.get()
    clock.advance(timedelta(minutes=54))
    assert provider.get() == first
    assert metadata.state.fetches == 1
    metadata.state.expires_at = "2030-01-01T14:00:00Z"  # the next keys, other format
    clock.advance(timedelta(minutes=2))  # 4 minutes before expiry: inside the margin
    second = provider.get()
    assert second == Credentials("TMPAK2", meta_secret(2), meta_token(2))
    assert metadata.state.fetches == 2
    assert provider.expires_at == datetime(2030, 1, 1, 14, 0, tzinfo=timezone.utc)
    # The metadata token lives for hours: one PUT served both fetches.
    assert len(metadata.state.keys("/meta-data/latest/api/token")) == 1


def test_metadata_margin_is_capped_for_short_lived_keys(metadata: StandIn) -> None:
    clock = FakeClock()
    metadata.state.expires_at = "2030-01-01T12:04:00Z"  # four minutes of life
    provider = MetadataCredentials(metadata.url, clock=clock, refresh_margin=timedelta(minutes=5))
    provider.get()
    clock.advance(timedelta(minutes=1))
    provider.get()  # a 5-minute margin would refetch on every call
    assert metadata.state.fetches == 1
    clock.advance(timedelta(minutes=1, seconds=30))
    provider.get()
    assert metadata.state.fetches == 2


def test_metadata_refresh_failure_keeps_valid_keys(
    metadata: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    provider = MetadataCredentials(metadata.url, clock=clock)
    first = provider.get()
    metadata.state.key_status = 500
    metadata.state.key_body = json.dumps({"leak": meta_secret(1)}).encode()
    clock.advance(timedelta(minutes=57))
    assert provider.get() == first  # still valid for three minutes
    assert "HTTP 500" in caplog.text
    clock.advance(timedelta(minutes=3))  # now expired
    raises_clean(CredentialError, provider.get, "HTTP 500")


def test_metadata_invalidate_fetches_again(metadata: StandIn) -> None:
    provider = MetadataCredentials(metadata.url, clock=FakeClock())
    provider.get()
    provider.invalidate()
    assert provider.get().access_key == "TMPAK2"


def test_metadata_renews_a_token_the_service_forgot(metadata: StandIn) -> None:
    clock = FakeClock()
    provider = MetadataCredentials(metadata.url, clock=clock)
    provider.get()
    metadata.state.tokens.clear()  # e.g. the service restarted
    clock.advance(timedelta(minutes=58))
    assert provider.get().access_key == "TMPAK2"
    assert len(metadata.state.keys("/meta-data/latest/api/token")) == 2


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        (500, b'{"secret": "metask-SECRET-x"}', "HTTP 500"),
        (401, b"Please configure Cloud Service Agency first", "no agency"),
        (200, b"<html>metask-SECRET-y", "not JSON"),
        (200, b'["metask-SECRET-z"]', "not an object"),
        (200, b'{"credential": "metask-SECRET-w"}', "'credential'"),
        (200, b'{"credential": {"access": "A", "secret": "metask-SECRET-v"}}', "securitytoken"),
        (
            200,
            b'{"credential": {"access": "A", "secret": "metask-SECRET-u",'
            b' "securitytoken": "metatoken-SECRET-u", "expires_at": "tomorrow"}}',
            "expires_at",
        ),
        (
            200,
            b'{"credential": {"access": "A", "secret": "metask-SECRET-t",'
            b' "securitytoken": "metatoken-SECRET-t", "expires_at": "2000-01-01T00:00:00Z"}}',
            "expired",
        ),
    ],
)
def test_metadata_errors_are_clean(
    metadata: StandIn, status: int, body: bytes, fragment: str
) -> None:
    metadata.state.key_status = status
    metadata.state.key_body = body
    err = raises_clean(
        CredentialError,
        MetadataCredentials(metadata.url, clock=FakeClock()).get,
        "ECS metadata service",
        fragment,
    )
    assert not isinstance(err, CredentialsNotFound)


def test_metadata_unreachable_is_absent() -> None:
    # A port that was just free: nothing listens there any more.
    for url in serve(BaseHTTPRequestHandler):
        closed = url
    provider = MetadataCredentials(closed, clock=FakeClock(), timeout=1.0)
    raises_clean(CredentialsNotFound, provider.get, "ECS metadata service")


def test_metadata_ignores_proxy_environment(
    metadata: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = requests.Session()  # trust_env left on, as a caller's session might be
    creds = MetadataCredentials(metadata.url, session=session, clock=FakeClock()).get()
    assert creds.access_key == "TMPAK1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T13:00:00.000000Z", datetime(2030, 1, 1, 13, tzinfo=timezone.utc)),
        ("2030-01-01T13:00:00.5Z", datetime(2030, 1, 1, 13, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2030-01-01T13:00:00Z", datetime(2030, 1, 1, 13, tzinfo=timezone.utc)),
        ("2030-01-01T21:00:00+08:00", datetime(2030, 1, 1, 13, tzinfo=timezone.utc)),
    ],
)
def test_parse_expires_at(text: str, expected: datetime) -> None:
    assert parse_expires_at(text) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "2030-01-01T13:00:00", "1893502800"])
def test_parse_expires_at_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_expires_at(text)


# ---------------------------------------------------------------------------------------------
# The chain


class Counting:
    """A provider that counts calls and answers what it is told."""

    def __init__(self, name: str, result: Credentials | CredentialError) -> None:
        self.name = name
        self.result = result
        self.gets = 0
        self.invalidations = 0

    def get(self) -> Credentials:
        self.gets += 1
        if isinstance(self.result, CredentialError):
            raise self.result
        return self.result

    def invalidate(self) -> None:
        self.invalidations += 1

    def describe(self) -> str:
        return self.name


def full_environment(tmp_path: Path) -> dict[str, str]:
    write_profile(tmp_path, f"[basic]\nak = PROFILEAK\nsk = {PROFILE_SK}\n")
    return {"HOME": str(tmp_path), "HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": ENV_SK}


def test_chain_order_explicit_first(tmp_path: Path, metadata: StandIn) -> None:
    env = full_environment(tmp_path)
    chain = default_chain(env, Credentials("FLAGAK", EXPLICIT_SK), metadata.url, True)
    assert chain.get().access_key == "FLAGAK"
    assert chain.describe() == "explicit configuration"
    assert [p.describe() for p in chain.providers] == [
        "explicit configuration",
        "environment",
        f"profile file {tmp_path}/.huaweicloud/credentials",
        "ECS metadata service",
    ]
    assert metadata.state.requests == []


def test_chain_order_environment_before_profile(tmp_path: Path, metadata: StandIn) -> None:
    chain = default_chain(full_environment(tmp_path), None, metadata.url, True)
    assert chain.get().access_key == "ENVAK"
    assert chain.describe() == "environment"


def test_chain_order_profile_before_metadata(tmp_path: Path, metadata: StandIn) -> None:
    env = full_environment(tmp_path)
    del env["HUAWEICLOUD_SDK_AK"], env["HUAWEICLOUD_SDK_SK"]
    chain = default_chain(env, None, metadata.url, True)
    assert chain.get().access_key == "PROFILEAK"
    assert chain.describe().startswith("profile file ")
    assert metadata.state.requests == []


def test_chain_falls_through_to_metadata(tmp_path: Path, metadata: StandIn) -> None:
    chain = default_chain({"HOME": str(tmp_path)}, None, metadata.url, True, clock=FakeClock())
    creds = chain.get()
    assert creds.security_token == meta_token(1)
    assert chain.describe() == "ECS metadata service"


def test_chain_without_any_source_says_what_it_tried(tmp_path: Path) -> None:
    chain = default_chain({"HOME": str(tmp_path)}, None, None, False)
    raises_clean(
        CredentialsNotFound, chain.get, "environment", "profile file", "HUAWEICLOUD_SDK_AK"
    )
    assert chain.active is None


def test_chain_stops_at_a_broken_source(tmp_path: Path) -> None:
    env = full_environment(tmp_path)
    env["HUAWEICLOUD_SDK_SK_FILE"] = str(tmp_path / "sk")  # both SK and SK_FILE
    chain = default_chain(env, None, None, False)
    err = raises_clean(CredentialError, chain.get, "HUAWEICLOUD_SDK_SK_FILE")
    assert not isinstance(err, CredentialsNotFound)  # the valid profile was not used


def test_chain_explicit_file_named_by_env_must_exist(tmp_path: Path) -> None:
    env = {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "missing")}
    chain = default_chain(env, None, None, False)
    err = raises_clean(CredentialError, chain.get, "missing")
    assert not isinstance(err, CredentialsNotFound)


def test_chain_remembers_the_source_that_worked() -> None:
    absent = Counting("a", CredentialsNotFound("a: nothing"))
    works = Counting("b", Credentials("B", ENV_SK))
    last = Counting("c", Credentials("C", ENV_SK2))
    chain = ChainCredentials([absent, works, last])
    for _ in range(3):
        assert chain.get().access_key == "B"
    assert (absent.gets, works.gets, last.gets) == (1, 3, 0)
    assert chain.active is works


def test_chain_invalidate_rereads_from_the_start(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "HUAWEICLOUD_SDK_AK": "AK1", "HUAWEICLOUD_SDK_SK": ENV_SK}
    chain = default_chain(env, None, None, False)
    assert chain.get() == Credentials("AK1", ENV_SK)
    env["HUAWEICLOUD_SDK_AK"], env["HUAWEICLOUD_SDK_SK"] = "AK2", ENV_SK2
    assert chain.get().access_key == "AK1"  # cached: nobody said the keys were rejected
    chain.invalidate()
    assert chain.get() == Credentials("AK2", ENV_SK2)
    # The keys move from the environment to the profile file.
    del env["HUAWEICLOUD_SDK_AK"], env["HUAWEICLOUD_SDK_SK"]
    write_profile(tmp_path, f"[basic]\nak = PROFILEAK\nsk = {PROFILE_SK}\n")
    assert chain.get().access_key == "AK2"
    chain.invalidate()
    assert chain.get() == Credentials("PROFILEAK", PROFILE_SK)
    assert chain.describe().startswith("profile file ")


def test_chain_invalidate_reaches_every_provider() -> None:
    providers = [Counting("a", CredentialsNotFound("a")), Counting("b", Credentials("B", ENV_SK))]
    chain = ChainCredentials(providers)
    chain.get()
    chain.invalidate()
    assert [p.invalidations for p in providers] == [1, 1]
    assert chain.active is None


def test_chain_walks_again_when_the_remembered_source_fails() -> None:
    first = Counting("first", CredentialsNotFound("first: nothing"))
    second = Counting("second", Credentials("B", ENV_SK))
    chain = ChainCredentials([first, second])
    chain.get()
    second.result = CredentialsNotFound("second: gone")
    first.result = Credentials("A", ENV_SK2)
    assert chain.get().access_key == "A"
    assert chain.active is first
    # The failed source was asked once, not once more during the walk.
    assert second.gets == 2


def test_static_credentials() -> None:
    provider = StaticCredentials(Credentials("FLAGAK", EXPLICIT_SK))
    assert provider.get() == Credentials("FLAGAK", EXPLICIT_SK)
    assert provider.describe() == "explicit configuration"
    raises_clean(CredentialError, StaticCredentials(Credentials("A", "")).get, "empty")


# ---------------------------------------------------------------------------------------------
# IAM project lookup, against a stand-in that checks signatures like the gateway


@dataclass
class IamState:
    keys: dict[str, str]
    projects: list[dict[str, str]]
    calls: int = 0
    rejected: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class IamHandler(BaseHTTPRequestHandler):
    state: IamState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        st = self.state
        with st.lock:
            st.calls += 1
            st.seen.append(dict(self.headers))
            try:
                verified = verify_request("GET", self.path, dict(self.headers), b"", st.keys.get)
            except SignatureError as exc:
                st.rejected += 1
                # A careless gateway echoing the token back: the client must scrub it.
                token = self.headers.get("X-Security-Token", "")
                self._send(
                    401,
                    {"error_code": "APIGW.0301", "error_msg": f"{exc} token={token}"},
                )
                return
            url = urlsplit(self.path)
            if url.path != "/v3/projects":
                self._send(404, {"error": {"code": 404, "message": "no such path"}})
                return
            name = parse_qs(url.query).get("name", [""])[0]
            # Answer everything, matching or not: the client must filter by exact name.
            projects = [p for p in st.projects if p["name"].startswith(name)]
            self._send(200, {"projects": projects, "verified_ak": verified.access_key})


@pytest.fixture
def iam() -> Iterator[StandIn]:
    state = IamState(keys={"ENVAK": ENV_SK}, projects=[])
    handler = type("Handler", (IamHandler,), {"state": state})
    for url in serve(handler):
        yield StandIn(url, state)


def env_provider(ak: str = "ENVAK", sk: str = ENV_SK) -> EnvCredentials:
    return EnvCredentials({"HUAWEICLOUD_SDK_AK": ak, "HUAWEICLOUD_SDK_SK": sk})


def test_project_lookup_one_match(iam: StandIn) -> None:
    iam.state.projects = [
        {"id": "p-cn-north-4", "name": "cn-north-4"},
        {"id": "p-sub", "name": "cn-north-4_sub"},
    ]
    with requests.Session() as session:
        found = lookup_project_id(session, iam.url, "cn-north-4", env_provider())
    assert found == "p-cn-north-4"
    assert iam.state.rejected == 0
    assert "X-Project-Id" not in iam.state.seen[0]


def test_project_lookup_none(iam: StandIn) -> None:
    iam.state.projects = [{"id": "p1", "name": "cn-east-3"}]
    with requests.Session() as session:
        raises_clean(
            ProjectLookupError,
            lambda: lookup_project_id(session, iam.url, "cn-north-4", env_provider()),
            "no project named 'cn-north-4'",
        )


def test_project_lookup_two(iam: StandIn) -> None:
    iam.state.projects = [{"id": "p1", "name": "cn-north-4"}, {"id": "p2", "name": "cn-north-4"}]
    with requests.Session() as session:
        raises_clean(
            ProjectLookupError,
            lambda: lookup_project_id(session, iam.url, "cn-north-4", env_provider()),
            "2 projects",
            "p1",
            "p2",
        )


def test_project_lookup_rejected_keys_are_reread_once(iam: StandIn) -> None:
    iam.state.projects = [{"id": "p1", "name": "ap-southeast-1"}]
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": ENV_SK2}  # wrong SK
    chain = default_chain(env, None, None, False)
    chain.get()
    env["HUAWEICLOUD_SDK_SK"] = ENV_SK  # rotated to the right one after the first read
    with requests.Session() as session:
        assert lookup_project_id(session, iam.url, "ap-southeast-1", chain) == "p1"
    assert (iam.state.calls, iam.state.rejected) == (2, 1)


def test_project_lookup_with_bad_keys_fails_cleanly(iam: StandIn) -> None:
    provider = EnvCredentials(
        {
            "HUAWEICLOUD_SDK_AK": "ENVAK",
            "HUAWEICLOUD_SDK_SK": ENV_SK2,
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": ENV_TOKEN,
        }
    )
    with requests.Session() as session:
        raises_clean(
            ProjectLookupError,
            lambda: lookup_project_id(session, iam.url, "cn-north-4", provider),
            "HTTP 401",
            "APIGW.0301",
            "[REDACTED]",
        )
    assert iam.state.calls == 2  # tried again once after re-reading the sources


def test_project_lookup_with_temporary_metadata_keys(iam: StandIn, metadata: StandIn) -> None:
    """Temporary keys from the metadata stand-in, signed together with their security token."""
    iam.state.keys = {"TMPAK1": meta_secret(1)}
    iam.state.projects = [{"id": "p-meta", "name": "cn-south-1"}]
    chain = default_chain({}, None, metadata.url, True)
    with requests.Session() as session:
        assert lookup_project_id(session, iam.url, "cn-south-1", chain) == "p-meta"
    assert iam.state.rejected == 0
    assert iam.state.seen[0]["X-Security-Token"] == meta_token(1)
    assert "x-security-token" in iam.state.seen[0]["Authorization"]


def test_project_id_resolver_looks_up_once(iam: StandIn) -> None:
    iam.state.projects = [{"id": "p1", "name": "cn-north-4"}, {"id": "p2", "name": "cn-east-3"}]
    with requests.Session() as session:
        resolver = ProjectIdResolver(
            session, env_provider(), environ={"HUAWEICLOUD_SDK_IAM_ENDPOINT": iam.url + "/"}
        )
        assert resolver.iam_endpoint == iam.url
        assert resolver.resolve("cn-north-4") == "p1"
        assert resolver.resolve("cn-north-4") == "p1"
        assert iam.state.calls == 1
        assert resolver.resolve("cn-east-3") == "p2"
        assert iam.state.calls == 2


def test_project_id_resolver_does_not_remember_failures(iam: StandIn) -> None:
    with requests.Session() as session:
        resolver = ProjectIdResolver(session, env_provider(), iam_endpoint=iam.url)
        with pytest.raises(ProjectLookupError):
            resolver.resolve("cn-north-4")
        iam.state.projects = [{"id": "p1", "name": "cn-north-4"}]
        assert resolver.resolve("cn-north-4") == "p1"


def test_project_lookup_unreachable_iam() -> None:
    for url in serve(BaseHTTPRequestHandler):
        closed = url
    with requests.Session() as session:
        raises_clean(
            ProjectLookupError,
            lambda: lookup_project_id(session, closed, "cn-north-4", env_provider(), timeout=1),
            "IAM",
        )


def test_iam_endpoint_default_and_override() -> None:
    assert iam_endpoint_from({}) == "https://iam.myhuaweicloud.com"
    assert iam_endpoint_from({"HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.x/"}) == "https://iam.x"
