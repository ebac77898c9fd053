"""Helpers shared by the protocol parsers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from qwen_ci.errors import APIError, ProtocolError, error_for_status, parse_error_payload
from qwen_ci.events import Usage

try:  # orjson is optional (langsmith brings it with LangChain); json is the fallback
    import orjson

    _fast_loads: Callable[[bytes], Any] | None = orjson.loads
    _FAST_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
    _FAST_ERRORS = ()


class StreamState:
    """What every protocol parser tracks about its stream: whether output started (no
    retry after that), whether the final frame came, and the request id.

    Example:
        >>> state = StreamState(request_id="chatcmpl-1")
        >>> state.use_request_id("req-9")
        >>> state.request_id, state.started, state.finished
        ('req-9', False, False)
    """

    __slots__ = ("_finished", "_request_id", "started")

    def __init__(self, request_id: str | None = None) -> None:
        self._request_id = request_id
        self._finished = False
        self.started = False  # a result frame was received (no retry after this)

    @property
    def finished(self) -> bool:
        """True once the stream's final frame was seen."""
        return self._finished

    @property
    def request_id(self) -> str | None:
        """The request id (the ``x-request-id`` header, else the one in the frames)."""
        return self._request_id

    def use_request_id(self, request_id: str | None) -> None:
        """Prefer the response's ``x-request-id`` header over ids found in frames."""
        if request_id:
            self._request_id = request_id


def load_frame(data: bytes) -> dict[str, Any]:
    """Parse one frame's JSON; anything else is a :class:`ProtocolError`.

    Uses ``orjson`` when it is importable (about 0.75x the CPU per frame of the core
    client); whatever orjson rejects goes through ``json``, so errors are unchanged.
    """
    if _fast_loads is not None:
        try:
            fast = _fast_loads(data)
        except _FAST_ERRORS:
            pass
        else:
            if isinstance(fast, dict):
                return fast
    try:
        obj = json.loads(data)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ProtocolError(
            f"Malformed frame from the service ({type(exc).__name__}: {exc}); "
            f"frame starts with {bytes(data[:200])!r}"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"Frame is not a JSON object: {bytes(data[:200])!r}")
    return obj


def frame_error(payload: Any, status: int | None, request_id: str | None) -> APIError:
    """An error frame's payload as an exception."""
    code, message, rid = parse_error_payload(payload, status, request_id)
    return error_for_status(status, code, message, rid)


def as_int(value: Any) -> int:
    """Token counts: ints, tolerating absent or null values."""
    return value if isinstance(value, int) else 0


def usage_from(
    raw: dict[str, Any], input_key: str, output_key: str, details_key: str, plugins: Any,
    cached_keys: tuple[str, ...] = ("prompt_tokens_details",),
) -> Usage:
    """Build the final :class:`Usage` from a wire usage object (``cached_tokens`` from the
    last of ``cached_keys`` that has it)."""
    details = raw.get(details_key)
    reasoning = as_int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    cached: int | None = None
    for key in cached_keys:
        inner = raw.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("cached_tokens"), int):
            cached = inner["cached_tokens"]
    inp = as_int(raw.get(input_key))
    out = as_int(raw.get(output_key))
    total = raw.get("total_tokens")
    return Usage(
        input_tokens=inp,
        output_tokens=out,
        total_tokens=total if isinstance(total, int) else inp + out,
        reasoning_tokens=reasoning,
        cached_tokens=cached,
        plugins={k: dict(v) if isinstance(v, dict) else v for k, v in plugins.items()}
        if isinstance(plugins, dict) else {},
    )
