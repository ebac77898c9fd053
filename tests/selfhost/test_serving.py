"""Production concerns of the self-hosted server: the concurrency bound and its queue,
graceful shutdown (finish or cancel in-flight requests)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from qwen_ci_server.selfhost import SelfHost
from tests.emulator.conftest import COMPAT, NATIVE, compat_body, native_body
from tests.selfhost.conftest import KEY, selfhost, stray_processes
from tests.selfhost.upstream import FakeUpstream, stream

HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable",
           "Accept": "text/event-stream"}
WORDS = [f"w{i} " for i in range(10)]


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def health(server: SelfHost) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {KEY}"}
    return httpx.get(server.base_url + "/health", headers=auth).json()  # type: ignore[no-any-return]


def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def in_background(server: SelfHost, results: dict[str, Any], name: str) -> threading.Thread:
    def call() -> None:
        try:
            results[name] = httpx.post(server.base_url + NATIVE, json=native_body(name),
                                       headers=HEADERS, timeout=30)
        except httpx.HTTPError as exc:
            results[name] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def answer_of(response: httpx.Response) -> str:
    text = ""
    for block in response.text.strip().split("\n\n"):
        data = json.loads(block.split("\ndata:", 1)[1])
        text += data["output"]["choices"][0]["message"]["content"]
    return text


def test_concurrency_bound_queues_then_throttles(upstream: FakeUpstream) -> None:
    upstream.reset(lambda body, n: stream(content=WORDS, delay=0.2))  # about 2 s each
    with selfhost(upstream.base_url, max_concurrency=1, max_queue=1) as server:
        results: dict[str, Any] = {}
        first = in_background(server, results, "first")
        wait_for(lambda: health(server)["in_flight"] == 1)
        second = in_background(server, results, "second")
        wait_for(lambda: health(server)["queued"] == 1)
        refused = httpx.post(server.base_url + NATIVE, json=native_body("third"),
                             headers=HEADERS)
        assert refused.status_code == 429 and refused.json()["code"] == "Throttling"
        assert refused.headers["retry-after"] == "1"
        compat = httpx.post(server.base_url + COMPAT, json=compat_body("fourth"),
                            headers=HEADERS)
        assert compat.status_code == 429
        assert compat.json()["error"]["code"] == "limit_requests"
        first.join(10)
        second.join(10)
        for name in ("first", "second"):
            assert results[name].status_code == 200
            assert answer_of(results[name]) == "".join(WORDS)
        assert health(server)["in_flight"] == 0 and health(server)["queued"] == 0
    assert [b["messages"][-1]["content"] for b in upstream.bodies] == ["first", "second"]


def test_queue_timeout_and_a_client_leaving_the_queue(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qwen_ci_server.selfhost.access")
    upstream.reset(lambda body, n: stream(content=WORDS, delay=0.3))  # about 3 s
    with selfhost(upstream.base_url, max_concurrency=1, max_queue=1,
                  queue_timeout=1.0) as server:
        results: dict[str, Any] = {}
        first = in_background(server, results, "first")
        wait_for(lambda: health(server)["in_flight"] == 1)
        started = time.monotonic()
        late = httpx.post(server.base_url + NATIVE, json=native_body("late"), headers=HEADERS)
        assert late.status_code == 429 and time.monotonic() - started >= 1.0
        body = json.dumps(native_body("leaver")).encode()
        host, port = server.host, server.port
        with socket.create_connection((host, port)) as sock:
            sock.sendall(
                f"POST {NATIVE} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body)
            wait_for(lambda: health(server)["queued"] == 1)
        wait_for(lambda: health(server)["queued"] == 0)
        first.join(10)
        assert results["first"].status_code == 200
        wait_for(lambda: len(caplog.records) >= 3)
    outcomes = [r.fields["outcome"] for r in caplog.records]  # type: ignore[attr-defined]
    assert outcomes == ["throttled", "client_disconnected", "ok"]
    assert [b["messages"][-1]["content"] for b in upstream.bodies] == ["first"]


def test_graceful_shutdown_lets_an_in_flight_request_finish(upstream: FakeUpstream) -> None:
    upstream.reset(lambda body, n: stream(content=WORDS, delay=0.1))
    results: dict[str, Any] = {}
    with selfhost(upstream.base_url, graceful_timeout=10) as server:
        request = in_background(server, results, "finish me")
        wait_for(lambda: health(server)["in_flight"] == 1)
        server.stop()
        request.join(10)
    response = results["finish me"]
    assert response.status_code == 200 and answer_of(response) == "".join(WORDS)


def test_graceful_shutdown_cancels_after_its_timeout_and_kills_the_sandbox(
    upstream: FakeUpstream,
) -> None:
    upstream.reset(lambda body, n: stream(codes=["import time\ntime.sleep(60)"]))
    received: list[bytes] = []
    with selfhost(upstream.base_url, graceful_timeout=1, pool_size=1) as server:
        server.wait_warm()

        def call() -> None:
            try:
                with httpx.stream("POST", server.base_url + NATIVE, json=native_body("sleep"),
                                  headers=HEADERS, timeout=30) as response:
                    for chunk in response.iter_bytes():
                        received.append(chunk)
            except httpx.HTTPError:
                received.append(b"<connection closed>")

        request = threading.Thread(target=call, daemon=True)
        request.start()
        wait_for(lambda: b"tool_info" in b"".join(received))
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 8
        request.join(5)
        assert not request.is_alive()
    assert b'"finish_reason":"stop"' not in b"".join(received)  # cut, never a false answer
    assert stray_processes() == set()
