"""The fault cases through the LlamaIndex LLM: typed errors, no retry after output,
early stops release the connection, concurrency under random faults."""

from __future__ import annotations

import asyncio
import json

import pytest
from llama_index.core.llms import ChatMessage

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import IncompleteStreamError, QwenCIError, RateLimitError, ServerError
from tests.reliability.test_faults import (
    JSON,
    PROTOCOLS,
    error_after_output,
    ok_stream,
    random_faults,
)
from tests.replay import ReplayServer, Reply, compat_stream, native_stream

Q = [ChatMessage(role="user", content="q")]


def llm(server: ReplayServer, protocol: str, **kwargs: object) -> QwenCodeInterpreter:
    return QwenCodeInterpreter(api_key="sk-test", base_url=server.base_url,
                               protocol=protocol, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_error_after_output_is_typed_and_never_retried(server: ReplayServer,
                                                             protocol: str) -> None:
    server.default = Reply(error_after_output(protocol))
    model = llm(server, protocol, max_retries=3)
    with pytest.raises(RateLimitError) as info:
        model.chat(Q)
    assert (info.value.status, info.value.request_id) == (429, "r-late")
    assert info.value.partial is not None and info.value.partial.text == "par"
    with pytest.raises(RateLimitError):
        list(model.stream_chat(Q))
    with pytest.raises(RateLimitError):
        await model.achat(Q)
    with pytest.raises(RateLimitError):
        [c async for c in await model.astream_chat(Q)]
    assert len(server.requests) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_5xx_before_output_retried_exactly_max_retries(server: ReplayServer,
                                                       protocol: str) -> None:
    body = json.dumps({"code": "InternalError", "message": "boom", "request_id": "r"}).encode()
    server.default = Reply([body], status=500, headers={**JSON, "Retry-After": "0"})
    with pytest.raises(ServerError):
        llm(server, protocol, max_retries=2).complete("q")
    assert len(server.requests) == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cut_off_stream_is_an_error(server: ReplayServer, protocol: str) -> None:
    server.default = Reply(ok_stream(protocol)[:-1])
    with pytest.raises(IncompleteStreamError):
        llm(server, protocol).chat(Q)
    with pytest.raises(IncompleteStreamError):
        list(llm(server, protocol).stream_complete("q"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stopping_early_releases_the_connection(server: ReplayServer,
                                                      protocol: str) -> None:
    long = (compat_stream([f"r{i}" for i in range(300)], ["done"]) if protocol == "openai"
            else native_stream([{"reasoning": f"r{i}"} for i in range(300)]
                               + [{"finish": "stop"}]))
    server.queue(Reply(long, delay=0.005), Reply(long, delay=0.005))
    server.default = Reply(ok_stream(protocol))
    model = llm(server, protocol)
    stream = model.stream_chat(Q)
    next(stream)
    stream.close()
    assert await asyncio.to_thread(server.wait_disconnects, 1, 1.0) == 1
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in await model.astream_chat(Q):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_disconnects, 2, 1.0) == 2
    assert model.chat(Q).message.content == "fine"
    assert (await model.achat(Q)).message.content == "fine"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_200_concurrent_astream_chats_under_random_faults(server: ReplayServer,
                                                                protocol: str) -> None:
    server.chooser = random_faults(protocol, seed=11)
    model = llm(server, protocol, max_retries=1)

    async def one() -> str:
        try:
            chunks = [c async for c in await model.astream_chat(Q)]
        except QwenCIError as exc:
            return type(exc).__name__
        assert chunks[-1].message.content == "fine"
        return "complete"

    outcomes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), timeout=60)
    assert outcomes.count("complete") > 50
    assert set(outcomes) <= {"complete", "RateLimitError", "IncompleteStreamError",
                             "ProtocolError", "APIConnectionError"}
    await model._get_session().aclient().aclose()
    assert await asyncio.to_thread(server.wait_open_connections, 0) == 0
