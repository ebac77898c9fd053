"""One emulator for the whole session (real sandbox, small limits, no frame delay)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwen_ci import Client, Options, Result, build, collect
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.sandbox import Limits
from qwen_ci_server.sandbox.procs import descendants

KEY = "sk-emulator-test"
LIMITS = Limits(timeout=3, interrupt_grace=1, memory=1 << 30, cpu=60, output=20_000)
NATIVE = "/api/v1/services/aigc/text-generation/generation"
MULTIMODAL = "/api/v1/services/aigc/multimodal-generation/generation"
COMPAT = "/compatible-mode/v1/chat/completions"
SSE_HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable",
               "Accept": "text/event-stream"}


RUNNING: list[Emulator] = []
"""Emulators of this test session that are running (their kernels are not leftovers)."""


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Emulator]:
    """An emulator registered in :data:`RUNNING` while it runs."""
    with Emulator(**kwargs) as emu:
        RUNNING.append(emu)
        try:
            yield emu
        finally:
            RUNNING.remove(emu)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The shared emulator; it requires the key ``KEY``."""
    with running(api_key=KEY, pool_size=2, limits=LIMITS) as emu:
        emu.wait_warm()
        yield emu


def ask(emu: Emulator, prompt: str, protocol: str = "dashscope", **options: Any) -> Result:
    """One question through the core client."""
    client = Client(api_key=KEY, base_url=emu.base_url, max_retries=0)
    with client:
        request = build([{"role": "user", "content": prompt}], Options(**options), protocol)
        return collect(client.stream(request))


def native_body(prompt: str, model: str = "qwen3-max-preview", **parameters: Any) -> dict[str, Any]:
    """A native request body as the client sends it."""
    params: dict[str, Any] = {"enable_code_interpreter": True, "enable_thinking": True,
                              "result_format": "message", "incremental_output": True}
    params.update(parameters)
    return {"model": model, "input": {"messages": [{"role": "user", "content": prompt}]},
            "parameters": params}


def compat_body(prompt: str, model: str = "qwen3-max-preview", **fields: Any) -> dict[str, Any]:
    """A compatible-mode request body as the client sends it."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}],
                            "stream": True, "stream_options": {"include_usage": True},
                            "enable_thinking": True, "enable_code_interpreter": True}
    body.update(fields)
    return body


def post(emu: Emulator, path: str, body: Any, headers: dict[str, str] | None = None,
         timeout: float = 30) -> httpx.Response:
    """A raw POST (the whole body read)."""
    headers = SSE_HEADERS if headers is None else headers
    return httpx.post(emu.base_url + path, json=body, headers=headers,
                      timeout=timeout)


def leftovers(within: float = 10.0) -> set[int]:
    """Processes under this test process that are not kernels of a running emulator.

    Polls: a request's kernel is killed just after its last frame was sent.
    """
    deadline = time.monotonic() + within
    while True:
        managed: set[int] = set()
        for emu in list(RUNNING):
            managed |= emu.sandbox_pids()
        extra = descendants() - managed
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)
