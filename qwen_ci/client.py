"""Sync and async clients: open a stream, yield normalized events.

Each client owns one connection pool, reused across calls. Retries (with exponential
backoff, honouring ``Retry-After``) happen only for connection errors, 429 rate limits
and 5xx, and only before the first frame of output: a retry after output started would
bill twice and run the code twice.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import ModuleType
from typing import Any

import httpx
import openai

from qwen_ci.config import (
    API_KEY_ENV,
    COMPATIBLE_PREFIX,
    Protocol,
    check_protocol,
    region_of,
    resolve_base_url,
)
from qwen_ci.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    IncompleteStreamError,
    InvalidRequestError,
    QwenCIError,
    decode_error_body,
)
from qwen_ci.events import Event
from qwen_ci.protocols.dashscope import DashScopeParser
from qwen_ci.protocols.openai_compat import OpenAICompatParser
from qwen_ci.protocols.sse import SSEDecoder
from qwen_ci.request import WireRequest

logger = logging.getLogger("qwen_ci")

DEFAULT_TIMEOUT = 300.0
"""Seconds to wait for a byte (code runs are silent on the wire) and, capped at 10 s,
to connect."""
DEFAULT_MAX_RETRIES = 2
_USER_AGENT = "qwen-code-interpreter/0.1"
# SDK arguments of chat.completions.create; the rest of the body goes in extra_body
_SDK_ARGS = frozenset(
    {"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
     "seed", "stop"}
)

Parser = DashScopeParser | OpenAICompatParser


def _sdk_http_module() -> ModuleType:
    """The HTTP library under the openai SDK (``httpx2`` in openai 3): errors raised while
    reading a streamed body come from it, not from the SDK's own exception classes."""
    for base in openai.DefaultHttpxClient.__mro__[1:]:
        root = base.__module__.split(".")[0]
        if root.startswith("httpx"):
            return importlib.import_module(root)
    return httpx


_SDK_HTTP = _sdk_http_module()
#: what one attempt may raise: our errors, and transport errors of httpx and of the SDK
_CAUGHT: tuple[type[Exception], ...] = (
    QwenCIError, httpx.HTTPError, _SDK_HTTP.HTTPError, openai.APIError
)
_TIMEOUT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException, _SDK_HTTP.TimeoutException, openai.APITimeoutError
)


class _Base:
    """Configuration shared by the sync and async clients."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        region: str | None = None,
        protocol: str = "dashscope",
        timeout: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        if not api_key:
            raise InvalidRequestError(
                f"No DashScope API key: set the {API_KEY_ENV} environment variable or pass "
                "api_key (keys are created per region in the Model Studio console)."
            )
        if max_retries < 0:
            raise InvalidRequestError(f"max_retries={max_retries} must be >= 0.")
        if timeout is not None and timeout <= 0:
            raise InvalidRequestError(f"timeout={timeout} must be a positive number of seconds.")
        self.base_url = resolve_base_url(base_url, region)
        self.protocol: Protocol = check_protocol(protocol)
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "X-DashScope-SSE": "enable",
            "User-Agent": _USER_AGENT,
            **dict(default_headers or {}),
        }
        self._extra_headers = dict(default_headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, protocol={self.protocol!r})"

    def _httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def _check_protocol(self, request: WireRequest) -> None:
        if request.protocol != self.protocol:
            raise InvalidRequestError(
                f"Request built for protocol {request.protocol!r} sent to a "
                f"{self.protocol!r} client."
            )

    def _parser(self, request: WireRequest) -> Parser:
        if self.protocol == "openai":
            return OpenAICompatParser(request.model)
        return DashScopeParser(request.model)

    def _compat_args(self, request: WireRequest) -> dict[str, Any]:
        body = request.body
        args = {k: v for k, v in body.items() if k in _SDK_ARGS}
        extra = {k: v for k, v in body.items() if k not in _SDK_ARGS}
        args["extra_body"] = extra
        if request.headers:
            args["extra_headers"] = request.headers
        return args

    def _openai_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self._api_key,
            "base_url": self.base_url + COMPATIBLE_PREFIX,
            "max_retries": 0,  # our retry policy applies to both protocols
            "timeout": self.timeout,
            "default_headers": {"User-Agent": _USER_AGENT, **self._extra_headers},
        }

    def _http_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> QwenCIError:
        err = decode_error_body(body, status, headers.get("x-request-id"))
        err.retry_after = _retry_after(headers)
        return self._annotate(err)

    def _annotate(self, err: QwenCIError) -> QwenCIError:
        if isinstance(err, AuthenticationError) and err.hint is None:
            region = region_of(self.base_url)
            where = f"{self.base_url} (region {region})" if region else self.base_url
            err.hint = (
                f"The key was rejected by {where}. DashScope API keys belong to one region: "
                "a key from another region is rejected the same way. Use the key of this "
                "region, or pass the region/base_url your key belongs to."
            )
            err.args = (err._render(),)
        return err

    def _convert(self, exc: BaseException, parser: Parser) -> QwenCIError:
        """Translate transport exceptions; a break after output started is incomplete."""
        if isinstance(exc, QwenCIError):
            return self._annotate(exc)
        if isinstance(exc, openai.APIStatusError):
            response = exc.response
            try:
                body = response.content
            except Exception:  # the body could not be read
                body = json.dumps(exc.body).encode() if exc.body is not None else b""
            return self._http_error(exc.status_code, body, response.headers)
        timeout = isinstance(exc, _TIMEOUT_ERRORS)
        if parser.started:
            cls: type[QwenCIError] = IncompleteStreamError
            what = "timed out" if timeout else f"broke ({type(exc).__name__}: {exc})"
            message = f"The connection {what} after output had started; the answer is incomplete."
        else:
            cls = APITimeoutError if timeout else APIConnectionError
            what = "Timed out" if timeout else f"Could not connect ({type(exc).__name__}: {exc})"
            message = f"{what} talking to {self.base_url}."
        return cls(message, request_id=parser.request_id)

    def _retry_delay(self, err: QwenCIError, parser: Parser, attempt: int) -> float | None:
        """Seconds to wait before another attempt, or None to give up."""
        if parser.started or not err.retryable or attempt >= self.max_retries:
            return None
        if err.retry_after is not None:
            return min(err.retry_after, 60.0)
        delay: float = min(self.backoff * (2**attempt), self.max_backoff)
        return delay * (0.5 + random.random() / 2)

    def _log_retry(self, err: QwenCIError, attempt: int, delay: float) -> None:
        logger.warning(
            "qwen_ci: attempt %d failed (%s); retrying in %.2fs", attempt + 1, err, delay
        )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _is_json(response: httpx.Response) -> bool:
    """A JSON body where a stream was expected is an error object."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("application/json")


def _finish(decoder: SSEDecoder, parser: Parser) -> Iterator[Event]:
    """End of body: flush the decoder, then insist on the final frame."""
    for sse in decoder.close():
        yield from parser.feed(sse)
    if decoder.truncated and not parser.finished:
        raise IncompleteStreamError(
            "The connection closed in the middle of a frame; the answer is incomplete.",
            request_id=parser.request_id,
        )
    parser.end()


class Client(_Base):
    """Synchronous client with its own connection pool.

    Example:
        >>> from qwen_ci import Client, Options, build
        >>> client = Client(api_key="sk-...", base_url="http://127.0.0.1:8765")
        >>> request = build([{"role": "user", "content": "123**21?"}], Options(), "dashscope")
        >>> for event in client.stream(request):  # doctest: +SKIP
        ...     print(event)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http: httpx.Client | None = None
        self._openai: openai.OpenAI | None = None

    def _pool(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._httpx_timeout())
        return self._http

    def _sdk(self) -> openai.OpenAI:
        if self._openai is None:
            self._openai = openai.OpenAI(**self._openai_kwargs())
        return self._openai

    def stream(self, request: WireRequest) -> Iterator[Event]:
        """Send ``request`` and yield its events; closing the iterator closes the response."""
        self._check_protocol(request)
        attempt = 0
        while True:
            parser = self._parser(request)
            try:
                yield from self._attempt(request, parser)
                return
            except _CAUGHT as exc:
                err = self._convert(exc, parser)
                delay = self._retry_delay(err, parser, attempt)
                if delay is None:
                    raise err from (None if err is exc else exc)
            self._log_retry(err, attempt, delay)
            time.sleep(delay)
            attempt += 1

    def _attempt(self, request: WireRequest, parser: Parser) -> Iterator[Event]:
        decoder = SSEDecoder()
        if self.protocol == "openai":
            create = self._sdk().chat.completions.with_streaming_response.create
            with create(**self._compat_args(request)) as response:
                if isinstance(parser, OpenAICompatParser):
                    parser.use_request_id(response.headers.get("x-request-id"))
                for chunk in response.iter_bytes():
                    for sse in decoder.feed(chunk):
                        yield from parser.feed(sse)
                yield from _finish(decoder, parser)
            return
        body = json.dumps(request.body, ensure_ascii=False).encode()
        headers = {**self._headers, **request.headers}
        url = self.base_url + request.path
        with self._pool().stream("POST", url, content=body, headers=headers) as response:
            if response.status_code >= 400 or _is_json(response):
                response.read()
                raise self._http_error(response.status_code, response.content, response.headers)
            for chunk in response.iter_bytes():
                for sse in decoder.feed(chunk):
                    yield from parser.feed(sse)
            yield from _finish(decoder, parser)

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._openai is not None:
            self._openai.close()
            self._openai = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """Asynchronous client with its own connection pool (bound to one event loop).

    Example:
        >>> import asyncio
        >>> from qwen_ci import AsyncClient, Options, build
        >>> async def main() -> None:
        ...     client = AsyncClient(api_key="sk-...", base_url="http://127.0.0.1:8765")
        ...     request = build([{"role": "user", "content": "2**10?"}], Options(), "dashscope")
        ...     async for event in client.stream(request):
        ...         print(event)
        >>> asyncio.run(main())  # doctest: +SKIP
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http: httpx.AsyncClient | None = None
        self._openai: openai.AsyncOpenAI | None = None

    def _pool(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._httpx_timeout())
        return self._http

    def _sdk(self) -> openai.AsyncOpenAI:
        if self._openai is None:
            self._openai = openai.AsyncOpenAI(**self._openai_kwargs())
        return self._openai

    async def stream(self, request: WireRequest) -> AsyncIterator[Event]:
        """Send ``request`` and yield its events; closing the iterator closes the response."""
        self._check_protocol(request)
        attempt = 0
        while True:
            parser = self._parser(request)
            try:
                async for event in self._attempt(request, parser):
                    yield event
                return
            except _CAUGHT as exc:
                err = self._convert(exc, parser)
                delay = self._retry_delay(err, parser, attempt)
                if delay is None:
                    raise err from (None if err is exc else exc)
            self._log_retry(err, attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, request: WireRequest, parser: Parser) -> AsyncIterator[Event]:
        decoder = SSEDecoder()
        if self.protocol == "openai":
            create = self._sdk().chat.completions.with_streaming_response.create
            async with create(**self._compat_args(request)) as response:
                if isinstance(parser, OpenAICompatParser):
                    parser.use_request_id(response.headers.get("x-request-id"))
                async for chunk in response.iter_bytes():
                    for sse in decoder.feed(chunk):
                        for event in parser.feed(sse):
                            yield event
                for event in _finish(decoder, parser):
                    yield event
            return
        body = json.dumps(request.body, ensure_ascii=False).encode()
        headers = {**self._headers, **request.headers}
        url = self.base_url + request.path
        async with self._pool().stream("POST", url, content=body, headers=headers) as response:
            if response.status_code >= 400 or _is_json(response):
                await response.aread()
                raise self._http_error(response.status_code, response.content, response.headers)
            async for chunk in response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    for event in parser.feed(sse):
                        yield event
            for event in _finish(decoder, parser):
                yield event

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._openai is not None:
            await self._openai.close()
            self._openai = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
