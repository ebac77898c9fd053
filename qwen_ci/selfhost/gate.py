"""What stands in front of the self-hosted server: an ASGI middleware.

- a request body size limit (413);
- a bound on concurrent requests, with a bounded queue; beyond it, or after waiting
  ``queue_timeout`` seconds, 429 ``Throttling`` in the protocol's shape; a client that
  leaves while queued frees its place;
- ``GET /health``: status, model, sandbox and load;
- one structured access log line per request (no prompts, no keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen_ci.config import COMPATIBLE_PATH
from qwen_ci.emulator.wire import ServiceError, compat_status, new_request_id
from qwen_ci.selfhost.logs import RequestStats, bind_stats, unbind_stats

access_logger = logging.getLogger("qwen_ci.selfhost.access")

SERVER_PREFIX = "qwen-ci serve: "


def throttled(max_concurrency: int) -> ServiceError:
    """429 ``Throttling``: every slot is busy and the queue is full (or waited too long)."""
    return ServiceError(
        429, "Throttling",
        f"Requests throttling triggered. {SERVER_PREFIX}all {max_concurrency} request slots "
        "are busy; retry later.",
        "limit_requests", compat_type="limit_requests",
    )


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
    """ASGI middleware: body limit, concurrency bound with a queue, /health, access log.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = Starlette()
        >>> app.add_middleware(Gate, max_concurrency=4, max_queue=8)
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
    ) -> None:
        if max_concurrency < 1 or max_queue < 0 or max_body_bytes < 1:
            raise ValueError("max_concurrency and max_body_bytes must be >= 1, max_queue >= 0")
        self.app = app
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.max_body_bytes = max_body_bytes
        self.health = health
        self.active = 0
        self.queued = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
            await self._health(send)
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
        body = await self._body(scope, receive, send, access)
        if body is None:
            return
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
            await self.app(scope, replay, tracked)
        finally:
            self.active -= 1
            self._slots.release()

    async def _body(
        self, scope: Scope, receive: Receive, send: Send, access: _Access
    ) -> bytes | None:
        """The whole request body, or None when it was refused or the client left."""
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
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                access.outcome = "client_disconnected"
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                access.outcome = "too_large"
                await self._error(scope, send, access, too_large(self.max_body_bytes))
                return None
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
        else:
            status, body = error.status, error.native_body(request_id)
        access.status = status
        await _json(send, status, body, {"x-request-id": request_id, **(headers or {})})
        access.complete = True

    async def _health(self, send: Send) -> None:
        info: dict[str, Any] = {"status": "ok"}
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
