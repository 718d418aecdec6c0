"""The one error type the CPH client raises, carrying what an operator needs to act."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from cph_exporter.credentials.values import scrub


class ApiError(Exception):
    """A failed CPH API call: HTTP status, error_code, error_msg and request_id, never a secret."""

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        error_code: str = "",
        error_msg: str = "",
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.retry_after = retry_after
        parts = [operation + ":", message]
        if error_code:
            parts.append(error_code)
        if error_msg:
            parts.append(error_msg)
        if request_id:
            parts.append(f"(request_id={request_id})")
        super().__init__(" ".join(parts))

    @property
    def is_auth_failure(self) -> bool:
        return self.status in (401, 403) or self.error_code == "APIGW.0301"

    @property
    def is_throttled(self) -> bool:
        return self.status == 429 or self.error_code == "APIGW.0308"

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_retryable(self) -> bool:
        if self.is_auth_failure:
            return False
        return self.is_throttled or self.status is None or self.status >= 500


def error_fields(body: bytes, secrets: Iterable[str] = ()) -> tuple[str, str, str]:
    """(error_code, error_msg, request_id) from a JSON error body; empty when there is none.

    Secrets are blanked before the fields are cut to length: a cut secret is no longer
    recognisable as a whole.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return "", "", ""
    return document_error_fields(data, secrets)


def document_error_fields(data: object, secrets: Iterable[str] = ()) -> tuple[str, str, str]:
    """`error_fields` of an answer already parsed: each answer is parsed once."""
    if not isinstance(data, dict):
        return "", "", ""
    # Some gateways nest the error one level down: {"error": {"code": ..., "message": ...}};
    # others (IAM, API gateways) say errorCode/errorMsg or code/message at the top.
    error = data.get("error")
    nested: dict[str, object] = error if isinstance(error, dict) else {}
    code = _first(data, "error_code", "errorCode", "code") or _first(nested, "code", "error_code")
    msg = _first(data, "error_msg", "errorMsg", "message") or _first(nested, "message", "error_msg")
    request_id = _first(data, "request_id", "requestId")
    if not (code or msg or request_id):  # a good answer: nothing to scrub
        return "", "", ""
    secrets = tuple(secrets)
    return (
        scrub(code, secrets)[:100],
        scrub(msg, secrets)[:300],
        scrub(request_id, secrets)[:100],
    )


def _first(data: Mapping[str, object], *keys: str) -> str:
    for key in keys:
        value = data.get(key)
        if value is not None and value != "" and not isinstance(value, dict | list):
            return str(value)
    return ""
