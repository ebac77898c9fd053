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

from qwen_ci.client import AsyncClient, Client
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
    Usage,
)
from qwen_ci.request import Options, build
from qwen_ci.result import Result, acollect, collect
from qwen_ci.version import __version__

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
    "Usage",
    "__version__",
    "acollect",
    "build",
    "collect",
]
