"""Framework-free core for Qwen's hosted code interpreter (DashScope).

Build a request with :func:`build`, send it with :class:`Client` or
:class:`AsyncClient`, and read the normalized events, or aggregate them with
:func:`collect`. The names below are the public surface; the plumbing (parsers,
sessions, the model table, the retry policy) stays importable from its submodule
(``qwen_ci.config``, ``qwen_ci.session``, ``qwen_ci.retry``, ...).

Example:
    >>> from qwen_ci import Client, Options, build
    >>> request = build([{"role": "user", "content": "2**100?"}], Options(), "dashscope")
    >>> request.body["parameters"]["enable_code_interpreter"]
    True
"""

from typing import TYPE_CHECKING, Any

from qwen_ci.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    IncompleteStreamError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    QwenCIError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    StreamError,
)
from qwen_ci.events import (
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    SearchInfo,
    TextDelta,
    ToolRun,
    ToolStart,
    Usage,
)
from qwen_ci.request import Options, build
from qwen_ci.result import Result, acollect, collect
from qwen_ci.version import __version__

if TYPE_CHECKING:
    from qwen_ci.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    """The clients load ``httpx`` on first use, so that ``import qwen_ci`` (and the
    ``qwen-ci`` command's start-up) does not pay for it."""
    if name in ("Client", "AsyncClient"):
        from qwen_ci import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qwen_ci' has no attribute {name!r}")

__all__ = [
    # errors
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    # send and aggregate
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    # the event stream
    "CodeRun",
    "CodeStart",
    "Event",
    "Finish",
    "IncompleteStreamError",
    "InvalidRequestError",
    "NotFoundError",
    "Options",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "QwenCIError",
    "RateLimitError",
    "ReasoningDelta",
    "Result",
    "SearchInfo",
    "ServerError",
    "ServiceUnavailableError",
    "StreamError",
    "TextDelta",
    "ToolRun",
    "ToolStart",
    "Usage",
    "__version__",
    "acollect",
    "build",
    "collect",
]
