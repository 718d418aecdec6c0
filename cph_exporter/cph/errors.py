"""The one error type the CPH client raises, carrying what an operator needs to act."""

from __future__ import annotations

import json


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


def error_fields(body: bytes) -> tuple[str, str, str]:
    """(error_code, error_msg, request_id) from a JSON error body; empty when there is none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return "", "", ""
    if not isinstance(data, dict):
        return "", "", ""
    # Some gateways nest the error one level down: {"error": {"code": ..., "message": ...}}.
    error = data.get("error")
    nested: dict[str, object] = error if isinstance(error, dict) else {}
    code = data.get("error_code") or nested.get("code") or ""
    msg = data.get("error_msg") or nested.get("message") or ""
    request_id = data.get("request_id") or ""
    return str(code)[:100], str(msg)[:300], str(request_id)[:100]
