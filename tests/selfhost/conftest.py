"""Fixtures of the self-hosted tests: the fake upstream and servers in front of it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci_server.sandbox import Limits
from qwen_ci_server.sandbox.procs import descendants
from qwen_ci_server.selfhost import SelfHost, ServeConfig, UpstreamConfig
from tests.emulator.conftest import RUNNING
from tests.selfhost.upstream import MODEL, FakeUpstream

UPSTREAM_KEY = "sk-upstream-canary-5d1e9b"
KEY = "sk-selfhost-test"
LIMITS = Limits(timeout=5, interrupt_grace=1, memory=1 << 30, cpu=60)
MAX_ROUNDS = 3


@contextlib.contextmanager
def selfhost(upstream_url: str, *, max_retries: int = 1, **options: Any) -> Iterator[SelfHost]:
    """A self-hosted server in front of ``upstream_url`` (registered as running, so that
    its kernels are not taken for leftovers)."""
    upstream = UpstreamConfig(upstream_url, MODEL, api_key=UPSTREAM_KEY, max_retries=max_retries,
                              retry_backoff=0.01, timeout=30)
    settings: dict[str, Any] = {"api_key": KEY, "pool_size": 0, "limits": LIMITS,
                                "max_rounds": MAX_ROUNDS}
    settings.update(options)
    with SelfHost(ServeConfig(upstream, **settings)) as server:
        RUNNING.append(server)
        try:
            yield server
        finally:
            RUNNING.remove(server)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream) -> Iterator[SelfHost]:
    """The module's server: real sandbox (one warm kernel), 3 code runs per request,
    a 1 MiB body limit."""
    with selfhost(upstream.base_url, pool_size=1, max_body_bytes=1 << 20) as srv:
        srv.wait_warm()
        yield srv


def llm(server: SelfHost, protocol: str = "dashscope", **kwargs: Any) -> ChatQwenCodeInterpreter:
    """The LangChain model, unchanged, pointed at the self-hosted server."""
    return ChatQwenCodeInterpreter(base_url=server.base_url, api_key=KEY, protocol=protocol,
                                   max_retries=0, **kwargs)


def unmanaged() -> set[int]:
    """Children of this process that no running server or emulator manages."""
    managed: set[int] = set()
    for running in list(RUNNING):
        managed |= running.sandbox_pids()
    return descendants() - managed


def stray_processes(within: float = 5.0) -> set[int]:
    """:func:`unmanaged` processes, polled for up to ``within`` seconds until none are left."""
    deadline = time.monotonic() + within
    while True:
        extra = unmanaged()
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)
