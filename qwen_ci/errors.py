"""One exception family for everything the client raises.

Every error from the service keeps the HTTP status (or the ``:HTTP_STATUS`` of the SSE
frame that carried it), the service's code, its message and the ``request_id``.
Errors detected locally (:class:`InvalidRequestError`) are raised before any I/O.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from qwen_ci.retry import RETRY_STATUSES

if TYPE_CHECKING:
    from qwen_ci.result import Result


class QwenCIError(Exception):
    """Base class of every error raised by this package.

    Attributes:
        status: HTTP status of the response or of the SSE frame, if any.
        code: the service's error code (``InvalidApiKey``, ``Throttling.RateQuota``...).
        message: the service's message (or ours, for local errors).
        request_id: the service's request id, when it sent one.
        partial: what had been received before the error, for callers who want it.
            Never returned as a normal result.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.hint = hint
        self.partial: Result | None = None
        self.retry_after: float | None = None
        super().__init__(self._render())

    def _render(self) -> str:
        head = []
        if self.status is not None:
            head.append(str(self.status))
        if self.code:
            head.append(self.code)
        text = f"[{' '.join(head)}] {self.message}" if head else self.message
        if self.request_id:
            text += f" (request_id={self.request_id})"
        if self.hint:
            text += f" {self.hint}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # the state (third item) carries every attribute, set after construction included
        # (``partial``, ``retry_after``, a hint added later): pickled errors cross processes
        return (
            _rebuild,
            (type(self), self.message, self.status, self.code, self.request_id, self.hint),
            dict(self.__dict__),
        )


def _rebuild(
    cls: type[QwenCIError],
    message: str,
    status: int | None,
    code: str | None,
    request_id: str | None,
    hint: str | None,
) -> QwenCIError:
    return cls(message, status=status, code=code, request_id=request_id, hint=hint)


class InvalidRequestError(QwenCIError, ValueError):
    """Bad input detected locally, before any request was sent."""


class APIError(QwenCIError):
    """An error reported by the service."""


class BadRequestError(APIError):
    """HTTP 400: invalid parameters, content inspection, arrears, wrong endpoint."""


class AuthenticationError(APIError):
    """HTTP 401: the API key was rejected (keys belong to one region)."""


class PermissionDeniedError(APIError):
    """HTTP 403."""


class NotFoundError(APIError):
    """HTTP 404: unknown model or no access to it."""


class RateLimitError(APIError):
    """HTTP 429 rate limit; retried with backoff before output starts."""

    retryable = True


class QuotaExceededError(RateLimitError):
    """HTTP 429 for an exhausted quota: waiting does not help, never retried."""

    retryable = False


class ServerError(APIError):
    """HTTP 5xx; retried with backoff before output starts when the one retry policy
    (:data:`qwen_ci.retry.RETRY_STATUSES`: 500, 502, 503, 504) lists its status, or
    when the status is unknown (an ``InternalError`` frame)."""

    retryable = True

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retryable = self.status is None or self.status in RETRY_STATUSES


class ServiceUnavailableError(ServerError):
    """HTTP 503 ``ModelUnavailable``."""


class APIConnectionError(QwenCIError):
    """The service could not be reached or the connection broke."""

    retryable = True


class APITimeoutError(APIConnectionError):
    """The connect, read or write timeout fired."""


class StreamError(QwenCIError):
    """The stream itself was wrong: cut off, malformed frames."""


class IncompleteStreamError(StreamError):
    """The stream ended without a final frame; the output is partial."""


class ProtocolError(StreamError):
    """A frame could not be parsed (invalid JSON, bad encoding, missing fields)."""


_QUOTA_CODES = frozenset({"Throttling.AllocationQuota", "insufficient_quota"})

#: service code -> HTTP status, for errors that arrive without a usable status
#: (an ``event:error`` frame marked 200, ``data: {"error": ...}`` inside a 200 stream)
CODE_STATUS: dict[str, int] = {
    "InvalidParameter": 400,
    "invalid_parameter_error": 400,
    "DataInspectionFailed": 400,
    "data_inspection_failed": 400,
    "Arrearage": 400,
    "InvalidApiKey": 401,
    "invalid_api_key": 401,
    "AccessDenied": 403,
    "access_denied": 403,
    "ModelNotFound": 404,
    "model_not_found": 404,
    "Throttling": 429,
    "Throttling.RateQuota": 429,
    "limit_requests": 429,
    "Throttling.AllocationQuota": 429,
    "insufficient_quota": 429,
    "InternalError": 500,
    "internal_error": 500,
    "ModelUnavailable": 503,
}


def error_for_status(
    status: int | None,
    code: str | None,
    message: str,
    request_id: str | None,
    hint: str | None = None,
) -> APIError:
    """The exception class that matches an HTTP status and service code."""
    cls: type[APIError]
    if (status is None or status < 400) and code in CODE_STATUS:
        status = CODE_STATUS[code]
    if status == 400:
        cls = BadRequestError
    elif status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = QuotaExceededError if code in _QUOTA_CODES else RateLimitError
    elif status == 503:
        cls = ServiceUnavailableError
    elif status is not None and status >= 500:
        cls = ServerError
    elif code and code.startswith("Throttling"):
        cls = QuotaExceededError if code in _QUOTA_CODES else RateLimitError
    elif code in ("InternalError", "internal_error"):
        cls = ServerError
    else:
        cls = BadRequestError if status is not None and 400 <= status < 500 else APIError
    return cls(message, status=status, code=code, request_id=request_id, hint=hint)


def parse_error_payload(
    payload: Any, status: int | None, request_id: str | None
) -> tuple[str | None, str, str | None]:
    """Extract ``(code, message, request_id)`` from any error body shape of the service.

    Shapes: native ``{"code","message","request_id"}``, compatible
    ``{"error": {"code","message","type"}, "request_id"}``, ``msg`` instead of
    ``message``, ``type`` without ``code``.
    """
    if not isinstance(payload, dict):
        return None, f"HTTP {status}: {payload!r}"[:2000], request_id
    rid = payload.get("request_id") or request_id
    inner = payload.get("error")
    body: dict[str, Any] = inner if isinstance(inner, dict) else payload
    code = body.get("code") or body.get("type") or None
    message = body.get("message") or body.get("msg") or ""
    if not message:
        message = json.dumps(payload, ensure_ascii=False)[:2000]
    return (str(code) if code is not None else None), str(message), (
        str(rid) if rid is not None else None
    )


def decode_error_body(raw: bytes, status: int | None, request_id: str | None) -> APIError:
    """Turn a non-2xx response body (JSON, SSE error frame or ``data:`` line) into an error."""
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    frame_status = status
    payload: Any = None
    if text.startswith(("{", "[")):
        payload = _loads_or_none(text)
    else:
        # SSE shapes: "id:..\nevent:error\n:HTTP_STATUS/400\ndata:{...}" or "data: {...}"
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if line.startswith(":HTTP_STATUS/"):
                frame_status = _int_or(line[len(":HTTP_STATUS/") :].strip(), frame_status)
            elif line.startswith("data:"):
                payload = _loads_or_none(line[5:].strip())
                break
    if payload is None:
        snippet = text[:500] or "(empty body)"
        return error_for_status(frame_status, None, f"HTTP {frame_status}: {snippet}", request_id)
    code, message, rid = parse_error_payload(payload, frame_status, request_id)
    return error_for_status(frame_status, code, message, rid)


def _loads_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _int_or(text: str, default: int | None) -> int | None:
    try:
        return int(text)
    except ValueError:
        return default
