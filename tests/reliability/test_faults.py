"""Faults on the wire: nothing truncated is returned as complete, nothing is retried
after output started, nothing hangs, connections are released."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

import pytest

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import (
    APIConnectionError,
    IncompleteStreamError,
    ProtocolError,
    QwenCIError,
    RateLimitError,
    ServerError,
)
from tests.replay import (
    Recorded,
    ReplayServer,
    Reply,
    compat_chunk,
    compat_stream,
    native_frame,
    native_stream,
)

PROTOCOLS = ["dashscope", "openai"]
JSON = {"Content-Type": "application/json"}


def ok_stream(protocol: str, text: str = "fine") -> list[bytes]:
    if protocol == "openai":
        return compat_stream(["think"], [text])
    return native_stream([{"reasoning": "think"}, {"tool_info": ["1+1"]},
                          {"content": text, "tool_info": ["1+1"]},
                          {"finish": "stop", "tool_info": ["1+1"]}])


def error_after_output(protocol: str) -> list[bytes]:
    if protocol == "openai":
        return [*compat_stream(["think"], ["par"], done=False)[:3],
                compat_chunk({"error": {"code": "limit_requests", "message": "slow down"},
                              "request_id": "r-late"})]
    return [*native_stream([{"reasoning": "think"}, {"content": "par"}]),
            native_frame({"code": "Throttling.RateQuota", "message": "slow down",
                          "request_id": "r-late"}, event="error", status=429)]


def llm(server: ReplayServer, protocol: str, **kwargs: Any) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url,
                                   protocol=protocol, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ single faults


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cut_right_after_the_headers(server: ReplayServer, protocol: str) -> None:
    server.default = Reply(ok_stream(protocol), cut_after=0)
    with pytest.raises((IncompleteStreamError, APIConnectionError)):
        llm(server, protocol, max_retries=0).invoke("q")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_error_after_output_sync_and_async(server: ReplayServer, protocol: str) -> None:
    server.default = Reply(error_after_output(protocol))
    model = llm(server, protocol, max_retries=3)
    for call in (lambda: model.invoke("q"), lambda: list(model.stream("q"))):
        with pytest.raises(RateLimitError) as info:
            call()
        assert (info.value.status, info.value.request_id) == (429, "r-late")
    with pytest.raises(RateLimitError):
        await model.ainvoke("q")
    with pytest.raises(RateLimitError):
        [c async for c in model.astream("q")]
    assert len(server.requests) == 4  # one request per call: never retried


def test_invoke_error_carries_the_partial_output(server: ReplayServer) -> None:
    server.default = Reply(error_after_output("dashscope"))
    with pytest.raises(RateLimitError) as info:
        llm(server, "dashscope").invoke("q")
    partial = info.value.partial
    assert partial is not None and not partial.complete
    assert (partial.reasoning, partial.text) == ("think", "par")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_5xx_before_output_retried_exactly_max_retries(server: ReplayServer,
                                                       protocol: str) -> None:
    body = json.dumps({"code": "InternalError", "message": "An internal error has occurred",
                       "request_id": "r5"}).encode()
    server.default = Reply([body], status=500, headers={**JSON, "Retry-After": "0"})
    with pytest.raises(ServerError):
        llm(server, protocol, max_retries=2).invoke("q")
    assert len(server.requests) == 3


def test_ten_megabyte_frame_is_received_whole(server: ReplayServer) -> None:
    big = "x" * (10 * 1024 * 1024)
    frames = native_stream([{"content": big}, {"content": "!", "finish": "stop"}])
    server.default = Reply([frames[0][i:i + 65536] for i in range(0, len(frames[0]), 65536)]
                           + frames[1:])
    message = llm(server, "dashscope").invoke("q")
    assert len(message.content) == len(big) + 1 and message.content.endswith("x!")


def test_data_line_split_across_packets_with_pauses(server: ReplayServer) -> None:
    body = b"".join(ok_stream("dashscope")).replace(b"\n", b"\r\n")
    server.default = Reply([body[i:i + 7] for i in range(0, len(body), 7)], delay=0.001)
    message = llm(server, "dashscope").invoke("q")
    assert message.content == "fine"
    assert message.additional_kwargs["tool_info"][0]["code_interpreter"]["code"] == "1+1"


@pytest.mark.parametrize("body", [b"data:{nope}\n\n", b"data:[1,2]\n\n", b"data:\xff\xfe\n\n",
                                  b'data:{"usage":{}}\n\n'])
def test_malformed_frames_are_typed_errors(server: ReplayServer, body: bytes) -> None:
    server.default = Reply([body])
    with pytest.raises(ProtocolError):
        llm(server, "dashscope").invoke("q")


# ------------------------------------------------------------------ stopping early


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_consumer_stopping_after_the_first_chunk(server: ReplayServer, protocol: str) -> None:
    long = (compat_stream([f"r{i}" for i in range(300)], ["done"]) if protocol == "openai"
            else native_stream([{"reasoning": f"r{i}"} for i in range(300)]
                               + [{"finish": "stop"}]))
    server.queue(Reply(long, delay=0.005))
    server.default = Reply(ok_stream(protocol))
    model = llm(server, protocol)
    stream = model.stream("q")
    next(stream)
    stream.close()
    start = time.monotonic()
    assert server.wait_disconnects(1, timeout=1.0) == 1
    assert time.monotonic() - start < 1.0
    assert model.invoke("q").content == "fine"  # the pool is not poisoned


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_task_cancelled_mid_stream(server: ReplayServer, protocol: str) -> None:
    long = (compat_stream([f"r{i}" for i in range(300)], ["done"]) if protocol == "openai"
            else native_stream([{"reasoning": f"r{i}"} for i in range(300)]
                               + [{"finish": "stop"}]))
    server.queue(Reply(long, delay=0.005))
    server.default = Reply(ok_stream(protocol))
    model = llm(server, protocol)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in model.astream("q"):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_disconnects, 1, 1.0) == 1
    assert (await model.ainvoke("q")).content == "fine"


# ------------------------------------------------------------------ many calls, random faults


def random_faults(protocol: str, seed: int) -> Any:
    rng = random.Random(seed)
    lock = threading.Lock()
    throttled = json.dumps({"code": "Throttling.RateQuota", "message": "rate",
                            "request_id": "r"}).encode()

    def choose(_: Recorded) -> Reply:
        with lock:
            roll = rng.random()
        if roll < 0.5:
            return Reply(ok_stream(protocol), delay=0.001)
        if roll < 0.6:
            return Reply([throttled], status=429, headers={**JSON, "Retry-After": "0"})
        if roll < 0.7:
            return Reply(error_after_output(protocol))
        if roll < 0.8:
            stream = ok_stream(protocol)
            return Reply([*stream[:2], stream[2][:10]], cut_after=3)
        if roll < 0.9:
            return Reply(ok_stream(protocol)[:-1])  # clean close, no final frame
        return Reply([b"data:{broken\n\n"])

    return choose


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_200_concurrent_astreams_under_random_faults(server: ReplayServer,
                                                           protocol: str) -> None:
    server.chooser = random_faults(protocol, seed=7)
    model = llm(server, protocol, max_retries=1)

    async def one() -> str:
        try:
            chunks = [c async for c in model.astream("q")]
        except QwenCIError as exc:
            return type(exc).__name__
        text = "".join(str(c.content) for c in chunks)
        assert text == "fine" and chunks[-1].chunk_position == "last"
        return "complete"

    outcomes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), timeout=60)
    assert len(outcomes) == 200
    assert outcomes.count("complete") > 50
    assert set(outcomes) <= {"complete", "RateLimitError", "IncompleteStreamError",
                             "ProtocolError", "APIConnectionError"}
    # no leaked connections: every response was released to the pool or closed
    session = model._get_session()
    pool = session.aclient()
    await pool.aclose()
    assert await asyncio.to_thread(server.wait_open_connections, 0) == 0
    assert server.connections <= len(server.requests)
