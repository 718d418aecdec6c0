"""The project ID of a region, looked up through IAM (`GET /v3/projects?name=REGION`)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence

import requests

from cph_exporter.cph.errors import error_fields
from cph_exporter.cph.signing import AkSkAuth
from cph_exporter.cph.transport import (
    DEFAULT_MAX_RESPONSE_SIZE,
    Answer,
    ExchangeError,
    exchange,
)
from cph_exporter.credentials.providers import CredentialError, CredentialProvider
from cph_exporter.credentials.values import scrub

log = logging.getLogger(__name__)

ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
IAM_ENDPOINT = "https://iam.myhuaweicloud.com"


class ProjectLookupError(Exception):
    """The project ID of a region could not be found; the message says why (no secrets)."""


def iam_endpoint_from(environ: Mapping[str, str]) -> str:
    """The IAM endpoint: `HUAWEICLOUD_SDK_IAM_ENDPOINT` as in the SDK, else the global one."""
    return (environ.get(ENV_IAM_ENDPOINT) or IAM_ENDPOINT).rstrip("/")


def _iam_error_detail(answer: Answer, secrets: Sequence[str]) -> str:
    """IAM's own error text (keystone or API gateway shape), scrubbed and shortened."""
    code, message, _ = error_fields(answer.body, secrets)
    detail = scrub(" ".join(part for part in (code, message) if part), secrets)[:200]
    return f": {detail}" if detail else ""


def lookup_project_id(
    session: requests.Session,
    iam_endpoint: str,
    region: str,
    credentials: CredentialProvider,
    timeout: float = 10.0,
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
) -> str:
    """The ID of the project named after `region`, via IAM `GET /v3/projects?name=REGION`.

    When IAM rejects the credentials (401), the sources are re-read and the call is tried
    once more. Raises ProjectLookupError unless exactly one project matches.
    """
    url = iam_endpoint.rstrip("/") + "/v3/projects"
    # No project ID yet: the call is signed without X-Project-Id.
    auth = AkSkAuth(credentials.get)
    for attempt in range(2):
        try:
            resp = exchange(
                session,
                url,
                params={"name": region},
                auth=auth,
                timeout=timeout,
                max_bytes=max_response_size,
            )
        except ExchangeError as exc:
            raise ProjectLookupError(f"IAM {url} failed for region {region!r}: {exc}") from None
        except CredentialError as exc:
            raise ProjectLookupError(f"IAM {url}: no credentials: {exc}") from None
        if resp.status == 401 and attempt == 0:
            log.warning(
                "IAM rejected the credentials from %s; re-reading the sources",
                credentials.describe(),
            )
            credentials.invalidate()
            continue
        break
    if resp.status != 200:
        try:
            secrets = credentials.get().secrets()
        except CredentialError:
            secrets = ()
        raise ProjectLookupError(
            f"IAM {url} answered HTTP {resp.status} for region {region!r}"
            + _iam_error_detail(resp, secrets)
        )
    try:
        body = json.loads(resp.body)
    except (ValueError, RecursionError):
        raise ProjectLookupError(f"IAM {url} answered something that is not JSON") from None
    projects = body.get("projects") if isinstance(body, dict) else None
    if not isinstance(projects, list):
        raise ProjectLookupError(f"IAM {url} answered no 'projects' list")
    # Filter again: the name query must be an exact match, whatever the server did with it.
    ids = [
        p["id"]
        for p in projects
        if isinstance(p, dict)
        and p.get("name") == region
        and isinstance(p.get("id"), str)
        and p["id"]
    ]
    if not ids:
        raise ProjectLookupError(
            f"no project named {region!r} is visible to these credentials; "
            "check the region or set the project ID"
        )
    if len(ids) > 1:
        raise ProjectLookupError(
            f"{len(ids)} projects are named {region!r} ({', '.join(ids)}); set the project ID"
        )
    return str(ids[0])


class ProjectIdResolver:
    """Looks a region's project ID up once and remembers it; failures are not remembered."""

    def __init__(
        self,
        session: requests.Session,
        credentials: CredentialProvider,
        iam_endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._iam = iam_endpoint or iam_endpoint_from(os.environ if environ is None else environ)
        self._timeout = timeout
        self._max_response_size = max_response_size
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}

    @property
    def iam_endpoint(self) -> str:
        return self._iam

    def resolve(self, region: str) -> str:
        # One lock for all regions: concurrent first scrapes wait instead of asking IAM twice.
        with self._lock:
            found = self._ids.get(region)
            if found is None:
                found = lookup_project_id(
                    self._session,
                    self._iam,
                    region,
                    self._credentials,
                    timeout=self._timeout,
                    max_response_size=self._max_response_size,
                )
                log.info("project ID of region %s is %s (from IAM)", region, found)
                self._ids[region] = found
            return found
