"""#22: the request deadline includes writing the answer (finding 5: a client that never
read held its concurrency slot past --request-timeout as long as it liked); SIGTERM
during a run frees everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from qwen_ci_server.emulator.server import bind_socket, guarded_http
from qwen_ci_server.sandbox.procs import process_tree
from qwen_ci_server.selfhost.gate import Gate
from tests.emulator.conftest import COMPAT, compat_body
from tests.emulator.test_front_door import _left, _sandboxes
from tests.selfhost.upstream import MODEL, FakeUpstream, stream


async def flood(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * (1 << 20)
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def quick(request: Request) -> Response:
    return JSONResponse({"ok": True})


@pytest.fixture
def gated() -> Iterator[str]:
    app = Starlette(routes=[Route("/flood", flood, methods=["POST"]),
                            Route("/quick", quick, methods=["POST"])])
    app.add_middleware(Gate, max_concurrency=1, max_queue=0, request_timeout=2.0)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off",
                                           http=guarded_http(10, 64)))
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_a_client_that_never_reads_frees_its_slot_after_the_deadline(gated: str) -> None:
    port = int(gated.rsplit(":", 1)[1])
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", port))
    try:
        reader.sendall(b"POST /flood HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        time.sleep(0.5)  # it holds the only slot, and never reads
        busy = httpx.post(gated + "/quick", json={}, timeout=30)
        assert busy.status_code == 429
        # the deadline (2 s) plus the grace to write the error (5 s), generously
        deadline = time.monotonic() + 60
        while (answer := httpx.post(gated + "/quick", json={}, timeout=30)).status_code == 429:
            assert time.monotonic() < deadline, "the slot is still held"
            time.sleep(0.5)
        assert answer.status_code == 200
    finally:
        reader.close()


def test_serve_sigterm_during_a_run_frees_everything(upstream: FakeUpstream) -> None:
    """Crash safety: SIGTERM while a request's code runs ends the server with status 0,
    every kernel killed, its groups and run directories removed."""
    upstream.reset(lambda body, n: stream(codes=["import time; time.sleep(120)"]) if n == 0
                   else stream(content=["done"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    command = [sys.executable, "-m", "qwen_ci.cli", "serve", "--upstream-base-url",
               upstream.base_url, "--upstream-model", MODEL, "--port", "0", "--pool-size",
               "1", "--graceful-timeout", "2", "--timeout", "100", "--log-level", "warning"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    assert proc.stdout is not None
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
    kernels: set[int] = set()
    try:
        assert match
        url = match.group(1)

        def ask() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(url + COMPAT, json=compat_body("sleep"), timeout=120)

        threading.Thread(target=ask, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the request took the warm kernel
            kernels = process_tree(proc.pid) - {proc.pid}
            if len(_sandboxes(kernels)) >= 2:
                break
            time.sleep(0.1)
        assert len(_sandboxes(kernels)) >= 2
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _left(proc.pid, kernels):
        time.sleep(0.1)
    assert _left(proc.pid, kernels) == []
