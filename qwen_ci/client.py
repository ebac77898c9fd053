"""Sync and async clients: open a stream, yield normalized events.

Each client owns one connection pool (``httpx``), reused across calls, for both
protocols: the request says which protocol it speaks (:attr:`WireRequest.protocol`).
Retries (:mod:`qwen_ci.retry`: exponential backoff, honouring ``Retry-After``) happen
only for connection errors, 429 rate limits and 5xx, and only before the first frame of
output: a retry after output started would bill twice and run the code twice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from qwen_ci.config import (
    API_KEY_ENV,
    MODELS,
    Protocol,
    closest_models,
    is_loopback,
    region_of,
    resolve_base_url,
)
from qwen_ci.errors import (
    APIConnectionError,
    APIError,
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
from qwen_ci.protocols.responses import ResponsesParser
from qwen_ci.protocols.sse import SSEDecoder
from qwen_ci.request import WireRequest
from qwen_ci.retry import RetryPolicy, retry_after
from qwen_ci.version import __version__

logger = logging.getLogger("qwen_ci")


def _missing_key(base_url: str | None, region: str | None) -> str:
    """What to do without a key; at a local server, that any key may do."""
    try:
        root = resolve_base_url(base_url, region)
    except InvalidRequestError:
        root = None
    if is_loopback(root):
        return (
            f"No API key. {root} is a local server: an emulator started without a key "
            "(--api-key-env / --api-key-file) accepts any key, so pass api_key='sk-local' "
            f"(or set {API_KEY_ENV}); a server started with one wants that key."
        )
    return (
        f"No DashScope API key: set the {API_KEY_ENV} environment variable or pass "
        "api_key='sk-...' (keys are created per region in the Model Studio console). To "
        "try it offline, start `qwen-ci emulator` and pass both "
        "base_url='http://127.0.0.1:8765' and api_key='sk-local'."
    )


def _auth_hint(base_url: str) -> str:
    """A rejected key: region advice for the service's hosts, server advice elsewhere."""
    region = region_of(base_url)
    if region is not None:
        return (
            f"The key was rejected by {base_url} (region {region}). DashScope API keys "
            "belong to one region: a key from another region is rejected the same way. Use "
            "the key of this region, or pass the region/base_url your key belongs to."
        )
    if is_loopback(base_url):
        return (
            f"The key was rejected by the local server at {base_url}: it was started with "
            "--api-key-env or --api-key-file (qwen-ci emulator / qwen-ci serve); pass that "
            "key, or restart it without them to accept any key."
        )
    return (
        f"The key was rejected by {base_url}, which is not a DashScope region host: pass "
        "the key this server expects."
    )

def _model_hint(err: QwenCIError, model: str) -> None:
    """A mistyped model name: add the closest known names to the service's bare message."""
    unknown = err.message == "Model not exist." or err.code in ("ModelNotFound",
                                                                 "model_not_found")
    if not unknown or err.hint is not None or not isinstance(err, APIError):
        return
    close = [name for name in closest_models(model) if name != model]
    if model in MODELS:  # a real name this server (or the key's region) does not serve
        err.hint = (f"Model {model!r} is not served here (check the region of your key); "
                    f"other models with the code interpreter: {', '.join(close or MODELS)}.")
    elif close:
        err.hint = f"Model {model!r} is unknown; did you mean {' or '.join(map(repr, close))}?"
    else:
        err.hint = (f"Model {model!r} is unknown to this server; models with the code "
                    f"interpreter include {', '.join(MODELS)}.")
    err.args = (err._render(),)


def _timeout_message(exc: httpx.TimeoutException, timeout: float, connect: float) -> str:
    """Which limit ran out, after how many seconds, and how to raise it."""
    if isinstance(exc, httpx.ConnectTimeout):
        return (f"no connection within {connect:g} s (the connect timeout: timeout=, capped "
                "at 10 s); check the address and network")
    what = "write" if isinstance(exc, httpx.WriteTimeout) else (
        "pool" if isinstance(exc, httpx.PoolTimeout) else "read")
    advice = "a code run is silent on the wire, " if what == "read" else ""
    return (f"no data for {timeout:g} s (the {what} timeout); {advice}raise it with "
            f"timeout=<seconds> (default {DEFAULT_TIMEOUT:g})")


DEFAULT_TIMEOUT = 300.0
"""Seconds to wait for a byte (code runs are silent on the wire) and, capped at 10 s,
to connect."""
DEFAULT_MAX_RETRIES = 2
_USER_AGENT = f"qwen-code-interpreter/{__version__}"

Parser = DashScopeParser | OpenAICompatParser | ResponsesParser


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every pool of our own: httpx otherwise builds one per client,
    loading the CA bundle again each time (a new event loop or model copy would pay it)."""
    return httpx.create_ssl_context()


class _Base:
    """Configuration shared by the sync and async clients."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        if not api_key:
            raise InvalidRequestError(_missing_key(base_url, region))
        if max_retries < 0:
            raise InvalidRequestError(f"max_retries={max_retries} must be >= 0.")
        if timeout is not None and timeout <= 0:
            raise InvalidRequestError(f"timeout={timeout} must be a positive number of seconds.")
        self.base_url = resolve_base_url(base_url, region)
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.max_retries = max_retries
        self.retry = RetryPolicy(max_retries, backoff=backoff, max_backoff=max_backoff)
        common = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": _USER_AGENT,
        }
        custom = dict(default_headers or {})
        self._headers: dict[Protocol, dict[str, str]] = {
            "dashscope": {**common, "X-DashScope-SSE": "enable", **custom},
            "openai": {**common, **custom},
            "responses": {**common, **custom},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def _send_args(self, request: WireRequest) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": self.base_url + request.path,
            "content": json.dumps(request.body, ensure_ascii=False).encode(),
            "headers": self._headers[request.protocol],
            "timeout": self._httpx_timeout(),  # also on an http_client passed in
        }

    @staticmethod
    def _parser(request: WireRequest) -> Parser:
        if request.protocol == "openai":
            return OpenAICompatParser(request.model)
        if request.protocol == "responses":
            return ResponsesParser(request.model)
        return DashScopeParser(request.model)

    def _http_error(self, response: httpx.Response) -> QwenCIError:
        err = decode_error_body(
            response.content, response.status_code, response.headers.get("x-request-id")
        )
        err.retry_after = retry_after(response.headers)
        return self._annotate(err)

    def _annotate(self, err: QwenCIError) -> QwenCIError:
        if isinstance(err, AuthenticationError) and err.hint is None:
            err.hint = _auth_hint(self.base_url)
            err.args = (err._render(),)
        return err

    def _convert(self, exc: BaseException, parser: Parser) -> QwenCIError:
        """Translate transport exceptions; a break after output started is incomplete."""
        if isinstance(exc, QwenCIError):
            return self._annotate(exc)
        timeout = isinstance(exc, httpx.TimeoutException)
        limit = (_timeout_message(exc, self.timeout, min(self.timeout, 10.0))
                 if isinstance(exc, httpx.TimeoutException) else "")
        if parser.started:
            cls: type[QwenCIError] = IncompleteStreamError
            what = f"timed out ({limit})" if timeout else f"broke ({type(exc).__name__}: {exc})"
            message = f"The connection {what} after output had started; the answer is incomplete."
        else:
            cls = APITimeoutError if timeout else APIConnectionError
            what = "Timed out" if timeout else f"Could not connect ({type(exc).__name__}: {exc})"
            message = f"{what} talking to {self.base_url}" + (f": {limit}." if timeout else ".")
        return cls(message, request_id=parser.request_id)

    def _retry_delay(self, err: QwenCIError, parser: Parser, attempt: int) -> float | None:
        """Seconds to wait before another attempt, or None to give up."""
        if parser.started or not err.retryable:
            return None
        return self.retry.delay(attempt, err.retry_after)

    def _log_retry(self, err: QwenCIError, attempt: int, delay: float) -> None:
        # INFO: a library's retries stay quiet unless the application configures logging
        logger.info(
            "qwen_ci: attempt %d failed (%s); retrying in %.2fs", attempt + 1, err, delay
        )


def _opened(response: httpx.Response, parser: Parser) -> bool:
    """True when the response is a stream (else the caller reads it as an error)."""
    if response.status_code >= 400 or _is_json(response):
        return False
    if isinstance(parser, OpenAICompatParser | ResponsesParser):
        parser.use_request_id(response.headers.get("x-request-id"))
    return True


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


def _check_http_client(value: object, expected: type, name: str) -> None:
    if value is not None and not isinstance(value, expected):
        raise InvalidRequestError(
            f"{name} must be an httpx.{expected.__name__}, not {type(value).__name__}: sync "
            "calls take an httpx.Client (http_client), async calls an httpx.AsyncClient "
            "(http_async_client on a Session or a framework model)."
        )


class Client(_Base):
    """Synchronous client with its own connection pool, for both protocols.

    ``http_client`` (an ``httpx.Client``: proxies, mTLS, a custom CA, a test transport)
    is used for every request instead of a pool of the client's own; it stays yours to
    close, and several clients may share it.

    Example:
        >>> from qwen_ci import Client, Options, build
        >>> client = Client(api_key="sk-...", base_url="http://127.0.0.1:8765")
        >>> request = build([{"role": "user", "content": "123**21?"}], Options(), "dashscope")
        >>> for event in client.stream(request):  # doctest: +SKIP
        ...     print(event)
    """

    def __init__(self, *, http_client: httpx.Client | None = None, **kwargs: Any) -> None:
        _check_http_client(http_client, httpx.Client, "http_client")
        super().__init__(**kwargs)
        self._given = http_client
        self._http: httpx.Client | None = None

    def _pool(self) -> httpx.Client:
        if self._given is not None:
            return self._given
        if self._http is None:
            self._http = httpx.Client(timeout=self._httpx_timeout(), verify=_tls())
        return self._http

    def stream(self, request: WireRequest) -> Iterator[Event]:
        """Send ``request`` and yield its events; closing the iterator closes the response."""
        attempt = 0
        while True:
            parser = self._parser(request)
            try:
                yield from self._attempt(request, parser)
                return
            except (QwenCIError, httpx.HTTPError) as exc:
                err = self._convert(exc, parser)
                _model_hint(err, request.model)
                delay = self._retry_delay(err, parser, attempt)
                if delay is None:
                    raise err from (None if err is exc else exc)
            self._log_retry(err, attempt, delay)
            time.sleep(delay)
            attempt += 1

    def _attempt(self, request: WireRequest, parser: Parser) -> Iterator[Event]:
        decoder = SSEDecoder()
        with self._pool().stream(**self._send_args(request)) as response:
            if not _opened(response, parser):
                response.read()
                raise self._http_error(response)
            for chunk in response.iter_bytes():
                for sse in decoder.feed(chunk):
                    yield from parser.feed(sse)
            yield from _finish(decoder, parser)

    @property
    def closed(self) -> bool:
        """True when no connection pool of the client's own is open (an ``http_client``
        passed in is never closed here)."""
        return self._http is None or self._http.is_closed

    def close(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """Asynchronous client with its own connection pool (bound to one event loop).

    ``http_client`` (an ``httpx.AsyncClient``) is used for every request instead; it
    stays yours to close.

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

    def __init__(self, *, http_client: httpx.AsyncClient | None = None, **kwargs: Any) -> None:
        _check_http_client(http_client, httpx.AsyncClient, "http_client")
        super().__init__(**kwargs)
        self._given = http_client
        self._http: httpx.AsyncClient | None = None

    def _pool(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._httpx_timeout(), verify=_tls())
        return self._http

    async def stream(self, request: WireRequest) -> AsyncIterator[Event]:
        """Send ``request`` and yield its events; closing the iterator closes the response."""
        attempt = 0
        while True:
            parser = self._parser(request)
            try:
                async for event in self._attempt(request, parser):
                    yield event
                return
            except (QwenCIError, httpx.HTTPError) as exc:
                err = self._convert(exc, parser)
                _model_hint(err, request.model)
                delay = self._retry_delay(err, parser, attempt)
                if delay is None:
                    raise err from (None if err is exc else exc)
            self._log_retry(err, attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, request: WireRequest, parser: Parser) -> AsyncIterator[Event]:
        decoder = SSEDecoder()
        async with self._pool().stream(**self._send_args(request)) as response:
            if not _opened(response, parser):
                await response.aread()
                raise self._http_error(response)
            async for chunk in response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    for event in parser.feed(sse):
                        yield event
            for event in _finish(decoder, parser):
                yield event

    @property
    def closed(self) -> bool:
        """True when no connection pool of the client's own is open (an ``http_client``
        passed in is never closed here)."""
        return self._http is None or self._http.is_closed

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
