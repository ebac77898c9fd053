"""Running the emulator: in a background thread (tests, demos) or in the foreground."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette

from qwen_ci.emulator.app import EmulatorConfig, create_app
from qwen_ci.emulator.model import Model
from qwen_ci.emulator.validation import MAX_BODY_BYTES
from qwen_ci.sandbox import KernelPool, Limits
from qwen_ci.sandbox.isolation import IsolationChoice

T = TypeVar("T")


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


def uvicorn_server(
    app: Starlette, log_level: str = "warning", graceful_timeout: int = 3
) -> uvicorn.Server:
    """A uvicorn server for the emulator app (no access log, short graceful shutdown:
    in-flight requests get ``graceful_timeout`` seconds to finish, then are cancelled)."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        ws="none",
    )
    return uvicorn.Server(config)


class Emulator:
    """A local DashScope (code interpreter) on a free port, in a background thread.

    Example:
        >>> from qwen_ci import Client, Options, build, collect
        >>> from qwen_ci.emulator import Emulator
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
        pool_size: int = 2,
        limits: Limits | None = None,
        isolation: IsolationChoice = "auto",
        frame_delay: float = 0.0,
        max_runs: int = 8,
        max_body_bytes: int = MAX_BODY_BYTES,
        log_level: str = "warning",
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
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn_server(self.app, self.log_level, self.graceful_timeout)
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
