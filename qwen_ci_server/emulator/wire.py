"""Byte-exact rendering of frames and errors in both protocols (see PROTOCOL.md).

Native: ``id:N`` / ``event:result`` / ``:HTTP_STATUS/200`` / ``data:{json}`` and a blank
line, compact JSON in the service's key order, ``finish_reason`` the string ``"null"``
until the last frame, no ``[DONE]``. Compatible mode: ``data: {json}`` chunks with JSON
nulls, a usage chunk with ``choices: []``, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from qwen_ci_server.emulator.engine import Frame

EMULATOR_PREFIX = "qwen-ci emulator: "
"""Messages of errors whose real text is unknown start with this."""

NATIVE_HEADERS = {"x-dashscope-call-gateway": "true"}
"""Sent on every native response, errors included (as recorded)."""
NATIVE_STREAM_HEADERS = {**NATIVE_HEADERS, "x-dashscope-timeout": "298",
                         "x-dashscope-finished": "false"}
"""Sent on native streams (as recorded for qwen3-max-preview with the code interpreter)."""


def dumps(payload: Any) -> str:
    """Compact JSON as the service sends it (UTF-8, no spaces)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def new_request_id() -> str:
    """A request id in the service's format."""
    return str(uuid.uuid4())


# ---------------------------------------------------------------------- native


def native_event(payload: dict[str, Any], index: int, *, status: int = 200,
                 event: str = "result") -> bytes:
    """One native SSE event."""
    return f"id:{index}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{dumps(payload)}\n\n".encode()


def native_usage(frame: Frame, thinking: bool) -> dict[str, Any]:
    """The cumulative ``usage`` object of a native frame, in the service's key order."""
    usage: dict[str, Any] = {
        "total_tokens": frame.total_tokens,
        "output_tokens": frame.output_tokens,
        "input_tokens": frame.input_tokens,
    }
    if thinking:
        usage["output_tokens_details"] = {"reasoning_tokens": frame.reasoning_tokens}
    plugins: dict[str, Any] = {}
    if frame.search is not None:  # as recorded for web search
        plugins["search"] = {"count": 1, "strategy": "standard"}
    if frame.codes:
        plugins["code_interpreter"] = {"count": len(frame.codes)}
    if plugins:
        usage["plugins"] = plugins
    usage["prompt_tokens_details"] = {"cached_tokens": 0}
    return usage


def native_payload(frame: Frame, request_id: str, *, thinking: bool,
                   multimodal: bool) -> dict[str, Any]:
    """The ``data`` object of a native result frame."""
    content: Any = frame.content
    if multimodal:
        content = [{"text": frame.content}] if frame.content else []
    message: dict[str, Any] = {"content": content}
    if thinking:
        message["reasoning_content"] = frame.reasoning
    message["role"] = "assistant"
    output: dict[str, Any] = {
        "choices": [{"message": message, "finish_reason": frame.finish or "null"}]
    }
    if frame.search is not None:  # results once, then empty (as recorded)
        output["search_info"] = (
            {"search_results": list(frame.search)} if frame.search
            else {"extra_tool_info": [], "search_results": []}
        )
    if frame.codes is not None:
        output["tool_info"] = [
            {"code_interpreter": {"code": code}, "type": "code_interpreter"}
            for code in frame.codes
        ]
    return {"output": output, "usage": native_usage(frame, thinking), "request_id": request_id}


def native_text_payload(frame: Frame, request_id: str) -> dict[str, Any]:
    """The ``data`` object of a ``result_format: "text"`` frame: ``output.text``."""
    return {
        "output": {"finish_reason": frame.finish or "null", "text": frame.content},
        "usage": native_usage(frame, thinking=False),
        "request_id": request_id,
    }


def native_complete(
    text: str, reasoning: str, last: Frame, request_id: str, *, thinking: bool,
    multimodal: bool, text_format: bool = False,
) -> dict[str, Any]:
    """A non-streaming native response (``reasoning_content`` when thinking)."""
    usage = native_usage(last, thinking)
    if text_format:
        output: dict[str, Any] = {"finish_reason": last.finish or "stop", "text": text}
        return {"output": output, "usage": usage, "request_id": request_id}
    content: Any = [{"text": text}] if multimodal else text
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["reasoning_content"] = reasoning
    return {
        "output": {"choices": [{"finish_reason": last.finish or "stop", "message": message}]},
        "usage": usage,
        "request_id": request_id,
    }


# ---------------------------------------------------------------------- compatible


@dataclass(slots=True)
class CompatStream:
    """Renders one compatible-mode stream (``chat.completion.chunk`` objects).

    Example:
        >>> stream = CompatStream("qwen3-max", thinking=True, include_usage=True)
        >>> stream.last(Frame(finish="stop"))[-1]
        b'data: [DONE]\\n\\n'
    """

    model: str
    thinking: bool
    include_usage: bool
    chunk_id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.chunk_id = self.chunk_id or f"chatcmpl-{uuid.uuid4()}"
        self.created = self.created or int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        payload = {
            "choices": choices,
            "object": "chat.completion.chunk",
            "usage": usage,
            "created": self.created,
            "system_fingerprint": None,
            "model": self.model,
            "id": self.chunk_id,
        }
        return f"data: {dumps(payload)}\n\n".encode()

    def first(self) -> bytes:
        """The opening chunk with the role."""
        delta: dict[str, Any] = {"content": None, "role": "assistant"}
        if self.thinking:
            delta["reasoning_content"] = ""
        else:
            delta["content"] = ""
        return self._chunk(
            [{"delta": delta, "index": 0, "logprobs": None, "finish_reason": None}]
        )

    def delta(self, frame: Frame) -> bytes | None:
        """A chunk for a frame's text, None for frames without text."""
        if frame.reasoning and self.thinking:
            delta: dict[str, Any] = {"content": None, "reasoning_content": frame.reasoning}
            return self._chunk(
                [{"finish_reason": None, "logprobs": None, "delta": delta, "index": 0}]
            )
        if not frame.content:
            return None
        delta = {"content": frame.content}
        if self.thinking:
            delta["reasoning_content"] = None
        return self._chunk(
            [{"delta": delta, "finish_reason": None, "index": 0, "logprobs": None}]
        )

    def last(self, frame: Frame) -> list[bytes]:
        """The finish chunk, the usage chunk (when asked for) and ``[DONE]``."""
        delta: dict[str, Any] = {"content": ""}
        if self.thinking:
            delta["reasoning_content"] = None
        chunks = [
            self._chunk(
                [{"finish_reason": frame.finish or "stop", "delta": delta, "index": 0,
                  "logprobs": None}]
            )
        ]
        if self.include_usage:
            chunks.append(self._chunk([], usage=compat_usage(frame, self.thinking)))
        chunks.append(b"data: [DONE]\n\n")
        return chunks

    def error(self, error: ServiceError, request_id: str) -> bytes:
        """An error inside a 200 stream: ``data: {"error": ...}``."""
        chunk_id = self.chunk_id if error.parameter_error else None
        return f"data: {dumps(error.compat_body(request_id, chunk_id))}\n\n".encode()

    def complete(self, text: str, reasoning: str, frame: Frame) -> dict[str, Any]:
        """A non-streaming ``chat.completion`` (``reasoning_content`` when thinking)."""
        message: dict[str, Any] = {"content": text, "role": "assistant"}
        if self.thinking:
            message["reasoning_content"] = reasoning
        return {
            "choices": [
                {"message": message, "finish_reason": frame.finish or "stop", "index": 0,
                 "logprobs": None}
            ],
            "object": "chat.completion",
            "usage": compat_usage(frame, self.thinking),
            "created": self.created,
            "system_fingerprint": None,
            "model": self.model,
            "id": self.chunk_id,
        }


def compat_usage(frame: Frame, thinking: bool) -> dict[str, Any]:
    """Usage of a compatible-mode response."""
    usage: dict[str, Any] = {
        "prompt_tokens": frame.input_tokens,
        "completion_tokens": frame.output_tokens,
        "total_tokens": frame.total_tokens,
    }
    if thinking:
        usage["completion_tokens_details"] = {"reasoning_tokens": frame.reasoning_tokens}
    return usage


# ---------------------------------------------------------------------- errors


@dataclass
class ServiceError(Exception):
    """An error in the service's shapes for both protocols.

    ``native_code`` may be None (the service sends ``url error`` without a code).

    Example:
        >>> INVALID_API_KEY.native_body("rid")
        {'code': 'InvalidApiKey', 'message': 'Invalid API-key provided.', 'request_id': 'rid'}
    """

    status: int
    native_code: str | None
    message: str
    compat_code: str
    compat_type: str = "invalid_request_error"
    compat_message: str | None = None
    sse: bool = False
    """Native streaming requests get this error as an ``event:error`` frame in a 200
    response (as recorded for parameter errors) instead of a JSON body."""
    parameter_error: bool = False
    """Compatible mode answers it like the real parameter errors: ``code`` first and a
    ``chatcmpl-`` id beside the request id."""

    def native_body(self, request_id: str) -> dict[str, Any]:
        """``{"code","message","request_id"}`` (no ``code`` when the service sends none)."""
        body: dict[str, Any] = {}
        if self.native_code is not None:
            body["code"] = self.native_code
        body["message"] = self.message
        body["request_id"] = request_id
        return body

    def compat_body(self, request_id: str, chunk_id: str | None = None) -> dict[str, Any]:
        """``{"error": {...}, "request_id": ...}`` of compatible mode, in the key order of
        the real bodies (the 401 as recorded; parameter errors as quoted in public bug
        reports, with an ``id``)."""
        message = self.compat_message or self.message
        if self.parameter_error:
            error = {"code": self.compat_code, "message": message, "param": None,
                     "type": self.compat_type}
            chunk_id = chunk_id or f"chatcmpl-{uuid.uuid4()}"
        else:
            error = {"message": message, "type": self.compat_type, "param": None,
                     "code": self.compat_code}
        body: dict[str, Any] = {"error": error}
        if chunk_id:
            body["id"] = chunk_id
        body["request_id"] = request_id
        return body


def invalid_parameter(message: str) -> ServiceError:
    """400 ``InvalidParameter`` / ``invalid_parameter_error``, the same message in both
    protocols (real compatible-mode bodies carry no ``<400> InternalError.Algo...`` prefix
    for these messages)."""
    return ServiceError(
        400, "InvalidParameter", message, "invalid_parameter_error", sse=True,
        parameter_error=True,
    )


def emulator_invalid(message: str) -> ServiceError:
    """400 ``InvalidParameter`` whose text is the emulator's own (the real one is unknown)."""
    return invalid_parameter(EMULATOR_PREFIX + message)


INVALID_API_KEY = ServiceError(
    401, "InvalidApiKey", "Invalid API-key provided.", "invalid_api_key",
    compat_message="Incorrect API key provided. ",
)
URL_ERROR = ServiceError(400, None, "url error, please check url!", "invalid_request_error")
RATE_LIMIT = ServiceError(
    429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.",
    "limit_requests", compat_type="limit_requests",
)
QUOTA = ServiceError(
    429, "Throttling.AllocationQuota",
    "Allocated quota exceeded, please increase your quota limit.", "insufficient_quota",
    compat_type="insufficient_quota",
)
INTERNAL_ERROR = ServiceError(
    500, "InternalError",
    "An internal error has occurred, please try again later or contact service support.",
    "internal_error", compat_type="internal_error",
)
MODEL_UNAVAILABLE = ServiceError(
    503, "ModelUnavailable", "Model is unavailable, please try again later.",
    "ModelUnavailable", compat_type="service_unavailable",
)


def model_not_found(model: str) -> ServiceError:
    """Unknown model: native ``Model not exist.``, compatible ``model_not_found``."""
    return ServiceError(
        400, "InvalidParameter", "Model not exist.", "model_not_found",
        compat_message=f"The model `{model}` does not exist or you do not have access to it.",
        sse=True,
    )


def compat_status(error: ServiceError) -> int:
    """HTTP status of an error in compatible mode (unknown models are 404 there)."""
    return 404 if error.compat_code == "model_not_found" else error.status
