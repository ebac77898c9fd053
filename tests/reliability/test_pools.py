"""Connection pools: shared by the model instances with the same transport settings.

A model and its ``model_copy(update=...)`` copies (other sampling options) share one warm
pool: alternating calls open no new connections after warm-up, counted on the 127.0.0.1
server. A pool no instance uses any more is closed, and nothing is left open once the
models are gone.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci.request import Options, build
from qwen_ci.session import Session
from tests.replay import ReplayServer, Reply, compat_stream, native_stream

KEY = "sk-pools"
ANSWER = native_stream([{"reasoning": "think"}, {"content": "42"}, {"finish": "stop"}])
COMPAT = compat_stream(["think"], ["42"])


def reply_for(protocol: str) -> Reply:
    return Reply(ANSWER if protocol == "dashscope" else COMPAT)


def langchain(server: ReplayServer, protocol: str) -> Any:
    return ChatQwenCodeInterpreter(api_key=KEY, base_url=server.base_url, protocol=protocol,
                                   max_retries=0, temperature=0.1)


def llamaindex(server: ReplayServer, protocol: str) -> Any:
    return QwenCodeInterpreter(api_key=KEY, base_url=server.base_url, protocol=protocol,
                               max_retries=0, temperature=0.1)


def call(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str(model.invoke([HumanMessage("q")]).content)
    return str(model.chat([ChatMessage(role="user", content="q")]).message.content)


async def acall(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str((await model.ainvoke([HumanMessage("q")])).content)
    return str((await model.achat([ChatMessage(role="user", content="q")])).message.content)


def sent_temperatures(server: ReplayServer, protocol: str) -> list[Any]:
    if protocol == "dashscope":
        return [r.json["parameters"].get("temperature") for r in server.requests]
    return [r.json.get("temperature") for r in server.requests]


MAKERS: list[Callable[[ReplayServer, str], Any]] = [langchain, llamaindex]


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
@pytest.mark.parametrize("make", MAKERS, ids=["langchain", "llamaindex"])
def test_copies_keep_warm_pools_and_nothing_is_left_open(
    server: ReplayServer, make: Callable[[ReplayServer, str], Any], protocol: str
) -> None:
    server.chooser = lambda _: reply_for(protocol)
    llm = make(server, protocol)
    hot = llm.model_copy(update={"temperature": 0.9})
    budget = llm.model_copy(update={"thinking_budget": 64})
    models = [llm, hot, budget]
    for model in models:  # warm-up: one connection for the three
        assert call(model) == "42"
    warm = server.connections
    assert warm == 1
    for _ in range(3):
        for model in models:
            assert call(model) == "42"
    assert server.connections == warm  # alternating calls reused the warm pools
    assert sent_temperatures(server, protocol) == [0.1, 0.9, 0.1] * 4  # options per call
    assert server.open_connections == 1

    llm.timeout = 30.0  # a transport setting: a new pool; the copies keep the old one
    assert call(llm) == "42"
    assert server.connections == warm + 1
    assert server.wait_open_connections(2) == 2
    del hot, budget, models, model
    gc.collect()
    assert server.wait_open_connections(1) == 1  # unused: closed


    del llm
    gc.collect()
    assert server.wait_open_connections(0) == 0  # no pool left open


@pytest.mark.parametrize("make", MAKERS, ids=["langchain", "llamaindex"])
async def test_async_copies_keep_warm_pools_and_nothing_is_left_open(
    server: ReplayServer, make: Callable[[ReplayServer, str], Any]
) -> None:
    server.chooser = lambda _: reply_for("dashscope")
    llm = make(server, "dashscope")
    models = [llm, llm.model_copy(update={"temperature": 0.9})]
    for model in models:
        assert await acall(model) == "42"
    warm = server.connections
    for _ in range(3):
        for model in models:
            assert await acall(model) == "42"
    assert server.connections == warm == 1

    llm.max_retries = 1  # moves to a new pool; the copy keeps the old one
    assert await acall(llm) == "42"
    assert await asyncio.to_thread(server.wait_open_connections, 2) == 2

    del llm, models, model
    gc.collect()
    await asyncio.sleep(0)  # let the scheduled closes run
    assert await asyncio.to_thread(server.wait_open_connections, 0) == 0


def test_a_replaced_session_closes_after_its_last_stream(server: ReplayServer) -> None:
    server.chooser = lambda _: Reply(ANSWER, delay=0.01)
    session = Session(api_key=KEY, base_url=server.base_url)
    request = build([{"role": "user", "content": "q"}], Options(), "dashscope")
    events = session.stream(request)
    next(events)  # a stream is in flight
    session.retire()
    assert not session.closed  # not cut off
    assert list(events)  # the stream finishes
    assert session.closed
    assert server.wait_open_connections(0) == 0
