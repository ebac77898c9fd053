"""The Responses endpoints (new and legacy path) on the emulator's app.

The same front door as the other endpoints (key check, ``X-Emulator-Fault``, body limits,
the request log); errors before any output in the OpenAI-compatible shape with their HTTP
status; a streaming call as ``response.*`` events, a non-streaming one as the response
object. Imported by :func:`~qwen_ci_server.emulator.app.create_app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qwen_ci_server.emulator.app import (
    _check_key,
    _EventStream,
    _faulty,
    _Handlers,
    _load,
    _note,
    _note_frame,
    _Primed,
    _service_error,
)
from qwen_ci_server.emulator.faults import HEADER, parse_faults
from qwen_ci_server.emulator.responses import (
    ResponsesRequest,
    ResponsesStream,
    error_body,
    event_bytes,
    parse_responses,
)
from qwen_ci_server.emulator.service import RESPONSES_PATHS
from qwen_ci_server.emulator.wire import (
    INTERNAL_ERROR,
    ServiceError,
    compat_status,
    new_request_id,
)


def _error(error: ServiceError, request_id: str) -> Response:
    return JSONResponse(error_body(error, request_id), status_code=compat_status(error),
                        headers={"x-request-id": request_id})


class _Responses:
    """``POST .../responses``."""

    def __init__(self, handlers: _Handlers) -> None:
        self.handlers = handlers

    async def handle(self, request: Request) -> Response:
        config = self.handlers.config
        request_id = new_request_id()
        try:
            _check_key(request, config.api_key)
            faults = parse_faults(request.headers.get(HEADER) if config.faults else None)
            if faults.before is not None:
                raise faults.before
            body = await _load(request, config.max_body_bytes)
            _note(model=str(body.get("model") or "-"))  # logged even when it is refused
            parsed = parse_responses(body, config.extra_models)
        except ServiceError as error:
            return _error(error, request_id)
        renderer = ResponsesStream(parsed)
        headers = {"x-request-id": request_id, "cache-control": "no-cache"}
        if not parsed.stream:
            try:
                async with contextlib.aclosing(self._events(parsed, renderer)) as events:
                    async for _ in events:
                        pass
            except ServiceError as error:
                return _error(error, request_id)
            return JSONResponse(renderer.response(), headers=headers)

        def error_chunk(sent: int) -> bytes:
            return event_bytes(renderer.error(INTERNAL_ERROR, sent))

        chunks = _faulty(self._chunks(parsed, renderer), faults, error_chunk)
        try:
            primed = await _Primed.start(chunks)
        except ServiceError as error:
            return _error(error, request_id)
        return _EventStream(primed, headers)

    async def _events(self, parsed: ResponsesRequest,
                      renderer: ResponsesStream) -> AsyncGenerator[dict[str, object], None]:
        """The response's events; an error before the model's first frame is raised (it is
        answered with its HTTP status), a later one is an ``error`` event."""
        started = False
        try:
            async with contextlib.aclosing(
                    self.handlers._engine().frames(parsed.generation)) as frames:
                async for frame in frames:
                    _note_frame(frame)
                    if not started:
                        started = True
                        for event in renderer.start():
                            yield event
                    for event in renderer.feed(frame):
                        yield event
        except Exception as exc:
            error = _service_error(exc)
            if not started:
                raise error from None
            if not parsed.stream:
                raise error from None
            yield renderer.error(error)

    async def _chunks(self, parsed: ResponsesRequest,
                      renderer: ResponsesStream) -> AsyncGenerator[bytes, None]:
        async with contextlib.aclosing(self._events(parsed, renderer)) as events:
            async for event in events:
                yield event_bytes(event)


def responses_routes(handlers: _Handlers) -> list[Route]:
    """Routes for both Responses paths."""
    endpoint = _Responses(handlers).handle
    return [Route(path, endpoint, methods=["POST"]) for path in RESPONSES_PATHS]


__all__ = ["responses_routes"]
