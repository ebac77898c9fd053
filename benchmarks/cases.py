"""What is measured: one call each, reading a whole stream from the frame server.

A *case* is set up once per stream (client, model instance: connection pools are reused
across repetitions, as in an application) and returns a runner; a runner makes one call,
consumes everything and returns how many items it got (chunks, events or characters),
so that a broken case shows instead of timing nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from frames import MODEL, PROMPT, RESPONSES_MODEL

API_KEY = "sk-benchmark"
EXTRA_BODY = {"enable_thinking": True, "enable_code_interpreter": True}
COMPAT = "/compatible-mode/v1"

SyncRunner = Callable[[], int]
AsyncRunner = Callable[[], Awaitable[int]]
Runner = SyncRunner | AsyncRunner


@dataclass(frozen=True)
class Case:
    """A measured call: ``stream`` is the protocol served (``native``, ``compat`` or
    ``responses``)."""

    key: str
    label: str
    stream: str
    setup: Callable[[str], Runner]
    is_async: bool = False
    needs: str | None = None  # an optional package (the baselines)


# ------------------------------------------------------------------ parse floor

_NATIVE_BODY = json.dumps(
    {"model": MODEL, "input": {"messages": [{"role": "user", "content": PROMPT}]},
     "parameters": {"enable_code_interpreter": True, "enable_thinking": True,
                    "result_format": "message", "incremental_output": True}},
    ensure_ascii=False,
).encode()
_HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
            "Accept": "text/event-stream"}


def _lines(buf: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    lines = (buf + chunk).split(b"\n")
    return lines, lines.pop()


def _parse(lines: list[bytes]) -> int:
    count = 0
    for line in lines:
        if line[:5] == b"data:" and line[5:].strip() != b"[DONE]":
            json.loads(line[5:])
            count += 1
    return count


def floor_sync(url: str) -> SyncRunner:
    """httpx + ``json.loads`` per frame, nothing else."""
    client = httpx.Client(timeout=60)

    def run() -> int:
        count, buf = 0, b""
        with client.stream("POST", url + "/floor", content=_NATIVE_BODY,
                           headers=_HEADERS) as response:
            for chunk in response.iter_bytes():
                lines, buf = _lines(buf, chunk)
                count += _parse(lines)
        return count + _parse([buf])

    return run


def floor_async(url: str) -> AsyncRunner:
    """Async httpx + ``json.loads`` per frame, nothing else."""
    client = httpx.AsyncClient(timeout=60)

    async def run() -> int:
        count, buf = 0, b""
        async with client.stream("POST", url + "/floor", content=_NATIVE_BODY,
                                 headers=_HEADERS) as response:
            async for chunk in response.aiter_bytes():
                lines, buf = _lines(buf, chunk)
                count += _parse(lines)
        return count + _parse([buf])

    return run


# ------------------------------------------------------------------ the core client


def _messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT}]


def _options(protocol: str) -> Any:
    """Default options, with a model the protocol serves."""
    from qwen_ci import Options

    return Options(model=RESPONSES_MODEL) if protocol == "responses" else Options()


def core_sync(protocol: str) -> Callable[[str], SyncRunner]:
    def setup(url: str) -> SyncRunner:
        from qwen_ci import Client, build

        client = Client(api_key=API_KEY, base_url=url)

        def run() -> int:
            count = 0
            for _ in client.stream(build(_messages(), _options(protocol), protocol)):
                count += 1
            return count

        return run

    return setup


def core_async(protocol: str) -> Callable[[str], AsyncRunner]:
    def setup(url: str) -> AsyncRunner:
        from qwen_ci import AsyncClient, build

        client = AsyncClient(api_key=API_KEY, base_url=url)

        async def run() -> int:
            count = 0
            async for _ in client.stream(build(_messages(), _options(protocol), protocol)):
                count += 1
            return count

        return run

    return setup


def core_collect(protocol: str) -> Callable[[str], SyncRunner]:
    def setup(url: str) -> SyncRunner:
        from qwen_ci import Client, build, collect

        client = Client(api_key=API_KEY, base_url=url)

        def run() -> int:
            result = collect(client.stream(build(_messages(), _options(protocol), protocol)))
            return len(result.text) + len(result.reasoning)

        return run

    return setup


# ------------------------------------------------------------------ LangChain


def lc_ours(protocol: str, method: str) -> Callable[[str], SyncRunner]:
    def setup(url: str) -> SyncRunner:
        from langchain_qwen_ci import ChatQwenCodeInterpreter

        llm = ChatQwenCodeInterpreter(base_url=url, api_key=API_KEY, protocol=protocol)
        if method == "invoke":
            return lambda: len(llm.invoke(PROMPT).text)
        return lambda: sum(1 for _ in llm.stream(PROMPT))

    return setup


def lc_ours_astream(protocol: str) -> Callable[[str], AsyncRunner]:
    def setup(url: str) -> AsyncRunner:
        from langchain_qwen_ci import ChatQwenCodeInterpreter

        llm = ChatQwenCodeInterpreter(base_url=url, api_key=API_KEY, protocol=protocol)

        async def run() -> int:
            return sum([1 async for _ in llm.astream(PROMPT)])

        return run

    return setup


def chat_openai(method: str) -> Callable[[str], SyncRunner]:
    def setup(url: str) -> SyncRunner:
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(
            model=MODEL, base_url=url + COMPAT, api_key=API_KEY, streaming=True,
            stream_usage=True, extra_body=EXTRA_BODY, max_retries=0,
        )
        if method == "invoke":
            return lambda: len(llm.invoke(PROMPT).text)
        return lambda: sum(1 for _ in llm.stream(PROMPT))

    return setup


def sdk_loop(url: str) -> SyncRunner:
    """The raw openai SDK loop: thinking and answer pieces from each chunk's delta."""
    import openai

    client = openai.OpenAI(base_url=url + COMPAT, api_key=API_KEY, max_retries=0)

    def run() -> int:
        text: list[str] = []
        thinking: list[str] = []
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True}, extra_body=EXTRA_BODY,
        )
        for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                if delta.content:
                    text.append(delta.content)
                reasoning = getattr(delta, "reasoning_content", None)
                if reasoning:
                    thinking.append(reasoning)
        return len("".join(text)) + len("".join(thinking))

    return run


# ------------------------------------------------------------------ LlamaIndex


def _li_messages() -> list[Any]:
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="user", content=PROMPT)]


def li_ours(protocol: str, method: str) -> Callable[[str], SyncRunner]:
    def setup(url: str) -> SyncRunner:
        from llamaindex_qwen_ci import QwenCodeInterpreter

        llm = QwenCodeInterpreter(base_url=url, api_key=API_KEY, protocol=protocol)
        if method == "chat":
            return lambda: len(llm.chat(_li_messages()).message.content or "")
        return lambda: sum(1 for _ in llm.stream_chat(_li_messages()))

    return setup


def openai_like(url: str) -> SyncRunner:
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(
        model=MODEL, api_base=url + COMPAT, api_key=API_KEY, is_chat_model=True,
        context_window=262_144, max_retries=0, additional_kwargs={"extra_body": EXTRA_BODY},
    )
    return lambda: sum(1 for _ in llm.stream_chat(_li_messages()))


# ------------------------------------------------------------------ the catalogue

LC = "langchain_openai"
LI = "llama_index.llms.openai_like"

CASES: dict[str, Case] = {
    c.key: c
    for c in [
        Case("floor.native", "parse floor, native frames (httpx + json.loads)", "native",
             floor_sync),
        Case("floor.native.async", "parse floor, native frames, async", "native",
             floor_async, is_async=True),
        Case("floor.compat", "parse floor, compatible frames (httpx + json.loads)", "compat",
             floor_sync),
        Case("floor.compat.async", "parse floor, compatible frames, async", "compat",
             floor_async, is_async=True),
        Case("core.dashscope", "qwen_ci Client.stream, native", "native",
             core_sync("dashscope")),
        Case("core.dashscope.async", "qwen_ci AsyncClient.stream, native", "native",
             core_async("dashscope"), is_async=True),
        Case("core.openai", "qwen_ci Client.stream, compatible", "compat",
             core_sync("openai")),
        Case("core.openai.async", "qwen_ci AsyncClient.stream, compatible", "compat",
             core_async("openai"), is_async=True),
        Case("floor.responses", "parse floor, Responses events (httpx + json.loads)",
             "responses", floor_sync),
        Case("floor.responses.async", "parse floor, Responses events, async", "responses",
             floor_async, is_async=True),
        Case("core.responses", "qwen_ci Client.stream, Responses", "responses",
             core_sync("responses")),
        Case("core.responses.async", "qwen_ci AsyncClient.stream, Responses", "responses",
             core_async("responses"), is_async=True),
        Case("core.dashscope.collect", "qwen_ci collect(Client.stream), native", "native",
             core_collect("dashscope")),
        Case("lc.dashscope.stream", "ChatQwenCodeInterpreter.stream, native", "native",
             lc_ours("dashscope", "stream")),
        Case("lc.dashscope.invoke", "ChatQwenCodeInterpreter.invoke, native", "native",
             lc_ours("dashscope", "invoke")),
        Case("lc.openai.stream", "ChatQwenCodeInterpreter.stream, compatible", "compat",
             lc_ours("openai", "stream")),
        Case("lc.openai.invoke", "ChatQwenCodeInterpreter.invoke, compatible", "compat",
             lc_ours("openai", "invoke")),
        Case("lc.dashscope.astream", "ChatQwenCodeInterpreter.astream, native", "native",
             lc_ours_astream("dashscope"), is_async=True),
        Case("lc.openai.astream", "ChatQwenCodeInterpreter.astream, compatible", "compat",
             lc_ours_astream("openai"), is_async=True),
        Case("chatopenai.stream", "langchain_openai ChatOpenAI.stream", "compat",
             chat_openai("stream"), needs=LC),
        Case("chatopenai.invoke", "langchain_openai ChatOpenAI.invoke (streaming=True)",
             "compat", chat_openai("invoke"), needs=LC),
        Case("sdk.loop", "raw openai SDK loop (create(stream=True))", "compat", sdk_loop,
             needs="openai"),
        Case("li.dashscope.stream_chat", "QwenCodeInterpreter.stream_chat, native", "native",
             li_ours("dashscope", "stream_chat")),
        Case("li.dashscope.chat", "QwenCodeInterpreter.chat, native", "native",
             li_ours("dashscope", "chat")),
        Case("li.openai.stream_chat", "QwenCodeInterpreter.stream_chat, compatible", "compat",
             li_ours("openai", "stream_chat")),
        Case("li.openai.chat", "QwenCodeInterpreter.chat, compatible", "compat",
             li_ours("openai", "chat")),
        Case("openailike.stream_chat", "llama_index OpenAILike.stream_chat", "compat",
             openai_like, needs=LI),
    ]
}
