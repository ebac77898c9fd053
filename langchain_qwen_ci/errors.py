"""The core's errors as LangChain sees them: each class inherits from both families.

``except qwen_ci.RateLimitError`` and ``except langchain_core.exceptions.ModelRateLimitError``
catch the same exception, ``is_retryable`` follows the core's retry rule, and LangChain's
``with_retry(retry_if_exception_type=...)`` and ``with_fallbacks(exceptions_to_handle=...)``
can select on the LangChain classes. Errors detected locally, before any request
(:class:`qwen_ci.errors.InvalidRequestError`, a ``ValueError``), are raised unchanged.

Example:
    >>> from langchain_core.exceptions import ModelRateLimitError
    >>> from qwen_ci import errors as core
    >>> err = translate(core.RateLimitError("slow down", status=429, code="Throttling"))
    >>> isinstance(err, core.RateLimitError), isinstance(err, ModelRateLimitError)
    (True, True)
    >>> err.is_retryable, err.status
    (True, 429)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

from langchain_core.exceptions import ContextOverflowError as LCContextOverflowError
from langchain_core.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from qwen_ci import errors as core
from qwen_ci.events import Event


class APIError(core.APIError, ModelError):
    """An error reported by the service with no more specific class."""

    is_retryable = core.APIError.retryable


class BadRequestError(core.BadRequestError, ModelInvalidRequestError):
    """HTTP 400."""

    is_retryable = core.BadRequestError.retryable


class ContextOverflowError(core.BadRequestError, LCContextOverflowError,
                           ModelInvalidRequestError):
    """HTTP 400 because the input is longer than the model's context (``Range of input
    length should be [1, N]``): LangChain's ``ContextOverflowError`` and the core's
    :class:`~qwen_ci.errors.BadRequestError`, as langchain-openai does."""

    is_retryable = core.BadRequestError.retryable


class AuthenticationError(core.AuthenticationError, ModelAuthenticationError):
    """HTTP 401: the key was rejected (keys belong to one region)."""

    is_retryable = core.AuthenticationError.retryable


class PermissionDeniedError(core.PermissionDeniedError, ModelPermissionDeniedError):
    """HTTP 403."""

    is_retryable = core.PermissionDeniedError.retryable


class NotFoundError(core.NotFoundError, ModelNotFoundError):
    """HTTP 404."""

    is_retryable = core.NotFoundError.retryable


class RateLimitError(core.RateLimitError, ModelRateLimitError):
    """HTTP 429 rate limit (retryable)."""

    is_retryable = core.RateLimitError.retryable


class QuotaExceededError(core.QuotaExceededError, ModelRateLimitError):
    """HTTP 429 for an exhausted quota (waiting does not help: not retryable)."""

    is_retryable = core.QuotaExceededError.retryable


class ServerError(core.ServerError, ModelAPIError):
    """HTTP 5xx."""

    is_retryable = core.ServerError.retryable


class ServiceUnavailableError(core.ServiceUnavailableError, ModelAPIError):
    """HTTP 503."""

    is_retryable = core.ServiceUnavailableError.retryable


class APIConnectionError(core.APIConnectionError, ModelConnectionError):
    """The service could not be reached."""

    is_retryable = core.APIConnectionError.retryable


class APITimeoutError(core.APITimeoutError, ModelTimeoutError):
    """A timeout fired before output started."""

    is_retryable = core.APITimeoutError.retryable


class StreamError(core.StreamError, ModelError):
    """The stream was wrong (malformed frames)."""

    is_retryable = core.StreamError.retryable


class IncompleteStreamError(core.IncompleteStreamError, ModelError):
    """The stream broke after output had started; ``partial`` holds what arrived."""

    is_retryable = core.IncompleteStreamError.retryable


class ProtocolError(core.ProtocolError, ModelError):
    """A frame could not be parsed."""

    is_retryable = core.ProtocolError.retryable


#: core class -> the class raised by the LangChain adapter (most specific first)
_CLASSES: dict[type[core.QwenCIError], type[core.QwenCIError]] = {
    core.APIError: APIError,
    core.BadRequestError: BadRequestError,
    core.AuthenticationError: AuthenticationError,
    core.PermissionDeniedError: PermissionDeniedError,
    core.NotFoundError: NotFoundError,
    core.RateLimitError: RateLimitError,
    core.QuotaExceededError: QuotaExceededError,
    core.ServerError: ServerError,
    core.ServiceUnavailableError: ServiceUnavailableError,
    core.APIConnectionError: APIConnectionError,
    core.APITimeoutError: APITimeoutError,
    core.StreamError: StreamError,
    core.IncompleteStreamError: IncompleteStreamError,
    core.ProtocolError: ProtocolError,
}


#: the service's (and compatible servers') words for an input longer than the context
_OVERFLOW = re.compile(
    r"Range of input length should be|input length \d+ exceeds|maximum context length|"
    r"context length exceeded|context_length_exceeded|prompt is too long",
    re.IGNORECASE,
)


def translate(exc: core.QwenCIError) -> core.QwenCIError:
    """``exc`` as the class that also inherits LangChain's; other errors unchanged."""
    cls = _CLASSES.get(type(exc))
    if cls is BadRequestError and _OVERFLOW.search(exc.message):
        cls = ContextOverflowError
    if cls is None:
        return exc
    out = cls(exc.message, status=exc.status, code=exc.code, request_id=exc.request_id,
              hint=exc.hint)
    out.partial = exc.partial
    out.retry_after = exc.retry_after
    return out


def translated(events: Iterator[Event]) -> Iterator[Event]:
    """``events``, raising the core's errors as :func:`translate` does."""
    try:
        yield from events
    except core.QwenCIError as exc:
        raise translate(exc) from exc


async def atranslated(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """Async :func:`translated`."""
    try:
        async for event in events:
            yield event
    except core.QwenCIError as exc:
        raise translate(exc) from exc
