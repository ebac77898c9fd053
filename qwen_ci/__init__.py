"""Framework-free core for Qwen's hosted code interpreter (DashScope).

Build a request with :func:`build`, send it with :class:`Client` or
:class:`AsyncClient`, and read the normalized events (:mod:`qwen_ci.events`), or
aggregate them with :func:`collect`.
"""

from qwen_ci.client import AsyncClient, Client
from qwen_ci.config import DEFAULT_MODEL, ModelInfo, model_info, resolve_base_url
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
from qwen_ci.request import Options, WireRequest, build
from qwen_ci.result import Accumulator, Result, acollect, collect

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Accumulator",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "CodeRun",
    "CodeStart",
    "Event",
    "Finish",
    "IncompleteStreamError",
    "InvalidRequestError",
    "ModelInfo",
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
    "WireRequest",
    "acollect",
    "build",
    "collect",
    "model_info",
    "resolve_base_url",
]
