"""Settings of ``qwen-ci serve``: the upstream, the server's front door, the sandbox.

Plain data with no server dependency, so that the command line reads its defaults from
here (one definition per setting) and a programmatic :class:`ServeConfig` is checked as
strictly as the command line's options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qwen_ci_server.emulator.config import HEADER_TIMEOUT, MAX_CONNECTIONS
from qwen_ci_server.emulator.engine import MAX_RUNS
from qwen_ci_server.sandbox.isolation import IsolationChoice
from qwen_ci_server.sandbox.limits import POOL_SIZE, Limits

TOOL_NAME = "code_interpreter"
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Run Python code in a stateful Jupyter kernel and return what it printed "
            "(stdout, stderr), the value of the last expression and any error."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "The Python code to run."}
            },
            "required": ["code"],
        },
    },
}
INSTRUCTIONS = (
    "You can run Python with the code_interpreter tool. Use it for every calculation, "
    "data processing or check that code can do, instead of computing in your head; pass "
    "a complete program in `code`. The code runs in a stateful Jupyter kernel: variables, "
    "imports and files persist between calls while you answer this message. You get "
    "back stdout, stderr, the value of the last expression and any error. The sandbox "
    "has no network access. Never ask the user to run code: run it, read the output, "
    "fix the code if it failed, and base your answer on the real output."
)


def chat_completions_url(base_url: str) -> str:
    """``{base_url}/chat/completions``; a bare host gets ``/v1`` (vLLM, Ollama, LM Studio,
    llama.cpp all serve there), a pasted full endpoint is kept."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream base URL {base_url!r} is not an http(s) URL, for "
                         "example http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path + "/chat/completions", parts.query, ""))


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (for logs and banners)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the model runs: an OpenAI-compatible ``/chat/completions`` endpoint.

    The API key never appears in the repr, in logs or in error messages.

    Example:
        >>> config = UpstreamConfig("http://127.0.0.1:11434/v1", "qwen3:8b", api_key="sk-x")
        >>> config.url
        'http://127.0.0.1:11434/v1/chat/completions'
        >>> "sk-x" in repr(config)
        False
    """

    base_url: str
    """The OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """The upstream's model name."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer``; None for servers without auth."""
    timeout: float = 600.0
    """Seconds to wait for the next byte from the upstream."""
    connect_timeout: float = 10.0
    max_retries: int = 0
    """Retries of an upstream call before its first byte (connection errors, and the
    statuses of :data:`qwen_ci.retry.RETRY_STATUSES`). None by default: this server's own
    clients retry, and retrying here too multiplies their waits."""
    retry_backoff: float = 0.5
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """Merged into every request body (e.g. ``{"chat_template_kwargs": {...}}``)."""
    echo_reasoning: bool = True
    """Send a round's reasoning back with its tool call, in the field the upstream used
    (interleaved-thinking models need it)."""
    include_usage: bool = True
    """Ask for ``stream_options.include_usage``."""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("the upstream model name is empty")
        chat_completions_url(self.base_url)

    @property
    def url(self) -> str:
        """The chat completions endpoint."""
        return chat_completions_url(self.base_url)


@dataclass
class ServeConfig:
    """Settings of a self-hosted server (``qwen-ci serve``).

    Example:
        >>> upstream = UpstreamConfig("http://127.0.0.1:8000/v1", "Qwen/Qwen3-8B")
        >>> ServeConfig(upstream, max_rounds=4, max_concurrency=16).max_rounds
        4
    """

    upstream: UpstreamConfig
    api_key: str | None = field(default=None, repr=False)
    """When set, clients must send ``Authorization: Bearer <api_key>``."""
    max_rounds: int = MAX_RUNS
    """Code runs per request at most; then the model is asked to answer."""
    max_concurrency: int = 8
    """Requests served at once; more wait in the queue."""
    max_queue: int = 32
    """Requests waiting for a slot; beyond it, 429 ``Throttling``."""
    queue_timeout: float = 60.0
    """Seconds a request waits in the queue before 429 ``Throttling``."""
    max_body_bytes: int = 8 << 20
    """Largest request body; a larger one gets 400 (413 for an announced length)."""
    max_buffered_bytes: int = 64 << 20
    """Bytes of request bodies held at once, all requests together; beyond, 429."""
    body_timeout: float = 30.0
    """Seconds a client has to send its whole body; then 408."""
    header_timeout: float = HEADER_TIMEOUT
    """Seconds a connection has to send a request's headers; then it is closed."""
    max_connections: int = MAX_CONNECTIONS
    """Open connections at most; a new one beyond gets 503 and is closed."""
    request_timeout: float = 600.0
    """Seconds a request may run (all rounds and code runs); then it ends with an error
    and its sandbox is killed."""
    public_health: bool = False
    """``/health`` details (model, sandbox, load) for anyone; by default only for
    clients with the key (others get ``{"status": "ok"}``)."""
    pool_size: int = POOL_SIZE
    """Warm sandbox kernels."""
    limits: Limits = field(default_factory=Limits)
    isolation: IsolationChoice = "auto"
    graceful_timeout: int = 30
    """On shutdown, seconds in-flight requests get to finish before they are cancelled."""
    instructions: str = INSTRUCTIONS
    """The system instruction on how to use the tool."""
    log_content: bool = False
    """Log request bodies sent upstream (prompts, code) at debug level."""

    def __post_init__(self) -> None:
        for name, low in _AT_LEAST.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, not {getattr(self, name)}")
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError("max_buffered_bytes must be at least max_body_bytes")
        if self.max_connections < self.max_concurrency + self.max_queue:
            raise ValueError("max_connections must be at least max_concurrency + max_queue")


_AT_LEAST = {"max_rounds": 1, "max_concurrency": 1, "max_queue": 0, "pool_size": 0,
             "graceful_timeout": 0}
_POSITIVE = ("queue_timeout", "max_body_bytes", "body_timeout", "header_timeout",
             "request_timeout")


def serve_defaults() -> dict[str, Any]:
    """The default of every :class:`ServeConfig` and :class:`UpstreamConfig` setting
    (the command line's defaults).

    Example:
        >>> serve_defaults()["max_rounds"], serve_defaults()["upstream.max_retries"]
        (8, 0)
    """
    upstream = UpstreamConfig("http://127.0.0.1/v1", "m")
    config = ServeConfig(upstream)
    values = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "upstream"}
    values.update({f"upstream.{f.name}": getattr(upstream, f.name) for f in fields(upstream)})
    return values
