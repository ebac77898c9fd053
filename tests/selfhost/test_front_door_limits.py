"""#22 finding 5: the request deadline includes writing the answer. A client that never
reads held its concurrency slot past --request-timeout as long as it liked."""

from __future__ import annotations

import asyncio
import socket
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
from qwen_ci_server.selfhost.gate import Gate


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
