"""Running the emulator: in a background thread (tests, demos) or in the foreground.

The connections are guarded below ASGI (:func:`guarded_http`): a client gets
``header_timeout`` seconds to send a request's headers (slowloris), and beyond
``max_connections`` open connections a new one is answered 503 and closed at once, so
idle connections cannot exhaust the server's file descriptors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import resource
import socket
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from qwen_ci_server.emulator.app import create_app
from qwen_ci_server.emulator.config import EmulatorConfig
from qwen_ci_server.emulator.model import Model
from qwen_ci_server.sandbox import KernelPool, Limits, detect_isolation
from qwen_ci_server.sandbox.isolation import IsolationChoice

T = TypeVar("T")
_DEFAULTS = EmulatorConfig()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free port); connections queue until the
    server starts accepting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.1``, ``::1``,
    ``localhost``).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refusal(limit: int) -> bytes:
    body = json.dumps({
        "code": "Throttling", "request_id": "",
        "message": f"Requests throttling triggered. The server already has {limit} open "
                   "connections; retry later.",
    }).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
    return head.encode() + body


_HTTP: Any = AutoHTTPProtocol


class _GuardedHTTP(_HTTP):  # type: ignore[misc]
    """uvicorn's HTTP protocol with a header timeout and a connection limit (the two
    class attributes, set by :func:`guarded_http`)."""

    header_timeout: float
    max_connections: int
    _waiting_since: float | None = None
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        if len(self.server_state.connections) >= self.max_connections and not self._evict():
            transport.write(_refusal(self.max_connections))
            transport.close()
            return
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._schedule()

    def _evict(self) -> bool:
        """Make room by closing the connection idle the longest (no request in progress:
        it sent no headers yet, or waits between requests); False when every connection
        is serving a request. Idle sockets reopened as fast as they are closed thus
        cannot keep real clients out: they only push each other out."""
        idle = [c for c in self.server_state.connections
                if isinstance(c, _GuardedHTTP) and c._waiting_since is not None
                and c._idle()]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c._waiting_since or 0.0)
        victim._waiting_since = None
        victim.transport.close()
        self.server_state.connections.discard(victim)
        return True

    def _idle(self) -> bool:
        transport = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return False
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def _schedule(self) -> None:
        self._timer = self.loop.call_later(max(0.05, self.header_timeout / 4), self._check)

    def _check(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._waiting_since = None  # a request is being served
        elif self._waiting_since is None:
            self._waiting_since = self.loop.time()
        elif self.loop.time() - self._waiting_since >= self.header_timeout:
            transport.close()  # no request headers in time
            return
        self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if getattr(self, "transport", None) is None:
            return  # refused in connection_made
        super().connection_lost(exc)


def guarded_http(header_timeout: float, max_connections: int) -> type[Any]:
    """uvicorn's HTTP protocol with a header timeout and a connection limit.

    A connection waiting for a request's headers longer than ``header_timeout`` seconds
    (a slowloris, or an idle connection) is closed; a connection beyond
    ``max_connections`` gets a 503 and is closed before any byte is read.

    Example:
        >>> guarded_http(5, 100).__name__
        'GuardedHTTP'
    """
    if header_timeout <= 0 or max_connections < 1:
        raise ValueError("header_timeout must be positive and max_connections >= 1")
    return type("GuardedHTTP", (_GuardedHTTP,),
                {"header_timeout": header_timeout, "max_connections": max_connections})


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (up to the hard
    limit); the soft limit now in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def uvicorn_server(
    app: Starlette, log_level: str = "warning", graceful_timeout: int = 3, *,
    header_timeout: float = _DEFAULTS.header_timeout,
    max_connections: int = _DEFAULTS.max_connections,
) -> uvicorn.Server:
    """A uvicorn server for the emulator app (no access log, short graceful shutdown:
    in-flight requests get ``graceful_timeout`` seconds to finish, then are cancelled;
    connections guarded by :func:`guarded_http`)."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        ws="none",
        http=guarded_http(header_timeout, max_connections),
    )
    return uvicorn.Server(config)


class Emulator:
    """A local DashScope (code interpreter) on a free port, in a background thread.

    Example:
        >>> from qwen_ci import Client, Options, build, collect
        >>> from qwen_ci_server.emulator import Emulator
        >>> with Emulator() as emu:  # doctest: +SKIP
        ...     client = Client(api_key="sk-local", base_url=emu.base_url)
        ...     request = build([{"role": "user", "content": "2**100?"}], Options(),
        ...                     "dashscope")
        ...     print(collect(client.stream(request)).text)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        script: str | Path | None = None,
        model: Model | None = None,
        pool_size: int = _DEFAULTS.pool_size,
        limits: Limits | None = None,
        isolation: IsolationChoice = _DEFAULTS.isolation,
        frame_delay: float = _DEFAULTS.frame_delay,
        max_runs: int = _DEFAULTS.max_runs,
        max_body_bytes: int = _DEFAULTS.max_body_bytes,
        log_level: str = "warning",
        header_timeout: float = _DEFAULTS.header_timeout,
        max_connections: int = _DEFAULTS.max_connections,
        body_timeout: float = _DEFAULTS.body_timeout,
    ) -> None:
        self.config = EmulatorConfig(
            api_key=api_key,
            model=model,
            script=script,
            pool_size=pool_size,
            limits=limits or Limits(),
            isolation=isolation,
            frame_delay=frame_delay,
            max_runs=max_runs,
            max_body_bytes=max_body_bytes,
            fail_closed=True,  # every host: only isolation='none' runs code unisolated
            header_timeout=header_timeout,
            max_connections=max_connections,
            body_timeout=body_timeout,
        )
        self.host = host
        self.port = port
        self.log_level = log_level
        self.graceful_timeout = 3
        """Seconds in-flight requests get to finish on :meth:`stop`."""
        self.app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """The service root to pass as ``base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pool(self) -> KernelPool:
        """The kernel pool (available once started)."""
        pool = getattr(self.app.state, "pool", None)
        if pool is None:
            raise RuntimeError("The emulator is not running.")
        assert isinstance(pool, KernelPool)
        return pool

    def start(self, timeout: float = 60.0) -> Emulator:
        """Start serving; returns once the port accepts requests."""
        if self._thread is not None:
            raise RuntimeError("The emulator was already started.")
        config = getattr(self.app.state, "config", self.config)
        if getattr(config, "fail_closed", True):
            isolation = detect_isolation(config.isolation)
            refusal = isolation.refusal(f"The server on {self.host}")
            if refusal is not None:
                raise RuntimeError(refusal)
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn_server(self.app, self.log_level, self.graceful_timeout,
                                header_timeout=self.config.header_timeout,
                                max_connections=self.config.max_connections)
        self._server = server

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="qwen-ci-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                detail = f": {self._error}" if self._error else ""
                raise RuntimeError(f"The emulator did not start{detail}")
            time.sleep(0.01)
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coroutine`` on the emulator's event loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("The emulator is not running.")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def wait_warm(self, timeout: float = 60.0) -> None:
        """Block until the kernel pool is warm."""
        self.call(self.pool.wait_warm(timeout), timeout + 5)

    def sandbox_pids(self) -> set[int]:
        """Host pids of every sandbox process (warm and busy kernels)."""
        async def pids() -> set[int]:
            return self.pool.pids()

        return self.call(pids())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and kill every kernel."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
