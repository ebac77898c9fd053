"""What a framework model instance needs from the core: options per call, pools per model.

A framework model (LangChain or LlamaIndex, pydantic, mutable, copied with
``model_copy(update=...)``) asks the core for two things on every call:

- :func:`call_options`: the :class:`~qwen_ci.request.Options` of this call, built from
  the model's fields (:data:`~qwen_ci.request.SERVICE_OPTIONS`) and the call's arguments.
  Nothing about them is cached, so a copy with another temperature just works.
- :func:`session_for`: the :class:`Session` (connection pools) of this model instance,
  cached on the transport settings only (:data:`TRANSPORT_FIELDS` and the key).
  Instances with the same settings, copies included, share one (as langchain-openai's
  instances share their default httpx client); when an instance's transport settings
  change it moves to another; a session no live instance uses is closed as soon as its
  streams are done.

An async pool belongs to one event loop: it is closed when its loop shuts down
(``asyncio.run`` ends, or anything else calling ``loop.shutdown_asyncgens()``), so a
worker running ``asyncio.run`` per job on one model keeps nothing per job. Instances given
the same ``http_client`` / ``http_async_client`` share that pool; it is never closed here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from qwen_ci.client import DEFAULT_MAX_RETRIES, AsyncClient, Client
from qwen_ci.config import BASE_URL_ENV
from qwen_ci.errors import InvalidRequestError
from qwen_ci.events import Event
from qwen_ci.request import SERVICE_OPTIONS, Options, WireRequest, check_no_tools, deep_merge

#: settings of a framework model that shape its connection pool (same names in both
#: adapters; the API key is passed on its own)
TRANSPORT_FIELDS = (
    "base_url",
    "region",
    "timeout",
    "max_retries",
    "default_headers",
    "http_client",
    "http_async_client",
)

#: per-call arguments a framework call may pass
CALL_OPTIONS = frozenset({"model", *SERVICE_OPTIONS})


def call_options(
    model: str, fields: Mapping[str, Any], call: Mapping[str, Any] | None = None
) -> Options:
    """The options of one call: the model's ``fields`` with the ``call`` arguments over them.

    ``fields`` holds the model's :data:`~qwen_ci.request.SERVICE_OPTIONS` values by name.
    Unknown or function-calling arguments raise :class:`InvalidRequestError`; a per-call
    ``extra_body`` is deep-merged over the model's.

    Example:
        >>> opts = call_options("qwen3-max", {"temperature": 0.1}, {"temperature": 0.7})
        >>> (opts.model, opts.temperature)
        ('qwen3-max', 0.7)
    """
    call = dict(call or {})
    check_no_tools(call, "the call arguments")
    unknown = sorted(set(call) - CALL_OPTIONS)
    if unknown:
        raise InvalidRequestError(
            f"Unsupported argument(s) {', '.join(map(repr, unknown))}; per-call options "
            f"are {', '.join(sorted(CALL_OPTIONS))}. Pass other service parameters "
            "through extra_body."
        )
    values: dict[str, Any] = {name: fields.get(name) for name in SERVICE_OPTIONS}
    values["model"] = model
    for name, value in call.items():
        if value is None:
            continue
        if name == "extra_body":
            value = deep_merge(values["extra_body"] or {}, value)
        values[name] = value
    return Options(**values)


class Session:
    """The connection pools of the model instances with one set of transport settings:
    one sync client, and one async client per event loop (an ``httpx.AsyncClient`` must
    not be shared between loops), closed when that loop shuts down. ``http_client`` /
    ``http_async_client`` replace the pools and stay the caller's (the async one is then
    used on every loop).

    Example:
        >>> from qwen_ci.request import build
        >>> session = Session(api_key="sk-...", base_url="http://127.0.0.1:8765")
        >>> request = build([{"role": "user", "content": "2**10?"}], Options(), "dashscope")
        >>> events = session.stream(request)  # sends on the first next()
        >>> session.close()
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        http_async_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http_client = http_client
        self._http_async_client = http_async_client
        self._client_args: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "region": region,
            "timeout": timeout,
            "max_retries": max_retries,
            "default_headers": default_headers,
        }
        self._client: Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        # per loop, a started async generator whose ``finally`` closes that loop's pool:
        # loop.shutdown_asyncgens() (asyncio.run does it) runs it while the loop still runs
        self._guards: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()
        # reentrant: a garbage-collection pass may retire a session (the finalizer of its
        # dropped model) on a thread that is inside this session's lock
        self._lock = threading.RLock()
        self._active = 0
        self._retired = False
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Session(base_url={self._client_args['base_url']!r}, retired={self._retired})"

    def client(self) -> Client:
        """The sync client (created on first use; raises if the key is missing)."""
        with self._lock:
            if self._client is None:
                self._client = Client(http_client=self._http_client, **self._client_args)
            return self._client

    def aclient(self) -> AsyncClient:
        """The async client of the running event loop (closed when the loop shuts down)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is not None:
                return client
            for other in [other for other in self._aclients if other.is_closed()]:
                # closed without shutdown_asyncgens(): nothing can close these pools
                # cleanly any more; dropping them lets the sockets be collected
                self._aclients.pop(other, None)
                self._guards.pop(other, None)
            client = AsyncClient(http_client=self._http_async_client, **self._client_args)
            guard = self._guard(loop, client)
            self._aclients[loop] = client
            self._guards[loop] = guard
        _start(guard)
        return client

    async def _guard(
        self, loop: asyncio.AbstractEventLoop, client: AsyncClient
    ) -> AsyncGenerator[None, None]:
        """Suspended until its loop shuts down (or the pool is closed early), then
        closes ``client`` on that loop."""
        try:
            yield
        finally:
            with self._lock:
                if self._aclients.get(loop) is client:
                    del self._aclients[loop]
                self._guards.pop(loop, None)
            await client.aclose()

    def stream(self, request: WireRequest) -> Iterator[Event]:
        """Stream ``request``'s events on the sync pool."""
        client = self.client()  # a missing key raises here, before iteration
        return self._tracked(client, request)

    def astream(self, request: WireRequest) -> AsyncIterator[Event]:
        """Stream ``request``'s events on this event loop's pool."""
        client = self.aclient()
        return self._atracked(client, request)

    def _tracked(self, client: Client, request: WireRequest) -> Iterator[Event]:
        self._enter()
        try:
            yield from client.stream(request)
        finally:
            if self._leave():
                self.close()
                client.close()  # if retired before this stream began, it reopened a pool

    async def _atracked(self, client: AsyncClient, request: WireRequest) -> AsyncIterator[Event]:
        self._enter()
        try:
            async for event in client.stream(request):
                yield event
        finally:
            if self._leave():
                await self.aclose()
                await client.aclose()
                self._close_async_pools()  # other loops' pools, on their loops

    def _enter(self) -> None:
        with self._lock:
            self._active += 1

    def _leave(self) -> bool:
        """True when this was the last stream of a retired session."""
        with self._lock:
            self._active -= 1
            return self._retired and self._active == 0

    @property
    def closed(self) -> bool:
        """True when none of the session's pools is open."""
        return (self._client is None or self._client.closed) and all(
            c.closed for c in list(self._aclients.values())
        )

    def retire(self) -> None:
        """The model no longer uses this session: close it now, or after its last stream.

        Safe inside a garbage-collection pass on a thread already inside this session
        (its lock is reentrant).
        """
        with self._lock:
            self._retired = True
            busy = self._active > 0
        if busy:
            return
        self.close()
        self._close_async_pools()

    def close(self) -> None:
        """Close the sync pool (async pools close with :meth:`aclose` on their loop)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the sync pool and the running loop's async pool."""
        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
            guard = self._guards.pop(loop, None)
        if guard is not None:
            await guard.aclose()
        if client is not None:
            await client.aclose()

    def _close_async_pools(self) -> None:
        """Close every loop's async pool on its own loop: scheduled on loops that are open
        (the running one included); a loop that never runs again closes its pool when it
        shuts down."""
        with self._lock:
            guards = list(self._guards.items())
            self._guards.clear()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, guard in guards:
            if loop.is_closed():
                continue
            if loop is running:
                task = loop.create_task(guard.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            else:
                loop.call_soon_threadsafe(self._close_on_loop, guard)

    def _close_on_loop(self, guard: AsyncGenerator[None, None]) -> None:
        task = asyncio.get_running_loop().create_task(guard.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _start(guard: AsyncGenerator[None, None]) -> None:
    """Run ``guard`` to its ``yield`` without awaiting: starting it registers it with
    the running loop (the asyncgen hooks), whose shutdown_asyncgens() will close it."""
    step = guard.asend(None)
    try:
        step.send(None)
    except StopIteration:
        return
    raise RuntimeError("the pool guard did not stop at its yield")  # pragma: no cover


class _Slot:
    """The current session of one model instance and the settings it was built for."""

    __slots__ = ("key", "owner", "session")

    def __init__(self, owner: object) -> None:
        self.owner = weakref.ref(owner)
        self.key: tuple[Any, ...] | None = None
        self.session: Session | None = None


_slots: dict[int, _Slot] = {}  # model instance id -> its slot
_shared: dict[tuple[Any, ...], tuple[Session, int]] = {}  # settings -> session, owners
_slots_lock = threading.Lock()
# slots of collected models, queued by their finalizer: it may run inside any garbage-
# collection pass, on a thread holding _slots_lock (session_for allocating), so it never
# waits for the lock. Whoever holds the lock empties the queue, before its work and after
# releasing it (the finalizer empties it itself when the lock is free).
_dropped: deque[tuple[int, _Slot]] = deque()


def _forget(owner_id: int, slot: _Slot) -> None:
    _dropped.append((owner_id, slot))  # atomic; takes no lock
    if _slots_lock.acquire(blocking=False):
        _release_and_reap()


def _release_and_reap() -> None:
    """Empty the finalizers' queue (called holding ``_slots_lock``, which it releases),
    then retire the sessions no instance uses any more, outside the lock."""
    while True:
        unused = _reap()
        _slots_lock.release()
        for session in unused:
            session.retire()
        # a finalizer that found the lock taken left its slot for the holder: look again
        if not _dropped or not _slots_lock.acquire(blocking=False):
            return


def _reap() -> list[Session]:
    unused: list[Session] = []
    while _dropped:
        owner_id, slot = _dropped.popleft()
        if _slots.get(owner_id) is slot:
            del _slots[owner_id]
        unused += _unuse(slot)
    return unused


def _unuse(slot: _Slot) -> list[Session]:
    """Take ``slot`` off its session; the session if no instance uses it any more."""
    key, slot.key, slot.session = slot.key, None, None
    if key is None or key not in _shared:
        return []
    session, owners = _shared[key]
    if owners > 1:
        _shared[key] = (session, owners - 1)
        return []
    del _shared[key]
    return [session]


def session_for(owner: object, api_key: str | None, transport: Mapping[str, Any]) -> Session:
    """The session of the model instance ``owner`` for its current transport settings.

    ``transport`` holds the :data:`TRANSPORT_FIELDS` values by name. Instances with the same
    settings and key share one session (copies made with ``model_copy`` included: their
    sampling options are built per call and shared by nothing); an instance whose
    settings change moves to another, and a session no live instance uses any more is
    retired (closed once its streams are done).

    Example:
        >>> class Model:  # any object with an identity: a pydantic model, for instance
        ...     pass
        >>> model = Model()
        >>> first = session_for(model, "sk-...", {"timeout": 30.0})
        >>> first is session_for(Model(), "sk-...", {"timeout": 30.0})  # same settings
        True
        >>> first is session_for(Model(), "sk-...", {"timeout": 60.0})
        False
    """
    if not transport.get("base_url"):
        # DASHSCOPE_BASE_URL, read now: a session made while it named another server is
        # not handed to an instance made after it changed
        transport = {**transport, "base_url": os.environ.get(BASE_URL_ENV) or None}
    key = (
        hashlib.sha256(api_key.encode()).hexdigest() if api_key else None,
        repr(sorted(transport.items())),
    )
    owner_id = id(owner)
    unused: list[Session] = []
    _slots_lock.acquire()
    try:
        unused += _reap()
        slot = _slots.get(owner_id)
        if slot is not None and slot.owner() is not owner:  # an id reused (belt and braces)
            unused += _unuse(slot)
            slot = None
        if slot is None:
            slot = _slots[owner_id] = _Slot(owner)
            weakref.finalize(owner, _forget, owner_id, slot)
        if slot.session is not None and slot.key == key:
            return slot.session
        unused += _unuse(slot)
        if key in _shared:
            session, owners = _shared[key]
        else:
            get = transport.get
            session, owners = Session(
                api_key=api_key,
                base_url=get("base_url"),
                region=get("region"),
                timeout=get("timeout"),
                max_retries=get("max_retries", DEFAULT_MAX_RETRIES),
                default_headers=get("default_headers"),
                http_client=get("http_client"),
                http_async_client=get("http_async_client"),
            ), 0
        _shared[key] = (session, owners + 1)
        slot.key, slot.session = key, session
        return session
    finally:
        _release_and_reap()
        for replaced in unused:
            replaced.retire()
