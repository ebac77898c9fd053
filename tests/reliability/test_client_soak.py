"""Soak: thousands of calls through the patterns long-running workers really use, in both
adapters, sync and async, against a real 127.0.0.1 server; open file descriptors,
threads and resident memory are counted before and after and must stay flat.

Patterns: a new event loop per job (``asyncio.run`` per job on one model); a
``model_copy`` per request, with some requests failing and their exceptions kept alive;
instances dropped in the middle of their stream; async streams cancelled mid-way; threads
sharing one model. ``CLIENT_SOAK_CALLS`` sets the calls per pattern (500 by default).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci.errors import BadRequestError
from tests.replay import Recorded, ReplayServer, Reply, _Handler, native_stream

CALLS = int(os.environ.get("CLIENT_SOAK_CALLS", "500"))
KINDS = ["langchain", "llamaindex"]
#: a long answer, so that "mid-stream" is mid-stream
ANSWER = native_stream([{"reasoning": "think "}] * 10 + [{"content": "4"}, {"content": "2"}]
                       + [{"finish": "stop"}])
REFUSED = Reply([b'{"code":"InvalidParameter","message":"refused","request_id":"rid-400"}'],
                status=400, headers={"Content-Type": "application/json"})
#: growth allowed over a whole run (the baseline is taken after a warm-up round)
FDS, THREADS, RSS_MB = 4, 2, 16.0


def reply(request: Recorded) -> Reply:
    return REFUSED if b"refuse me" in request.raw else Reply(ANSWER)


class _NoDelayHandler(_Handler):
    # each frame is its own small write: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK stall every call for tens of milliseconds
    disable_nagle_algorithm = True


@pytest.fixture(scope="module")
def soak_server() -> Iterator[ReplayServer]:
    srv = ReplayServer()
    srv._server.RequestHandlerClass = _NoDelayHandler
    with srv:
        srv.chooser = reply
        yield srv


@dataclass
class Gauge:
    """Open file descriptors, live threads and resident memory of this process, and the
    connections open at the server (warm pools of live models, the same server thread
    per connection)."""

    fds: int
    threads: int
    rss_mb: float
    connections: int

    @classmethod
    def now(cls, server: ReplayServer) -> Gauge:
        gc.collect()
        rss = next(int(line.split()[1]) for line in
                   Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return cls(len(os.listdir("/proc/self/fd")), threading.active_count(), rss / 1024,
                   server.open_connections)

    def within(self, before: Gauge, spare: int = 0) -> bool:
        """No more than the allowed growth; ``spare`` warm connections may be added (each
        a socket at both ends and a server thread)."""
        return (self.fds <= before.fds + FDS + 2 * spare
                and self.threads <= before.threads + THREADS + spare
                and self.connections <= before.connections + spare)


def settle(server: ReplayServer, before: Gauge | None = None, spare: int = 0) -> Gauge:
    """The gauge once closed connections have been seen closed by the server (its
    handler threads ending), or after a few seconds."""
    deadline = time.monotonic() + (5 if before else 0.5)
    gauge = Gauge.now(server)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        last, gauge = gauge, Gauge.now(server)
        if (before is None and gauge == last) or (before and gauge.within(before, spare)):
            break
    return gauge


def soak(server: ReplayServer, run: Callable[[int], None], spare: int = 0) -> None:
    """A warm-up round, the baseline, ``CALLS`` calls, the comparison."""
    run(max(CALLS // 10, 20))
    before = settle(server)
    requests = len(server.requests)
    run(CALLS)
    after = settle(server, before, spare)
    assert len(server.requests) - requests >= CALLS
    growth = (after.fds - before.fds, after.threads - before.threads,
              round(after.rss_mb - before.rss_mb, 1), after.connections - before.connections)
    assert after.within(before, spare) and growth[2] <= RSS_MB, (
        f"grew by {growth[0]} fds, {growth[1]} threads, {growth[2]} MB, {growth[3]} open "
        f"connections over {CALLS} calls (from {before})")


def make(kind: str, server: ReplayServer, **fields: Any) -> Any:
    cls: Any = ChatQwenCodeInterpreter if kind == "langchain" else QwenCodeInterpreter
    return cls(api_key="sk-soak", base_url=server.base_url, max_retries=0, **fields)


def call(model: Any, prompt: str = "q") -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str(model.invoke([HumanMessage(prompt)]).content)
    return str(model.chat([ChatMessage(role="user", content=prompt)]).message.content)


async def acall(model: Any, prompt: str = "q") -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str((await model.ainvoke([HumanMessage(prompt)])).content)
    return str((await model.achat([ChatMessage(role="user", content=prompt)])).message.content)


def first_chunk(model: Any) -> Any:
    """Start a stream and read one chunk; the caller drops both."""
    if isinstance(model, ChatQwenCodeInterpreter):
        stream: Any = model.stream([HumanMessage("q")])
    else:
        stream = model.stream_chat([ChatMessage(role="user", content="q")])
    return stream, next(stream)


async def astream(model: Any) -> Any:
    if isinstance(model, ChatQwenCodeInterpreter):
        return model.astream([HumanMessage("q")])
    return await model.astream_chat([ChatMessage(role="user", content="q")])


# ---------------------------------------------------------------- the patterns


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_event_loop_per_job(soak_server: ReplayServer, kind: str) -> None:
    model = make(kind, soak_server)

    def run(n: int) -> None:
        for _ in range(n):
            assert asyncio.run(acall(model)) == "42"

    soak(soak_server, run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_copy_per_request_with_exceptions_kept_alive(soak_server: ReplayServer,
                                                             kind: str) -> None:
    base = make(kind, soak_server)
    kept: list[BaseException] = []

    def run(n: int) -> None:
        for i in range(n):
            model = base.model_copy(update={"temperature": (i % 10) / 10})
            try:
                assert call(model, "refuse me" if i % 4 == 0 else "q") == "42"
            except BadRequestError as exc:  # kept with its traceback, which holds the model
                kept.append(exc)
                del kept[:-25]

    soak(soak_server, run)


@pytest.mark.parametrize("kind", KINDS)
def test_an_async_model_copy_per_request_with_exceptions_kept_alive(
    soak_server: ReplayServer, kind: str
) -> None:
    base = make(kind, soak_server)
    kept: list[BaseException] = []

    async def jobs(n: int) -> None:
        for i in range(n):
            model = base.model_copy(update={"temperature": (i % 10) / 10})
            try:
                assert await acall(model, "refuse me" if i % 4 == 0 else "q") == "42"
            except BadRequestError as exc:
                kept.append(exc)
                del kept[:-25]

    soak(soak_server, lambda n: asyncio.run(jobs(n)))


@pytest.mark.parametrize("kind", KINDS)
def test_instances_dropped_mid_stream(soak_server: ReplayServer, kind: str) -> None:
    def run(n: int) -> None:
        for _ in range(n):
            stream, chunk = first_chunk(make(kind, soak_server))
            assert chunk is not None
            del stream, chunk  # the model goes with them

    soak(soak_server, run)


@pytest.mark.parametrize("kind", KINDS)
def test_async_instances_dropped_mid_stream(soak_server: ReplayServer, kind: str) -> None:
    async def jobs(n: int) -> None:
        for _ in range(n):
            stream = await astream(make(kind, soak_server))
            assert await anext(stream) is not None
            del stream  # dropped, not closed: the loop finalizes it
            await asyncio.sleep(0)

    soak(soak_server, lambda n: asyncio.run(jobs(n)))


@pytest.mark.parametrize("kind", KINDS)
def test_cancelled_async_streams(soak_server: ReplayServer, kind: str) -> None:
    model = make(kind, soak_server)

    async def consume(started: asyncio.Event) -> None:
        async for _ in await astream(model):
            started.set()
            await asyncio.sleep(10)

    async def jobs(n: int) -> None:
        for _ in range(n // 5):
            pairs = [(asyncio.Event(), None) for _ in range(5)]
            tasks = [asyncio.create_task(consume(started)) for started, _ in pairs]
            for started, _ in pairs:
                await started.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    soak(soak_server, lambda n: asyncio.run(jobs(n)))


WORKERS = 4


@pytest.mark.parametrize("kind", KINDS)
def test_threads_sharing_one_model(soak_server: ReplayServer, kind: str) -> None:
    model = make(kind, soak_server)

    def one(i: int) -> None:
        if i % 3 == 0:
            stream, _ = first_chunk(model)
            stream.close()
        else:
            assert call(model) == "42"

    def run(n: int) -> None:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(one, range(n)))

    soak(soak_server, run, spare=WORKERS)  # the warm-up may not have used them all
