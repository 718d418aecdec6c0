"""cph_exporter.signing against the official SDK's Signer, used as the oracle.

AkSkAuth signs a fixed subset of headers while the SDK signs every header it is given, so
each oracle request carries exactly the headers AkSkAuth signs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import quote, urlencode, urlsplit

import pytest
import requests
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from cph_exporter.cph.signing import (
    AkSkAuth,
    SignatureError,
    VerifiedRequest,
    canonical_request,
    canonical_uri,
    signature,
    string_to_sign,
    verify_request,
)
from cph_exporter.credentials.values import Credentials

AK = "TESTACCESSKEY0000001"
SK = "test-secret-key-0123456789"
TOKEN = "temporary-security-token/with+odd=chars"
PROJECT = "0123456789abcdef0123456789abcdef"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
SDK_DATE = "20240506T070809Z"
BASE = "https://cph.cn-north-4.myhuaweicloud.com"
HOST = "cph.cn-north-4.myhuaweicloud.com"
SERVERS = f"/v1/{PROJECT}/cloud-phone/servers"

Pairs = Sequence[tuple[str, str]]

# (path as sent, i.e. already percent-encoded, query pairs before encoding)
CASES: list[tuple[str, list[tuple[str, str]]]] = [
    (SERVERS, [("offset", "0"), ("limit", "100")]),
    (SERVERS, []),
    (SERVERS + "/6edb89150bc742aa81fc8ac4ff047297", []),
    (SERVERS, [("server_name", "my server")]),
    (SERVERS, [("q", "a+b")]),
    (SERVERS, [("q", "a b+c")]),
    (SERVERS, [("next", "a/b/c")]),
    (SERVERS, [("name", "测试-ü-é")]),
    (SERVERS, [("k~*", "v~*"), ("tilde", "~"), ("star", "*")]),
    (SERVERS, [("empty", ""), ("a", "1")]),
    (SERVERS, [("status", "5"), ("status", "10"), ("status", "2")]),
    (SERVERS, [("b", "2"), ("a", "2"), ("a", "1")]),
    (SERVERS, [("reserved", "&=?#%;,:@!$'()")]),
    (SERVERS, [("", "no key")]),
    ("/v1/p/a%20b+c/%C3%BC", [("x", "y")]),
    ("/v1/p/with~tilde*star", []),
    ("/v1/p/trailing/", []),
    ("/", []),
]


def sdk_authorization(
    method: str,
    path: str,
    query: Pairs,
    headers: Mapping[str, str],
    body: bytes = b"",
    secret_key: str = SK,
) -> str:
    """The Authorization header the official SDK computes for the same request."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body or None,
    )
    Signer(SimpleNamespace(ak=AK, sk=secret_key)).sign(request)
    return str(request.header_params["Authorization"])


def oracle_headers(token: str | None = None, project: str | None = PROJECT) -> dict[str, str]:
    headers = {"Host": HOST, "X-Sdk-Date": SDK_DATE}
    if project:
        headers["X-Project-Id"] = project
    if token:
        headers["X-Security-Token"] = token
    return headers


def prepared(
    path: str,
    query: Pairs = (),
    token: str | None = None,
    project: str | None = PROJECT,
    method: str = "GET",
    secret_key: str = SK,
    **kwargs: object,
) -> requests.PreparedRequest:
    creds = Credentials(AK, secret_key, token)
    auth = AkSkAuth(lambda: creds, project_id=project, clock=lambda: NOW)
    request = requests.Request(method, BASE + path, params=list(query), auth=auth, **kwargs)
    return request.prepare()


def auth_fields(authorization: str) -> dict[str, str]:
    algorithm, _, rest = authorization.partition(" ")
    assert algorithm == "SDK-HMAC-SHA256"
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def verify(
    req: requests.PreparedRequest,
    now: datetime = NOW,
    keys: Mapping[str, str] | None = None,
) -> VerifiedRequest:
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    keys = {AK: SK} if keys is None else keys
    return verify_request(req.method or "", req.path_url, req.headers, body, keys.get, now=now)


@pytest.mark.parametrize(("path", "query"), CASES)
def test_canonical_functions_match_sdk(path: str, query: list[tuple[str, str]]) -> None:
    headers = oracle_headers(TOKEN)
    lowered = {k.lower(): v for k, v in headers.items()}
    signed = sorted(lowered)
    canonical = canonical_request("GET", path, query, lowered, signed, b"")
    ours = signature(SK, string_to_sign(SDK_DATE, canonical))
    assert auth_fields(sdk_authorization("GET", path, query, headers))["Signature"] == ours


@pytest.mark.parametrize(("path", "query"), CASES)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_aksk_auth_through_requests_matches_sdk(
    path: str, query: list[tuple[str, str]], token: str | None
) -> None:
    req = prepared(path, query, token=token)
    assert req.headers["X-Sdk-Date"] == SDK_DATE
    assert req.headers["Host"] == HOST
    assert req.headers["X-Project-Id"] == PROJECT
    assert req.headers["Authorization"] == sdk_authorization(
        "GET", path, query, oracle_headers(token)
    )


def test_without_project_id_no_header_is_signed() -> None:
    req = prepared(SERVERS, project=None)
    assert "X-Project-Id" not in req.headers
    assert auth_fields(req.headers["Authorization"])["SignedHeaders"] == "host;x-sdk-date"
    assert req.headers["Authorization"] == sdk_authorization(
        "GET", SERVERS, [], oracle_headers(project=None)
    )


def test_host_keeps_a_non_default_port() -> None:
    creds = Credentials(AK, SK)
    auth = AkSkAuth(lambda: creds, clock=lambda: NOW)
    req = requests.Request("GET", "http://127.0.0.1:8443/v1/x", auth=auth).prepare()
    assert req.headers["Host"] == "127.0.0.1:8443"
    assert verify(req).access_key == AK


def test_json_body_and_content_type_are_signed_like_the_sdk() -> None:
    body = b'{"server_ids": ["a", "b"]}'
    req = prepared(
        SERVERS + "/batch",
        method="POST",
        data=body,
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    headers = oracle_headers() | {"Content-Type": "application/json;charset=UTF-8"}
    expected = sdk_authorization("POST", SERVERS + "/batch", [], headers, body)
    assert req.headers["Authorization"] == expected
    assert "content-type" in auth_fields(expected)["SignedHeaders"].split(";")
    verify(req)
    req.body = body.replace(b'"b"', b'"c"')
    with pytest.raises(SignatureError, match="does not match"):
        verify(req)


def test_security_token_is_sent_and_signed() -> None:
    req = prepared(SERVERS, token=TOKEN)
    assert req.headers["X-Security-Token"] == TOKEN
    signed = auth_fields(req.headers["Authorization"])["SignedHeaders"].split(";")
    assert signed == ["host", "x-project-id", "x-sdk-date", "x-security-token"]
    assert verify(req) == VerifiedRequest(access_key=AK, security_token=TOKEN)
    req.headers["X-Security-Token"] = TOKEN + "x"
    with pytest.raises(SignatureError, match="does not match"):
        verify(req)


def test_credentials_are_read_for_every_request() -> None:
    current = [Credentials(AK, SK)]
    auth = AkSkAuth(lambda: current[0], clock=lambda: NOW)
    first = requests.Request("GET", BASE + SERVERS, auth=auth).prepare()
    current[0] = Credentials("ROTATEDKEY", "rotated-secret")
    second = requests.Request("GET", BASE + SERVERS, auth=auth).prepare()
    assert auth_fields(first.headers["Authorization"])["Access"] == AK
    assert auth_fields(second.headers["Authorization"])["Access"] == "ROTATEDKEY"
    assert verify(second, keys={"ROTATEDKEY": "rotated-secret"}).access_key == "ROTATEDKEY"


# ---- verify_request: what the simulator's gateway accepts and refuses ----


def test_verify_accepts_a_good_request() -> None:
    req = prepared(SERVERS, [("offset", "0"), ("name", "a b+c/é")])
    assert verify(req) == VerifiedRequest(access_key=AK, security_token=None)


def test_verify_accepts_what_the_sdk_signs_with_more_headers() -> None:
    headers = oracle_headers(TOKEN) | {"User-Agent": "huaweicloud-usdk-python/3.0"}
    query = [("limit", "10"), ("name", "a b")]
    headers["Authorization"] = sdk_authorization("GET", SERVERS, query, headers)
    target = SERVERS + "?limit=10&name=a%20b"
    assert verify_request("GET", target, headers, b"", {AK: SK}.get, now=NOW).security_token
    headers["User-Agent"] = "changed"  # signed by the SDK, so now tampered
    with pytest.raises(SignatureError):
        verify_request("GET", target, headers, b"", {AK: SK}.get, now=NOW)


def test_verify_ignores_unsigned_headers() -> None:
    req = prepared(SERVERS)
    req.headers["User-Agent"] = "rewritten-by-a-proxy"
    verify(req)


def test_verify_rejects_a_wrong_secret_key() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(prepared(SERVERS, secret_key="not-the-secret"))


def test_verify_rejects_an_unknown_access_key() -> None:
    with pytest.raises(SignatureError, match="unknown access key"):
        verify(prepared(SERVERS), keys={"OTHERKEY": SK})


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.replace("/servers", "/phones"),
        lambda u: u.replace(PROJECT, "f" * 32),
        lambda u: u.replace("limit=10", "limit=100"),
        lambda u: u + "&status=5",
        lambda u: u.replace("&offset=0", ""),
    ],
    ids=["path", "project-in-path", "query-value", "query-added", "query-dropped"],
)
def test_verify_rejects_a_tampered_target(tamper: Callable[[str], str]) -> None:
    req = prepared(SERVERS, [("limit", "10"), ("offset", "0")])
    verify(req)
    req.url = BASE + tamper(req.path_url)
    assert req.path_url != SERVERS + "?limit=10&offset=0"
    with pytest.raises(SignatureError, match="does not match"):
        verify(req)


@pytest.mark.parametrize("header", ["Host", "X-Project-Id", "X-Sdk-Date"])
def test_verify_rejects_a_tampered_signed_header(header: str) -> None:
    req = prepared(SERVERS)
    req.headers[header] = "20240506T070810Z" if header == "X-Sdk-Date" else "other"
    with pytest.raises(SignatureError, match="does not match"):
        verify(req)


@pytest.mark.parametrize("skew", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_verify_rejects_a_stale_or_future_date(skew: timedelta) -> None:
    with pytest.raises(SignatureError, match="X-Sdk-Date"):
        verify(prepared(SERVERS), now=NOW + skew)


@pytest.mark.parametrize("skew", [timedelta(minutes=14), timedelta(minutes=-14)])
def test_verify_tolerates_clock_skew_within_fifteen_minutes(skew: timedelta) -> None:
    verify(prepared(SERVERS), now=NOW + skew)


def test_verify_rejects_an_unsigned_security_token() -> None:
    req = prepared(SERVERS)
    req.headers["X-Security-Token"] = TOKEN
    with pytest.raises(SignatureError, match="X-Security-Token must be signed"):
        verify(req)


def test_verify_rejects_a_missing_authorization() -> None:
    req = prepared(SERVERS)
    del req.headers["Authorization"]
    with pytest.raises(SignatureError, match="Authorization"):
        verify(req)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "SDK-HMAC-SHA256 Access=, SignedHeaders=host;x-sdk-date, Signature=00",
        "SDK-HMAC-SHA256 Access=" + AK,
    ],
)
def test_verify_rejects_malformed_authorization(authorization: str) -> None:
    req = prepared(SERVERS)
    req.headers["Authorization"] = authorization
    with pytest.raises(SignatureError):
        verify(req)


def test_verify_requires_host_and_date_to_be_signed() -> None:
    req = prepared(SERVERS)
    fields = auth_fields(req.headers["Authorization"])
    req.headers["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=x-project-id, Signature={fields['Signature']}"
    )
    with pytest.raises(SignatureError, match="must be signed"):
        verify(req)


def test_verify_error_never_echoes_secrets() -> None:
    req = prepared(SERVERS, token=TOKEN, secret_key="wrong-secret")
    with pytest.raises(SignatureError) as caught:
        verify(req)
    given_sig = auth_fields(req.headers["Authorization"])["Signature"]
    for secret in (SK, "wrong-secret", TOKEN, given_sig):
        assert secret not in str(caught.value)


# ---- property: AkSkAuth signs like the SDK for arbitrary segments and query pairs ----

# No surrogates (not encodable); every other code point is fair game.
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_segments = st.lists(_text.filter(lambda s: s not in ("", ".", "..")), min_size=1, max_size=4)
_pairs = st.lists(st.tuples(_text, _text), max_size=6)


@settings(max_examples=300, deadline=None)
@given(segments=_segments, query=_pairs, token=st.sampled_from([None, TOKEN]))
def test_property_aksk_auth_equals_sdk(
    segments: list[str], query: list[tuple[str, str]], token: str | None
) -> None:
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    req = prepared(path, query, token=token)
    assert urlsplit(req.url).path == path  # requests sent the path we meant
    assert req.headers["Authorization"] == sdk_authorization(
        "GET", path, query, oracle_headers(token)
    )
    verify(req)


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(_text, max_size=4), query=_pairs)
def test_property_canonical_functions_equal_sdk(
    segments: list[str], query: list[tuple[str, str]]
) -> None:
    # Raw paths here, including "." and empty segments that requests would normalise away.
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    headers = oracle_headers()
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical = canonical_request("GET", path, query, lowered, sorted(lowered), b"")
    ours = signature(SK, string_to_sign(SDK_DATE, canonical))
    assert auth_fields(sdk_authorization("GET", path, query, headers))["Signature"] == ours


# ---- the client's lean path: sign_get from a precomputed canonical path, against the SDK ----


@pytest.mark.parametrize(("path", "query"), CASES)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_sign_get_matches_sdk(path: str, query: list[tuple[str, str]], token: str | None) -> None:
    creds = Credentials(AK, SK, token)
    auth = AkSkAuth(lambda: creds, project_id=PROJECT, clock=lambda: NOW)
    headers = auth.sign_get(HOST, canonical_uri(path), query)
    assert headers["Authorization"] == sdk_authorization("GET", path, query, oracle_headers(token))
    # And the gateway's check accepts it, for the request line the client sends.
    target = path + ("?" + urlencode(query) if query else "")
    verify_request("GET", target, headers, b"", {AK: SK}.get, now=NOW)


@settings(max_examples=300, deadline=None)
@given(segments=_segments, query=_pairs, token=st.sampled_from([None, TOKEN]))
def test_property_sign_get_equals_sdk_and_aksk_auth(
    segments: list[str], query: list[tuple[str, str]], token: str | None
) -> None:
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    creds = Credentials(AK, SK, token)
    auth = AkSkAuth(lambda: creds, project_id=PROJECT, clock=lambda: NOW)
    lean = auth.sign_get(HOST, canonical_uri(path), query)
    assert lean["Authorization"] == sdk_authorization("GET", path, query, oracle_headers(token))
    assert lean["Authorization"] == prepared(path, query, token=token).headers["Authorization"]
