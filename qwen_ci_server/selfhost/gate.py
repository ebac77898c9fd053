"""What stands in front of the self-hosted server: an ASGI middleware.

- the API key, checked from the headers before any byte of the body is read (401);
- a request body size limit (413), a bound on the body bytes held at once for all
  requests (429), and a body read timeout (408);
- a bound on concurrent requests, with a bounded queue; beyond it, or after waiting
  ``queue_timeout`` seconds, 429 ``Throttling`` in the protocol's shape; a client that
  leaves while queued frees its place;
- a deadline per request (``request_timeout``): then the request ends with a 504 or, once
  streaming, an error frame, and its sandbox is killed;
- ``GET /health``: ``{"status": "ok"}`` for anyone; model, sandbox and load only with the
  key (or for anyone with ``public_health``);
- one structured access log line per request (no prompts, no keys).

Connections themselves (header timeout, connection limit) are guarded below ASGI, in
:func:`qwen_ci_server.emulator.server.guarded_http`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen_ci_server.emulator.responses import error_body, late_error
from qwen_ci_server.emulator.service import COMPATIBLE_PATH, RESPONSES_PATHS
from qwen_ci_server.emulator.wire import (
    INVALID_API_KEY,
    ServiceError,
    compat_status,
    native_event,
    new_request_id,
)
from qwen_ci_server.selfhost.logs import RequestStats, bind_stats, unbind_stats

access_logger = logging.getLogger("qwen_ci_server.selfhost.access")

SERVER_PREFIX = "qwen-ci serve: "


def _throttling(why: str) -> ServiceError:
    return ServiceError(
        429, "Throttling", f"Requests throttling triggered. {SERVER_PREFIX}{why}; retry later.",
        "limit_requests", compat_type="limit_requests",
    )


def throttled(max_concurrency: int) -> ServiceError:
    """429 ``Throttling``: every slot is busy and the queue is full (or waited too long)."""
    return _throttling(f"all {max_concurrency} request slots are busy")


def too_many_bodies(limit: int) -> ServiceError:
    """429: the bodies being read for all requests already hold ``limit`` bytes."""
    return _throttling(f"request bodies of {limit} bytes are being received already")


def body_timeout(seconds: float) -> ServiceError:
    """408: the client did not send its body in time."""
    return ServiceError(
        408, "RequestTimeOut",
        f"{SERVER_PREFIX}the request body was not received within {seconds:g} s.",
        "request_timeout",
    )


def deadline_passed(seconds: float) -> ServiceError:
    """504: the request ran longer than the server allows."""
    return ServiceError(
        504, "RequestTimeOut",
        f"{SERVER_PREFIX}the request ran longer than {seconds:g} s and was stopped.",
        "request_timeout", compat_type="timeout",
    )


def bearer_matches(headers: list[tuple[bytes, bytes]], api_key: str | None) -> bool:
    """True when ``Authorization: Bearer <api_key>`` is among ``headers`` (or no key is
    required); compared in constant time."""
    if api_key is None:
        return True
    sent = b""
    for key, value in headers:
        if key.lower() == b"authorization":
            sent = value
    token = sent[7:].strip() if sent[:7].lower() == b"bearer " else b""
    return hmac.compare_digest(token, api_key.encode())


def too_large(limit: int) -> ServiceError:
    """413: the body is larger than the server accepts (the server's own error)."""
    return ServiceError(
        413, "RequestTooLarge",
        f"{SERVER_PREFIX}the request body is larger than {limit} bytes.",
        "request_too_large",
    )


@dataclass
class _Access:
    """The access log line of one request."""

    method: str
    path: str
    started: float = field(default_factory=time.monotonic)
    request_id: str | None = None
    status: int | None = None
    complete: bool = False
    outcome: str | None = None
    queue_ms: float = 0.0
    stats: RequestStats = field(default_factory=RequestStats)

    def write(self) -> None:
        outcome = self.outcome
        if outcome is None:
            if not self.complete:
                outcome = "client_disconnected"
            elif (self.status or 500) >= 400 or self.stats.error:
                outcome = "error"
            else:
                outcome = "ok"
        fields = {
            "request_id": self.request_id, "method": self.method, "path": self.path,
            "status": self.status, "outcome": outcome,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
            "queue_ms": round(self.queue_ms, 1), **self.stats.fields(),
        }
        access_logger.info("request", extra={"fields": fields})


class Gate:
    """ASGI middleware: key before body, body limits, concurrency bound with a queue,
    request deadline, /health, access log.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = Starlette()
        >>> app.add_middleware(Gate, max_concurrency=4, max_queue=8, api_key="sk-team")
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_concurrency: int = 8,
        max_queue: int = 0,
        queue_timeout: float = 60.0,
        max_body_bytes: int = 8 << 20,
        health: Callable[[], dict[str, Any]] | None = None,
        api_key: str | None = None,
        max_buffered_bytes: int = 64 << 20,
        body_timeout: float = 30.0,
        request_timeout: float = 600.0,
        public_health: bool = False,
    ) -> None:
        if max_concurrency < 1 or max_queue < 0 or max_body_bytes < 1:
            raise ValueError("max_concurrency and max_body_bytes must be >= 1, max_queue >= 0")
        if max_buffered_bytes < max_body_bytes or body_timeout <= 0 or request_timeout <= 0:
            raise ValueError("max_buffered_bytes must be >= max_body_bytes; timeouts positive")
        self.app = app
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.max_body_bytes = max_body_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout
        self.health = health
        self.api_key = api_key
        self.public_health = public_health
        self.active = 0
        self.queued = 0
        self.buffered = 0
        """Bytes of request bodies held right now (read, or read and waiting)."""
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
            await self._health(send, bearer_matches(scope.get("headers", []), self.api_key))
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        access = _Access(scope["method"], scope["path"])
        token = bind_stats(access.stats)
        try:
            await self._serve(scope, receive, send, access)
        except asyncio.CancelledError:
            access.outcome = access.outcome or "cancelled"
            raise
        except Exception:
            access.outcome = access.outcome or "error"
            raise
        finally:
            unbind_stats(token)
            access.write()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, access: _Access) -> None:
        if not bearer_matches(scope.get("headers", []), self.api_key):
            # before any byte of the body: a client without the key costs no memory
            access.outcome = "unauthorized"
            await self._error(scope, send, access, INVALID_API_KEY)
            return
        held = [0]
        try:
            body = await self._body(scope, receive, send, access, held)
            if body is None:
                return
            await self._admitted(scope, receive, send, access, body)
        finally:
            self.buffered -= held[0]

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, access: _Access, body: bytes
    ) -> None:
        queued = time.monotonic()
        admitted = await self._admit(receive)
        access.queue_ms = (time.monotonic() - queued) * 1000
        if admitted is None:
            access.outcome = "client_disconnected"
            return
        if not admitted:
            access.outcome = "throttled"
            await self._error(scope, send, access, throttled(self.max_concurrency),
                              {"retry-after": "1"})
            return
        assert self._slots is not None
        self.active += 1
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                access.status = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"x-request-id":
                        access.request_id = value.decode("latin-1")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                access.complete = True
            await send(message)

        try:
            async with asyncio.timeout(self.request_timeout):
                await self.app(scope, replay, tracked)
        except TimeoutError:
            access.outcome = "deadline"
            await self._deadline(scope, send, access)
        finally:
            self.active -= 1
            self._slots.release()

    async def _deadline(self, scope: Scope, send: Send, access: _Access) -> None:
        """End a request that passed its deadline: an error response, or an error frame
        when its stream already started."""
        error = deadline_passed(self.request_timeout)
        if access.status is None:
            await self._error(scope, send, access, error)
            return
        if access.complete:
            return
        request_id = access.request_id or new_request_id()
        if scope["path"] == COMPATIBLE_PATH:
            frame = f"data: {json.dumps(error.compat_body(request_id))}\n\n".encode()
        elif scope["path"] in RESPONSES_PATHS:
            frame = late_error(error)
        else:
            frame = native_event(error.native_body(request_id), 0, status=error.status,
                                 event="error")
        try:
            await send({"type": "http.response.body", "body": frame, "more_body": False})
        except OSError:
            return
        access.complete = True

    async def _body(
        self, scope: Scope, receive: Receive, send: Send, access: _Access, held: list[int]
    ) -> bytes | None:
        """The whole request body, or None when it was refused or the client left.

        ``held[0]`` counts the bytes this request adds to :attr:`buffered` (the caller
        gives them back)."""
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    access.outcome = "too_large"
                    await self._error(scope, send, access, too_large(self.max_body_bytes))
                    return None
        parts: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                access.outcome = "body_timeout"
                await self._error(scope, send, access, body_timeout(self.body_timeout))
                return None
            if message["type"] == "http.disconnect":
                access.outcome = "client_disconnected"
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                access.outcome = "too_large"
                await self._error(scope, send, access, too_large(self.max_body_bytes))
                return None
            if self.buffered + len(chunk) > self.max_buffered_bytes:
                access.outcome = "throttled"
                await self._error(scope, send, access,
                                  too_many_bodies(self.max_buffered_bytes), {"retry-after": "1"})
                return None
            self.buffered += len(chunk)
            held[0] += len(chunk)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _admit(self, receive: Receive) -> bool | None:
        """Take a slot: True; refused (queue full or waited too long): False; the client
        left while queued: None."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        slots = self._slots
        if not slots.locked():
            await slots.acquire()  # free: no wait
            return True
        if self.queued >= self.max_queue:
            return False
        self.queued += 1
        acquire = asyncio.ensure_future(slots.acquire())
        leave = asyncio.ensure_future(receive())
        try:
            done, _ = await asyncio.wait({acquire, leave}, timeout=self.queue_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._abandon(acquire, slots)
            leave.cancel()
            raise
        finally:
            self.queued -= 1
        gone = leave in done and leave.result().get("type") == "http.disconnect"
        if not leave.done():
            leave.cancel()
        if acquire in done and not gone:
            return True
        self._abandon(acquire, slots)
        return None if gone else False

    @staticmethod
    def _abandon(acquire: asyncio.Future[Any], slots: asyncio.Semaphore) -> None:
        if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
            slots.release()
        else:
            acquire.cancel()

    async def _error(self, scope: Scope, send: Send, access: _Access, error: ServiceError,
                     headers: dict[str, str] | None = None) -> None:
        request_id = new_request_id()
        access.request_id, access.status = request_id, None
        if scope["path"] == COMPATIBLE_PATH:
            status, body = compat_status(error), error.compat_body(request_id)
        elif scope["path"] in RESPONSES_PATHS:
            status, body = compat_status(error), error_body(error, request_id)
        else:
            status, body = error.status, error.native_body(request_id)
        access.status = status
        await _json(send, status, body, {"x-request-id": request_id, **(headers or {})})
        access.complete = True

    async def _health(self, send: Send, authorized: bool) -> None:
        info: dict[str, Any] = {"status": "ok"}
        if not (self.public_health or (self.api_key is not None and authorized)):
            await _json(send, 200, info)  # liveness only: nothing about the deployment
            return
        if self.health is not None:
            info.update(self.health())
        info.update(in_flight=self.active, queued=self.queued,
                    max_concurrency=self.max_concurrency, max_queue=self.max_queue)
        await _json(send, 200, info)


async def _json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw, "more_body": False})
