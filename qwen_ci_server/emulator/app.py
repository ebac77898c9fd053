"""The ASGI application: DashScope's endpoints on one host (Starlette)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from qwen_ci_server.emulator import functions
from qwen_ci_server.emulator.config import EmulatorConfig
from qwen_ci_server.emulator.engine import Engine, Frame
from qwen_ci_server.emulator.faults import HEADER, Faults, parse_faults
from qwen_ci_server.emulator.service import COMPATIBLE_PATH, NATIVE_PATHS, Endpoint
from qwen_ci_server.emulator.validation import (
    Parsed,
    load_body,
    parse_compatible,
    parse_native,
    too_large,
)
from qwen_ci_server.emulator.wire import (
    EMULATOR_PREFIX,
    INTERNAL_ERROR,
    INVALID_API_KEY,
    NATIVE_HEADERS,
    NATIVE_STREAM_HEADERS,
    CompatStream,
    ServiceError,
    compat_status,
    emulator_invalid,
    native_complete,
    native_event,
    native_payload,
    native_text_payload,
    new_request_id,
)
from qwen_ci_server.sandbox import KernelPool

SSE_TYPE = "text/event-stream;charset=UTF-8"
logger = logging.getLogger("qwen_ci_server.emulator")
_LOG: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("qwen_ci_emulator_log")


def _note(**fields: Any) -> None:
    """Add to the current request's log line (model, code runs)."""
    record = _LOG.get(None)
    if record is not None:
        record.update(fields)


def _note_frame(frame: Frame) -> None:
    if frame.codes:
        _note(code_runs=len(frame.codes))


class _RequestLog:
    """ASGI middleware: one INFO line per request (method, path, model, status, duration,
    code runs, request id); never the prompt or the key."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {"status": 500, "request_id": "-", "model": "-",
                                  "code_runs": 0}
        token = _LOG.set(record)
        start = time.perf_counter()

        async def logged_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"x-request-id":
                        record["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            _LOG.reset(token)
            logger.info(
                "%s %s model=%s status=%s duration=%.3fs code_runs=%s request_id=%s",
                scope.get("method", "-"), scope.get("path", "-"), record["model"],
                record["status"], time.perf_counter() - start, record["code_runs"],
                record["request_id"],
            )


class _EventStream(StreamingResponse):
    """A streaming response that stops generating (and frees the sandbox) when the
    client goes away, even during a silent code run."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(body, status_code=200, headers=headers, media_type=SSE_TYPE)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            try:
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                async for chunk in self._body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the client disconnected while we were writing
                pass
            finally:
                with anyio.CancelScope(shield=True):
                    aclose = getattr(self._body, "aclose", None)
                    if aclose is not None:
                        await aclose()
                group.cancel_scope.cancel()


class _Primed:
    """A chunk stream whose first chunk is produced before the response starts, so that
    an error before any output is answered with its own HTTP status."""

    def __init__(self, first: bytes | None, rest: AsyncGenerator[bytes, None]) -> None:
        self._first = first
        self._rest = rest

    @classmethod
    async def start(cls, chunks: AsyncGenerator[bytes, None]) -> _Primed:
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            return cls(None, chunks)
        except BaseException:
            await chunks.aclose()
            raise
        return cls(first, chunks)

    def __aiter__(self) -> _Primed:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        await self._rest.aclose()


def _service_error(exc: Exception) -> ServiceError:
    """``exc`` in the service's shape: a model's failure that is not one is a 500."""
    if isinstance(exc, ServiceError):
        return exc
    logger.error("qwen-ci emulator: the model failed", exc_info=exc)
    return INTERNAL_ERROR


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (400) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large(size, limit)
        parts.append(part)
    return b"".join(parts)


async def _load(request: Request, limit: int) -> dict[str, Any]:
    """The body's JSON object (see :func:`load_body`), parsed off the event loop when it is
    large. Its size and number of values were bounded by the front door already."""
    raw = await _read_body(request, limit)
    if len(raw) < 64 << 10:
        body = load_body(raw, limit)
    else:
        body = await asyncio.to_thread(load_body, raw, limit)
    if _SURROGATE.search(raw) and _lone_surrogate(body):
        raise emulator_invalid(
            "the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff without its "
            "pair) in a string; send valid Unicode.")
    return body


_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> bool:
    """True when a string of ``value`` (a parsed body) cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _is_sse(request: Request) -> bool:
    if request.headers.get("x-dashscope-sse", "").lower() == "enable":
        return True
    return "text/event-stream" in request.headers.get("accept", "")


def _check_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    sent = request.headers.get("authorization", "")
    token = sent[7:].strip() if sent.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), api_key.encode()):
        raise INVALID_API_KEY


async def _faulty(
    chunks: AsyncGenerator[bytes, None], faults: Faults, error_chunk: Callable[[int], bytes]
) -> AsyncGenerator[bytes, None]:
    """Apply ``slow``, ``cut-after`` and ``error-after`` to a stream of chunks."""
    sent = 0
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if faults.slow:
                await asyncio.sleep(faults.slow)
            if faults.cut_after is not None and sent >= faults.cut_after:
                return
            if faults.error_after is not None and sent >= faults.error_after:
                yield error_chunk(sent)
                return
            sent += 1
            yield chunk


class _Handlers:
    """Route handlers sharing the engine and the configuration."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.model = config.build_model()
        self.pool: KernelPool | None = None
        self.engine: Engine | None = None

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("The emulator is not started (lifespan did not run).")
        return self.engine

    # ------------------------------------------------------------------ native

    async def native(self, request: Request, endpoint: Endpoint) -> Response:
        request_id = new_request_id()
        stream = _is_sse(request)
        try:
            _check_key(request, self.config.api_key)
            faults = parse_faults(request.headers.get(HEADER) if self.config.faults else None)
            if faults.before is not None:
                raise faults.before
            body = await _load(request, self.config.max_body_bytes)
            _note(model=str(body.get("model") or "-"))
            parsed = parse_native(body, endpoint, stream, self.config.extra_models)
        except ServiceError as error:
            return self._native_error(error, request_id, stream)
        headers = {"x-request-id": request_id, "cache-control": "no-cache"}
        if not parsed.stream:
            try:
                text, reasoning, last = await self._collect(parsed)
            except ServiceError as error:
                return self._native_error(error, request_id, stream)
            return JSONResponse(
                native_complete(text, reasoning, last, request_id,
                                thinking=parsed.generation.thinking,
                                multimodal=parsed.multimodal, text_format=parsed.text_format),
                headers={**headers, **NATIVE_HEADERS},
            )

        def error_chunk(sent: int) -> bytes:
            return native_event(INTERNAL_ERROR.native_body(request_id), sent + 1,
                                status=INTERNAL_ERROR.status, event="error")

        chunks = _faulty(self._native_chunks(parsed, request_id), faults, error_chunk)
        try:
            primed = await _Primed.start(chunks)
        except ServiceError as error:
            return self._native_error(error, request_id, stream)
        return _EventStream(primed, {**headers, **NATIVE_STREAM_HEADERS})

    async def _native_chunks(
        self, parsed: Parsed, request_id: str
    ) -> AsyncGenerator[bytes, None]:
        gen = parsed.generation
        content = reasoning = ""
        index = 0
        try:
            async with contextlib.aclosing(self._engine().frames(gen)) as frames:
                async for frame in frames:
                    _note_frame(frame)
                    if not parsed.incremental:
                        content += frame.content
                        reasoning += frame.reasoning
                        frame = Frame(reasoning, content, frame.codes, frame.finish,
                                      frame.input_tokens, frame.output_tokens,
                                      frame.reasoning_tokens)
                    index += 1
                    if parsed.text_format:
                        payload = native_text_payload(frame, request_id)
                    else:
                        payload = native_payload(frame, request_id, thinking=gen.thinking,
                                                 multimodal=parsed.multimodal)
                    yield native_event(payload, index)
        except Exception as exc:
            error = _service_error(exc)
            if index == 0:
                raise error from None  # no output yet: answered with its HTTP status
            yield native_event(error.native_body(request_id), index + 1, status=error.status,
                               event="error")

    @staticmethod
    def _native_error(error: ServiceError, request_id: str, stream: bool) -> Response:
        headers = {"x-request-id": request_id, **NATIVE_HEADERS}
        if stream and error.sse:
            event = native_event(error.native_body(request_id), 1, status=error.status,
                                 event="error")
            return Response(event, status_code=200, headers=headers, media_type=SSE_TYPE)
        return JSONResponse(error.native_body(request_id), status_code=error.status,
                            headers=headers)

    async def _collect(self, parsed: Parsed) -> tuple[str, str, Frame]:
        text: list[str] = []
        reasoning: list[str] = []
        last = Frame()
        try:
            async with contextlib.aclosing(self._engine().frames(parsed.generation)) as frames:
                async for frame in frames:
                    text.append(frame.content)
                    reasoning.append(frame.reasoning)
                    last = frame
        except Exception as exc:
            raise _service_error(exc) from None
        return "".join(text), "".join(reasoning), last

    async def text_generation(self, request: Request) -> Response:
        return await self.native(request, "text")

    async def multimodal_generation(self, request: Request) -> Response:
        return await self.native(request, "multimodal")

    # ------------------------------------------------------------------ compatible

    async def chat_completions(self, request: Request) -> Response:
        request_id = new_request_id()
        try:
            _check_key(request, self.config.api_key)
            faults = parse_faults(request.headers.get(HEADER) if self.config.faults else None)
            if faults.before is not None:
                raise faults.before
            body = await _load(request, self.config.max_body_bytes)
            _note(model=str(body.get("model") or "-"))
            if self.config.model is None and functions.wants_functions(body):
                return functions.response(body, request_id)  # the emulator's own FC model
            parsed = parse_compatible(body, self.config.extra_models)
        except ServiceError as error:
            return self._compat_error(error, request_id)
        gen = parsed.generation
        renderer = CompatStream(gen.model, gen.thinking, parsed.include_usage)
        headers = {"x-request-id": request_id, "cache-control": "no-cache"}
        if not parsed.stream:
            try:
                text, reasoning, last = await self._collect(parsed)
            except ServiceError as error:
                return self._compat_error(error, request_id)
            return JSONResponse(renderer.complete(text, reasoning, last), headers=headers)

        def error_chunk(sent: int) -> bytes:
            return renderer.error(INTERNAL_ERROR, request_id)

        chunks = _faulty(self._compat_chunks(parsed, renderer, request_id), faults, error_chunk)
        try:
            primed = await _Primed.start(chunks)
        except ServiceError as error:
            return self._compat_error(error, request_id)
        return _EventStream(primed, headers)

    @staticmethod
    def _compat_error(error: ServiceError, request_id: str) -> Response:
        return JSONResponse(error.compat_body(request_id), status_code=compat_status(error),
                            headers={"x-request-id": request_id})

    async def _compat_chunks(
        self, parsed: Parsed, renderer: CompatStream, request_id: str
    ) -> AsyncGenerator[bytes, None]:
        started = False
        try:
            async with contextlib.aclosing(self._engine().frames(parsed.generation)) as frames:
                async for frame in frames:
                    _note_frame(frame)
                    if not started:  # the role chunk goes with the first frame
                        started = True
                        yield renderer.first()
                    if frame.finish is not None:
                        for chunk in renderer.last(frame):
                            yield chunk
                        return
                    piece = renderer.delta(frame)
                    if piece is not None:
                        yield piece
        except Exception as exc:
            error = _service_error(exc)
            if not started:
                raise error from None  # no output yet: answered with its HTTP status
            yield renderer.error(error, request_id)

    # ------------------------------------------------------------------ misc

    async def health(self, request: Request) -> Response:
        pool = self.pool
        return JSONResponse({
            "status": "ok",
            "model": getattr(self.model, "name", type(self.model).__name__),
            **(pool.guarantees() if pool else {"isolation": None}),
            "warm_kernels": pool.warm if pool else 0,
        })


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """The emulator as an ASGI app (the kernel pool starts with the app's lifespan).

    Example:
        >>> from qwen_ci_server.emulator import EmulatorConfig, create_app
        >>> app = create_app(EmulatorConfig(pool_size=0))
        >>> sorted(route.path for route in app.routes)[0]
        '/api/v1/services/aigc/multimodal-generation/generation'
    """
    config = config or EmulatorConfig()
    handlers = _Handlers(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = KernelPool(config.pool_size, config.limits, config.isolation,
                          fail_closed=config.fail_closed)
        await pool.start()
        handlers.pool = pool
        handlers.engine = Engine(handlers.model, pool, frame_delay=config.frame_delay,
                                 max_runs=config.max_runs)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()
            aclose = getattr(handlers.model, "aclose", None)
            if aclose is not None:  # a model holding connections (self-hosted mode)
                await aclose()

    routes = [
        Route(NATIVE_PATHS["text"], handlers.text_generation, methods=["POST"]),
        Route(NATIVE_PATHS["multimodal"], handlers.multimodal_generation, methods=["POST"]),
        Route(COMPATIBLE_PATH, handlers.chat_completions, methods=["POST"]),
        Route("/health", handlers.health, methods=["GET"]),
    ]
    from qwen_ci_server.emulator.responses_route import responses_routes  # imports this module

    routes += responses_routes(handlers)
    middleware = [Middleware(_RequestLog)]  # outermost: refused requests are logged too
    if config.front_door:
        middleware.append(_front_door(config, handlers))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.config = config
    return app


EMULATOR_CONCURRENCY = 64
"""Requests the emulator serves at once (more wait in a queue of 256, then 429)."""


def _front_door(config: EmulatorConfig, handlers: _Handlers) -> Middleware:
    """The gate ``qwen-ci serve`` has, in front of every endpoint of the emulator."""
    from qwen_ci_server.selfhost.gate import Gate

    def health() -> dict[str, Any]:
        pool = handlers.pool
        return {"model": getattr(handlers.model, "name", type(handlers.model).__name__),
                **(pool.guarantees() if pool else {"isolation": None}),
                "warm_kernels": pool.warm if pool else 0}

    return Middleware(
        Gate, max_concurrency=EMULATOR_CONCURRENCY, max_queue=4 * EMULATOR_CONCURRENCY,
        max_body_bytes=config.max_body_bytes, health=health, api_key=config.api_key,
        max_buffered_bytes=max(64 << 20, 4 * config.max_body_bytes),
        body_timeout=config.body_timeout, public_health=True, prefix=EMULATOR_PREFIX,
        too_large_error=too_large, access_log=False)
