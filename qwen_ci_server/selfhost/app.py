"""The self-hosted server: the emulator's endpoints with an upstream model behind them."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from qwen_ci_server.emulator.app import create_app
from qwen_ci_server.emulator.config import EmulatorConfig
from qwen_ci_server.emulator.server import Emulator, bind_socket, guarded_http, raise_open_files
from qwen_ci_server.selfhost.config import ServeConfig, safe_url
from qwen_ci_server.selfhost.gate import Gate
from qwen_ci_server.selfhost.upstream import UpstreamModel

logger = logging.getLogger("qwen_ci_server.selfhost")


def create_serve_app(config: ServeConfig, model: UpstreamModel | None = None) -> Starlette:
    """The self-hosted server as an ASGI app (sandbox pool and upstream client live with
    the app's lifespan).

    Example:
        >>> from qwen_ci_server.selfhost import ServeConfig, UpstreamConfig
        >>> upstream = UpstreamConfig("http://127.0.0.1:8000/v1", "Qwen/Qwen3-8B")
        >>> app = create_serve_app(ServeConfig(upstream, pool_size=0))
        >>> "/compatible-mode/v1/chat/completions" in {r.path for r in app.routes}
        True
    """
    model = model or UpstreamModel(config.upstream, max_rounds=config.max_rounds,
                                   instructions=config.instructions,
                                   log_content=config.log_content)
    app = create_app(EmulatorConfig(
        api_key=config.api_key, model=model, pool_size=config.pool_size, limits=config.limits,
        isolation=config.isolation, frame_delay=0.0, max_runs=config.max_rounds,
        extra_models=(config.upstream.model,), faults=False, fail_closed=True,
        front_door=False,  # its own gate below, with the serve settings
    ))

    def health() -> dict[str, Any]:
        pool = getattr(app.state, "pool", None)
        guarantees = pool.guarantees() if pool is not None else {"isolation": None}
        return {"model": model.name, **guarantees,
                "warm_kernels": pool.warm if pool is not None else 0}

    app.add_middleware(Gate, max_concurrency=config.max_concurrency, max_queue=config.max_queue,
                       queue_timeout=config.queue_timeout,
                       max_body_bytes=config.max_body_bytes, health=health,
                       api_key=config.api_key, max_buffered_bytes=config.max_buffered_bytes,
                       body_timeout=config.body_timeout,
                       request_timeout=config.request_timeout,
                       public_health=config.public_health)
    app.state.model = model
    return app


class SelfHost(Emulator):
    """A self-hosted server on a free port in a background thread (tests, notebooks).

    Same interface as :class:`~qwen_ci_server.emulator.Emulator` (``base_url``, ``wait_warm``,
    ``stop``, context manager).

    Example:
        >>> from langchain_qwen_ci import ChatQwenCodeInterpreter
        >>> from qwen_ci_server.selfhost import ServeConfig, UpstreamConfig
        >>> upstream = UpstreamConfig("http://127.0.0.1:11434/v1", "qwen3:8b")
        >>> with SelfHost(ServeConfig(upstream)) as server:  # doctest: +SKIP
        ...     llm = ChatQwenCodeInterpreter(base_url=server.base_url, api_key="any")
        ...     print(llm.invoke("What is 2**100?").additional_kwargs["tool_info"])
    """

    def __init__(self, config: ServeConfig, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        super().__init__(host=host, port=port, api_key=config.api_key,
                         pool_size=config.pool_size, limits=config.limits,
                         isolation=config.isolation, max_runs=config.max_rounds,
                         log_level=log_level, header_timeout=config.header_timeout,
                         max_connections=config.max_connections)
        self.serve_config = config
        self.graceful_timeout = config.graceful_timeout
        self.app = create_serve_app(config)

    def __enter__(self) -> SelfHost:
        self.start()
        return self


class _Stopped(Exception):
    """SIGTERM re-raised by uvicorn after its graceful shutdown."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def serve(config: ServeConfig, sock: socket.socket, log_level: str = "info") -> None:
    """Serve in the foreground on ``sock`` until SIGINT/SIGTERM, then shut down
    gracefully (in-flight requests get ``config.graceful_timeout`` seconds)."""
    app = create_serve_app(config)
    # room for every allowed connection plus the sandboxes' own descriptors
    raise_open_files(config.max_connections + 64 * config.max_concurrency + 256)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level=log_level, log_config=None, access_log=False, lifespan="on",
        timeout_graceful_shutdown=config.graceful_timeout, ws="none",
        http=guarded_http(config.header_timeout, config.max_connections),
    ))
    host, port = sock.getsockname()[:2]
    logger.info("serving", extra={"fields": {
        "url": f"http://{host}:{port}", "upstream": safe_url(config.upstream.base_url),
        "upstream_model": config.upstream.model, "max_rounds": config.max_rounds,
        "max_concurrency": config.max_concurrency, "max_queue": config.max_queue}})
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown: end normally instead
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped) if main else None
    try:
        with contextlib.suppress(KeyboardInterrupt, _Stopped):
            server.run(sockets=[sock])
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    logger.info("stopped")


__all__ = ["SelfHost", "ServeConfig", "bind_socket", "create_serve_app", "serve"]
