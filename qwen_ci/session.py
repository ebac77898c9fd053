"""What a framework model instance needs from the core, in one object.

A :class:`Session` turns a model's settings plus per-call arguments into
:class:`~qwen_ci.request.Options`, and owns the model's connection pools: one sync
client, and one async client per event loop (an ``httpx.AsyncClient`` must not be shared
between loops).
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from qwen_ci.client import DEFAULT_MAX_RETRIES, AsyncClient, Client
from qwen_ci.errors import InvalidRequestError
from qwen_ci.events import Event
from qwen_ci.request import Options, WireRequest, build, check_no_tools, deep_merge

#: settings of a framework model that shape its session (same names in both adapters)
SESSION_FIELDS = (
    "base_url",
    "region",
    "protocol",
    "timeout",
    "max_retries",
    "default_headers",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "thinking_budget",
    "extra_body",
)

#: the :class:`Options` among them
OPTION_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "stop", "thinking_budget",
                 "extra_body")

#: per-call arguments a framework call may pass
CALL_OPTIONS = frozenset(
    {"model", "temperature", "top_p", "max_tokens", "seed", "stop", "thinking_budget",
     "extra_body"}
)


class Session:
    """Settings and connection pools of one model instance.

    Example:
        >>> from qwen_ci.session import Session
        >>> session = Session(api_key="sk-...", base_url="http://127.0.0.1:8765")
        >>> request = session.request([{"role": "user", "content": "2**10?"}])
        >>> request.body["parameters"]["enable_code_interpreter"]
        True
    """

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
        defaults: Options | None = None,
    ) -> None:
        self.protocol = protocol
        self.defaults = defaults or Options()
        self._client_args: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "region": region,
            "protocol": protocol,
            "timeout": timeout,
            "max_retries": max_retries,
            "default_headers": default_headers,
        }
        self._client: Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"Session(protocol={self.protocol!r}, model={self.defaults.model!r})"

    def options(self, call: Mapping[str, Any] | None = None) -> Options:
        """Merge per-call arguments over the defaults; unknown or tool arguments raise."""
        call = dict(call or {})
        check_no_tools(call, "the call arguments")
        unknown = sorted(set(call) - CALL_OPTIONS)
        if unknown:
            raise InvalidRequestError(
                f"Unsupported argument(s) {', '.join(map(repr, unknown))}; per-call options "
                f"are {', '.join(sorted(CALL_OPTIONS))}. Pass other service parameters "
                "through extra_body."
            )
        base = self.defaults
        values = {name: getattr(base, name) for name in CALL_OPTIONS}
        for name, value in call.items():
            if value is None:
                continue
            if name == "extra_body":
                value = deep_merge(base.extra_body or {}, value)
            values[name] = value
        return Options(**values)

    def request(
        self, messages: Sequence[Mapping[str, Any]], call: Mapping[str, Any] | None = None
    ) -> WireRequest:
        """Validate and build the wire request (no I/O)."""
        return build(messages, self.options(call), self.protocol)

    def client(self) -> Client:
        """The sync client (created on first use; raises if the key is missing)."""
        if self._client is None:
            self._client = Client(**self._client_args)
        return self._client

    def aclient(self) -> AsyncClient:
        """The async client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = AsyncClient(**self._client_args)
            self._aclients[loop] = client
        return client

    def stream(
        self, messages: Sequence[Mapping[str, Any]], call: Mapping[str, Any] | None = None
    ) -> Iterator[Event]:
        """Validate, then stream events (validation errors raise before any I/O)."""
        request = self.request(messages, call)
        return self.client().stream(request)

    def astream(
        self, messages: Sequence[Mapping[str, Any]], call: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Event]:
        """Async :meth:`stream`; must be called inside a running event loop."""
        request = self.request(messages, call)
        return self.aclient().stream(request)

    def close(self) -> None:
        """Close the sync pool (async pools close with their loop's garbage)."""
        if self._client is not None:
            self._client.close()
            self._client = None


class SessionCache:
    """One :class:`Session` for a model instance, rebuilt when its settings change.

    Framework models are mutable (pydantic fields, ``model_copy(update=...)``): the cache
    compares the settings on every call, which is cheap, and keeps the session (and its
    connection pools) while they stay the same.

    Example:
        >>> cache = SessionCache()
        >>> first = cache.get("qwen3-max-preview", "sk-...", {"temperature": 0.1})
        >>> first is cache.get("qwen3-max-preview", "sk-...", {"temperature": 0.1})
        True
        >>> first is cache.get("qwen3-max-preview", "sk-...", {"temperature": 0.7})
        False
    """

    __slots__ = ("_key", "_session")

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._session: Session | None = None

    def __repr__(self) -> str:
        return f"SessionCache({self._session!r})"

    def get(self, model: str, api_key: str | None, fields: Mapping[str, Any]) -> Session:
        """The session for ``model``, ``api_key`` and the :data:`SESSION_FIELDS` values."""
        key = (
            model,
            hashlib.sha256(api_key.encode()).hexdigest() if api_key else None,
            repr(sorted(fields.items())),
        )
        if self._session is None or key != self._key:
            get = fields.get
            self._session = Session(
                api_key=api_key,
                base_url=get("base_url"),
                region=get("region"),
                protocol=get("protocol") or "dashscope",
                timeout=get("timeout"),
                max_retries=get("max_retries", DEFAULT_MAX_RETRIES),
                default_headers=get("default_headers"),
                defaults=Options(
                    model=model,
                    **{name: get(name) for name in OPTION_FIELDS},
                ),
            )
            self._key = key
        return self._session
