"""QwenCodeInterpreter against a replay server over real HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool
from pydantic import ValidationError

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import (
    AuthenticationError,
    BadRequestError,
    IncompleteStreamError,
    InvalidRequestError,
    QwenCIError,
    RateLimitError,
)
from tests.llamaindex.common import (
    ANSWER,
    CI,
    ENDPOINTS,
    OK,
    QUESTION,
    THINKING,
    TOOL_INFO,
    TWO_RUNS,
    TWO_RUNS_INFO,
    call,
    flat,
    make_llm,
    user,
)
from tests.replay import (
    RECORDED,
    ReplayServer,
    Reply,
    compat_stream,
    native_frame,
    native_stream,
    recorded_reply,
    recorded_texts,
)

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "plugins")


R = TypeVar("R", ChatResponse, CompletionResponse)


def final(last: R) -> R:
    """The last stream chunk as ``chat``/``complete`` return it: its ``delta`` is ``""``
    (LlamaIndex's own loops print deltas), the rest is equal."""
    assert last.delta == ""
    return last.model_copy(update={"delta": None})

def last_frame(name: str) -> dict[str, Any]:
    """The last data frame of a recording, read independently of the client."""
    lines = (RECORDED / f"{name}.response.body.txt").read_text("utf-8-sig").splitlines()
    data: dict[str, Any] = json.loads([x for x in lines if x.startswith("data:")][-1][5:])
    return data


# ------------------------------------------------------------------ recorded conformance


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_recorded_exchange_through_every_endpoint(server: ReplayServer,
                                                        endpoint: str) -> None:
    server.default = recorded_reply(CI)
    final, chunks = await call(make_llm(server), endpoint, QUESTION)
    answer, thinking = recorded_texts(CI)
    text, kwargs = flat(final)
    assert text == answer
    assert kwargs["reasoning_content"] == thinking
    assert "我使用代码计算器计算出了结果" in thinking  # the thinking after the run is kept
    assert kwargs["tool_info"] == TOOL_INFO
    assert "tool_calls" not in kwargs
    assert {k: kwargs[k] for k in USAGE_KEYS} == {
        "prompt_tokens": 723, "completion_tokens": 254, "total_tokens": 977,
        "reasoning_tokens": 150, "plugins": {"code_interpreter": {"count": 1}}}
    assert kwargs["request_id"] == "752a7de3-d3aa-4aeb-82ab-a8b08b41524b"
    assert final.raw == last_frame(CI)
    if isinstance(final, ChatResponse):
        assert final.message.blocks == [ThinkingBlock(content=thinking, num_tokens=150),
                                        TextBlock(text=answer)]
    if chunks:
        assert "".join(c.delta or "" for c in chunks) == answer
        assert "".join(c.additional_kwargs.get("thinking_delta", "") for c in chunks) == thinking
        assert [r for c in chunks for r in c.additional_kwargs.get("tool_info_delta", [])] == (
            TOOL_INFO)
    # the request is the recorded one, byte for byte in meaning
    sent = server.requests[0]
    recorded_body = json.loads(
        (RECORDED / f"{CI}.request.body.json").read_text("utf-8-sig"))
    assert sent.json == recorded_body
    head = (RECORDED / f"{CI}.request.header.txt").read_text("utf-8-sig").split()
    assert (sent.method, sent.path) == (head[0], head[1])


@pytest.mark.usefixtures("recorded")
async def test_recorded_reasoning_and_search_exchanges(server: ReplayServer) -> None:
    server.queue(recorded_reply("single-generation-message-reasoning-sse"),
                 recorded_reply("single-generation-message-search-sse"),
                 recorded_reply("single-generation-message-search-sse"))
    llm = make_llm(server)
    thinking = llm.chat(user("q"))
    assert (thinking.message.content or "").endswith("！😊")
    block = thinking.message.blocks[0]
    assert isinstance(block, ThinkingBlock) and block.num_tokens == 10
    assert thinking.message.additional_kwargs["tool_info"] == []
    search = llm.chat(user("q"))
    assert len(search.message.additional_kwargs["search_info"]["search_results"]) == 5
    assert search.additional_kwargs["plugins"]["search"]["count"] == 1
    chunks = [c async for c in await llm.astream_chat(user("q"))]
    assert final(chunks[-1]) == search


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("name", "cls", "status", "code"),
    [("auth-error-nosse", AuthenticationError, 401, "InvalidApiKey"),
     ("parameter-error-sse", BadRequestError, 400, "InvalidParameter")],
)
async def test_recorded_errors_through_every_endpoint(
    server: ReplayServer, endpoint: str, name: str, cls: type[QwenCIError], status: int,
    code: str,
) -> None:
    server.default = recorded_reply(name)
    with pytest.raises(cls) as info:
        await call(make_llm(server), endpoint, "q")
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.request_id
    assert len(server.requests) == 1  # 4xx is never retried


# ------------------------------------------------------------------ the output contract


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
async def test_chat_equals_last_chunk_of_stream_chat_sync_and_async(
    server: ReplayServer, protocol: str
) -> None:
    server.default = Reply(TWO_RUNS if protocol == "dashscope" else compat_stream(
        ["First ", "compute.", "Then ", "done."], ["x is 1024", "; x//4 is 256."]))
    llm = make_llm(server, protocol=protocol)
    chat = llm.chat(user("q"))
    assert final(list(llm.stream_chat(user("q")))[-1]) == chat
    assert await llm.achat(user("q")) == chat
    assert final([c async for c in await llm.astream_chat(user("q"))][-1]) == chat
    complete = llm.complete("q")
    assert final(list(llm.stream_complete("q"))[-1]) == complete
    assert await llm.acomplete("q") == complete
    assert final([c async for c in await llm.astream_complete("q")][-1]) == complete
    assert complete.text == chat.message.content == ANSWER
    assert complete.additional_kwargs == {**chat.message.additional_kwargs,
                                          **chat.additional_kwargs}
    assert complete.raw == chat.raw
    assert chat.message.role == MessageRole.ASSISTANT
    assert chat.message.blocks == [ThinkingBlock(content=THINKING,
                                                 num_tokens=chat.additional_kwargs[
                                                     "reasoning_tokens"]),
                                   TextBlock(text=ANSWER)]
    assert chat.message.additional_kwargs["reasoning_content"] == THINKING
    assert isinstance(chat.raw, dict)
    if protocol == "dashscope":
        assert chat.message.additional_kwargs["tool_info"] == TWO_RUNS_INFO
        assert chat.additional_kwargs["plugins"] == {"code_interpreter": {"count": 2}}
        assert chat.additional_kwargs["prompt_tokens"] == 260  # the latest round's prompt
        assert chat.raw["output"]["choices"][0]["finish_reason"] == "stop"
        assert chat.raw["usage"]["input_tokens"] == 260
    else:
        assert chat.message.additional_kwargs["tool_info"] == []  # not on this protocol
        assert {k: chat.additional_kwargs[k] for k in USAGE_KEYS} == {
            "prompt_tokens": 719, "completion_tokens": 245, "total_tokens": 964,
            "reasoning_tokens": 153, "plugins": {"code_interpreter": {"count": None}}}
        assert chat.additional_kwargs["model_name"] == "qwen3-max-2026-01-23"
        assert chat.raw["usage"]["prompt_tokens"] == 719 and chat.raw["choices"] == []


def test_stream_chat_chunks_follow_the_llama_index_convention(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    chunks = list(make_llm(server).stream_chat(user("q")))
    pieces: list[tuple[str, str]] = []
    for chunk in chunks:
        if "thinking_delta" in chunk.additional_kwargs:
            pieces.append(("thinking", chunk.additional_kwargs["thinking_delta"]))
        for run in chunk.additional_kwargs.get("tool_info_delta", []):
            pieces.append(("code", run["code_interpreter"]["code"]))
        if chunk.delta:
            pieces.append(("text", chunk.delta))
    # each run appears as soon as its code is final, before the thinking that follows it
    assert pieces == [
        ("thinking", "First "), ("thinking", "compute."), ("code", "x = 2**10"),
        ("thinking", "Then "), ("code", "print(x // 4)"), ("thinking", "done."),
        ("text", "x is 1024"), ("text", "; x//4 is 256."),
    ]
    thinking, text, runs = "", "", []
    for chunk in chunks[:-1]:
        thinking += chunk.additional_kwargs.get("thinking_delta", "")
        text += chunk.delta or ""
        runs += chunk.additional_kwargs.get("tool_info_delta", [])
        message = chunk.message  # cumulative thinking, text and runs so far
        assert message.content == text
        assert [b.content for b in message.blocks if isinstance(b, ThinkingBlock)] == [thinking]
        assert message.additional_kwargs["reasoning_content"] == thinking
        assert message.additional_kwargs["tool_info"] == runs
        assert "tool_calls" not in message.additional_kwargs
        assert not set(USAGE_KEYS) & set(chunk.additional_kwargs)  # usage: last chunk only
        assert chunk.raw is None
    last = chunks[-1]
    assert last.delta == "" and last.message.content == ANSWER  # "", never None
    assert last.message.additional_kwargs["tool_info"] == TWO_RUNS_INFO
    assert set(USAGE_KEYS) <= set(last.additional_kwargs)


async def test_stream_complete_text_is_cumulative_answer(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    llm = make_llm(server)
    for chunks in (list(llm.stream_complete("q")),
                   [c async for c in await llm.astream_complete("q")]):
        answer = ""
        for chunk in chunks:
            answer += chunk.delta or ""
            assert chunk.text == answer
        assert "".join(c.additional_kwargs.get("thinking_delta", "") for c in chunks) == THINKING
        assert chunks[-1].additional_kwargs["tool_info"] == TWO_RUNS_INFO
        assert chunks[-1].additional_kwargs["reasoning_content"] == THINKING
        assert chunks[-1].additional_kwargs["total_tokens"] > 0


def test_search_info_surfaces_in_the_message(server: ReplayServer) -> None:
    first = native_frame({"output": {"choices": [{"message": {"content": "", "role": "assistant"},
                                                  "finish_reason": "null"}],
                                     "search_info": {"search_results": [{"index": 1,
                                                                         "title": "t"}]}},
                          "usage": {}, "request_id": "r"})
    server.default = Reply([first, *native_stream([{"content": "sunny"}, {"finish": "stop"}],
                                                  request_id="r")])
    llm = make_llm(server, extra_body={"enable_search": True})
    response = llm.chat(user("weather?"))
    assert response.message.additional_kwargs["search_info"] == {
        "search_results": [{"index": 1, "title": "t"}]}
    assert final(list(llm.stream_chat(user("weather?")))[-1]) == response
    assert server.requests[0].json["parameters"]["enable_search"] is True


# ------------------------------------------------------------------ the request sent


def test_fields_and_call_arguments_reach_the_wire(server: ReplayServer) -> None:
    server.default = Reply(OK)
    llm = make_llm(server, protocol="dashscope", temperature=0.3, top_p=0.8, max_tokens=99,
                   seed=5, stop=["END"], thinking_budget=400,
                   extra_body={"search_options": {"a": 1, "b": 2}},
                   default_headers={"X-App": "demo"})
    llm.chat(user("q"))
    assert server.requests[0].json["parameters"] == {
        "enable_code_interpreter": True, "enable_thinking": True, "result_format": "message",
        "incremental_output": True, "temperature": 0.3, "top_p": 0.8, "max_tokens": 99,
        "seed": 5, "stop": ["END"], "thinking_budget": 400, "search_options": {"a": 1, "b": 2},
    }
    assert server.requests[0].headers["x-app"] == "demo"
    llm.chat(user("q"), temperature=0.9, stop=["you"], extra_body={"search_options": {"b": 3}})
    params = server.requests[1].json["parameters"]
    assert params["temperature"] == 0.9 and params["stop"] == ["you"]
    assert params["search_options"] == {"a": 1, "b": 3}  # deep-merged, the call wins
    llm.complete("q", formatted=True, model="qwen3.5-plus")  # LlamaIndex's own kwarg is dropped
    assert server.requests[2].json["model"] == "qwen3.5-plus"
    assert server.requests[2].path.endswith("/multimodal-generation/generation")
    assert llm.extra_body == {"search_options": {"a": 1, "b": 2}}  # not mutated


def test_compatible_protocol_request(server: ReplayServer) -> None:
    server.default = Reply(compat_stream(["t"], ["a"]))
    make_llm(server, protocol="openai", max_tokens=7).chat(user("q"))
    got = server.requests[0]
    assert got.path == "/compatible-mode/v1/chat/completions"
    assert got.json["enable_code_interpreter"] is True and got.json["enable_thinking"] is True
    assert got.json["stream"] is True and got.json["max_tokens"] == 7
    assert got.json["messages"] == [{"role": "user", "content": "q"}]


def test_messages_translation(server: ReplayServer) -> None:
    server.default = Reply(OK)
    previous = ChatMessage(
        role="assistant",
        blocks=[ThinkingBlock(content="secret thoughts"), TextBlock(text="hello")],
        additional_kwargs={"reasoning_content": "secret thoughts", "tool_info": TOOL_INFO},
    )
    history = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="developer", content="Use code."),
        ChatMessage(role="user", content="hi"),
        previous,
        ChatMessage(role="user", blocks=[TextBlock(text="2**8?"), TextBlock(text="Be exact.")]),
    ]
    make_llm(server).chat(history)
    assert server.requests[0].json["input"]["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse code."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},  # thinking and runs are not sent back
        {"role": "user", "content": "2**8?\nBe exact."},  # joined as ChatMessage.content is
    ]


def test_image_blocks_for_multimodal_models(server: ReplayServer, tmp_path: Path) -> None:
    server.default = Reply(native_stream([{"content": [{"text": "a cat"}], "finish": "stop"}]))
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"\x89PNG-not-really")
    message = ChatMessage(role="user", blocks=[
        TextBlock(text="What is it?"),
        ImageBlock(url="https://example.com/cat.png"),
        ImageBlock(image=b"abc", image_mimetype="image/jpeg"),
        ImageBlock(path=picture),
    ])
    response = make_llm(server, model="qwen3.5-plus", protocol="dashscope").chat([message])
    assert response.message.content == "a cat"
    assert server.requests[0].json["input"]["messages"][0]["content"] == [
        {"text": "What is it?"}, {"image": "https://example.com/cat.png"},
        {"image": "data:image/jpeg;base64,YWJj"},
        {"image": "data:image/png;base64,iVBORy1ub3QtcmVhbGx5"}]


def test_image_block_from_a_file_object(server: ReplayServer) -> None:
    try:  # file objects are accepted by later llama-index-core 0.14 releases only
        block = ImageBlock(image=io.BytesIO(b"abcd"), image_mimetype="image/gif")
    except ValueError as exc:
        pytest.skip(f"this llama-index-core's ImageBlock takes no file object: {exc}")
    server.default = Reply(native_stream([{"content": [{"text": "a gif"}], "finish": "stop"}]))
    message = ChatMessage(role="user", blocks=[TextBlock(text="What is it?"), block])
    make_llm(server, model="qwen3.5-plus", protocol="dashscope").chat([message])
    assert server.requests[0].json["input"]["messages"][0]["content"] == [
        {"text": "What is it?"}, {"image": "data:image/gif;base64,YWJjZA=="}]


# ------------------------------------------------------------------ refused before any request


def double(x: int) -> int:
    """Double x."""
    return 2 * x


TOOL = FunctionTool.from_defaults(double)
CALLED = ChatMessage(role="assistant", content="",
                     additional_kwargs={"tool_calls": [{"id": "1", "type": "function",
                                                        "function": {"name": "double"}}]})
TOOL_BLOCK = ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_name="double",
                                                                 tool_kwargs={"x": 1})])
TOOL_RESULT = ChatMessage(role="tool", content="2", additional_kwargs={"tool_call_id": "1"})

Refusal = tuple[Callable[[QwenCodeInterpreter], Any], str]
REFUSALS: list[Refusal] = [
    (lambda llm: llm.predict_and_call([TOOL], "double 2"), "mutually exclusive"),
    (lambda llm: llm.chat(user("q"), tools=[{"type": "function"}]), "mutually exclusive"),
    (lambda llm: llm.chat(user("q"), tool_choice="auto"), "mutually exclusive"),
    (lambda llm: llm.chat(user("q"), functions=[{"name": "f"}]), "mutually exclusive"),
    (lambda llm: llm.stream_chat(user("q"), tools=[TOOL]), "mutually exclusive"),
    (lambda llm: llm.complete("q", tools=[TOOL]), "mutually exclusive"),
    (lambda llm: llm.stream_complete("q", tool_choice="auto"), "mutually exclusive"),
    (lambda llm: llm.chat([*user("q"), CALLED]), "mutually exclusive"),
    (lambda llm: llm.chat([*user("q"), TOOL_BLOCK]), "mutually exclusive"),
    (lambda llm: llm.stream_chat([*user("q"), TOOL_RESULT]), "mutually exclusive"),
    (lambda llm: llm.chat(user("q"), response_format={"type": "json_object"}), "JSON mode"),
    (lambda llm: llm.chat(user("q"), extra_body={"enable_thinking": False}), "thinking mode"),
    (lambda llm: llm.chat([]), "messages is empty"),
    (lambda llm: llm.chat([ChatMessage(role="user", blocks=[
        ImageBlock(url="https://x/c.png")])]), "text model"),
    (lambda llm: llm.chat([ChatMessage(role="user", blocks=[
        AudioBlock(url="https://x/a.wav")])]), "'audio' block"),
    (lambda llm: llm.complete("q", temprature=1), "Unsupported argument"),
    (lambda llm: llm.stream_complete("q", temperature=5), "out of range"),
]


@pytest.mark.parametrize(("call_", "match"), REFUSALS)
def test_bad_input_raises_before_any_request(server: ReplayServer,
                                             call_: Callable[[QwenCodeInterpreter], Any],
                                             match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        call_(make_llm(server))  # streams raise on the call, not on first iteration
    assert server.requests == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tools": [TOOL]}, "mutually exclusive"),
    ({"tool_choice": "auto"}, "mutually exclusive"),
    ({"functions": [{"name": "f"}]}, "mutually exclusive"),
])
async def test_tool_arguments_are_refused_by_every_endpoint(
    server: ReplayServer, endpoint: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match) as info:
        await call(make_llm(server), endpoint, "q", **kwargs)
    assert "ReAct" in str(info.value)  # says how to combine the interpreter with tools
    assert server.requests == []


async def test_apredict_and_call_is_refused(server: ReplayServer) -> None:
    with pytest.raises(InvalidRequestError, match="mutually exclusive") as info:
        await make_llm(server).apredict_and_call([TOOL], "double 2")
    assert "ReAct" in str(info.value)
    assert server.requests == []


async def test_tool_history_is_refused_by_async_streams(server: ReplayServer) -> None:
    llm = make_llm(server)
    with pytest.raises(InvalidRequestError, match="mutually exclusive"):
        await llm.astream_chat([*user("q"), TOOL_RESULT])
    with pytest.raises(InvalidRequestError, match="mutually exclusive"):
        await llm.achat([*user("q"), CALLED])
    assert server.requests == []


@pytest.mark.parametrize("field", ["tools", "tool_choice", "functions"])
def test_tools_at_construction_are_refused(field: str) -> None:
    with pytest.raises((InvalidRequestError, ValidationError), match="mutually exclusive"):
        QwenCodeInterpreter(api_key="k", **{field: [{"type": "function"}]})


def test_unknown_constructor_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        QwenCodeInterpreter(api_key="k", temprature=1)


async def test_missing_key_raises_at_call_time_before_any_request(server: ReplayServer) -> None:
    llm = QwenCodeInterpreter(base_url=server.base_url)  # constructing without a key works
    assert llm.api_key is None
    with pytest.raises(InvalidRequestError, match="DASHSCOPE_API_KEY"):
        llm.chat(user("q"))
    with pytest.raises(InvalidRequestError, match="DASHSCOPE_API_KEY"):
        llm.stream_complete("q")
    with pytest.raises(InvalidRequestError, match="DASHSCOPE_API_KEY"):
        await llm.astream_chat(user("q"))
    assert server.requests == []


def test_key_and_base_url_from_environment(server: ReplayServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url + "/api/v1")
    server.default = Reply(OK)
    assert QwenCodeInterpreter().complete("q").text == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-env"


# ------------------------------------------------------------------ errors


async def test_service_errors_propagate_typed_and_are_not_retried_after_output(
    server: ReplayServer,
) -> None:
    frames = native_stream([{"reasoning": "a"}, {"content": "part"}])
    frames.append(native_frame({"code": "Throttling.RateQuota", "message": "slow down",
                                "request_id": "rq"}, event="error", status=429))
    server.default = Reply(frames)
    llm = make_llm(server)
    with pytest.raises(RateLimitError) as info:
        llm.chat(user("q"))
    assert (info.value.status, info.value.code, info.value.request_id) == (
        429, "Throttling.RateQuota", "rq")
    seen: list[ChatResponse] = []
    with pytest.raises(RateLimitError):
        async for chunk in await llm.astream_chat(user("q")):
            seen.append(chunk)
    assert [c.delta for c in seen] == ["", "part"]  # what came before the error was streamed
    assert len(server.requests) == 2


def test_cut_off_stream_is_an_error_not_an_answer(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"reasoning": "a"}, {"content": "half an ans"}]))
    llm = make_llm(server)
    with pytest.raises(IncompleteStreamError):
        llm.chat(user("q"))
    with pytest.raises(IncompleteStreamError):
        list(llm.stream_complete("q"))


# ------------------------------------------------------------------ the class


def test_is_a_plain_llm_with_real_metadata() -> None:
    llm = QwenCodeInterpreter(api_key="k")
    assert isinstance(llm, LLM)
    assert not isinstance(llm, CustomLLM | FunctionCallingLLM)
    meta = llm.metadata
    assert (meta.is_chat_model, meta.is_function_calling_model) == (True, False)
    assert (meta.context_window, meta.num_output, meta.model_name) == (
        262_144, 32_768, "qwen3-max-preview")
    plus = QwenCodeInterpreter(api_key="k", model="qwen3.5-plus").metadata
    assert (plus.context_window, plus.num_output, plus.model_name) == (
        1_000_000, 65_536, "qwen3.5-plus")


def test_key_never_serialized_or_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-4d2e9b"
    llm = QwenCodeInterpreter(api_key=canary, base_url="http://127.0.0.1:1", temperature=0.2)
    assert llm.api_key is not None and llm.api_key.get_secret_value() == canary
    data = llm.to_dict()
    assert "api_key" not in data and data["class_name"] == "QwenCodeInterpreter"
    # to_payload() exists from a later llama-index-core 0.14 release on
    payload = [llm.to_payload()] if hasattr(llm, "to_payload") else []
    for text in (repr(llm), str(llm), llm.to_json(), data, llm.model_dump(),
                 llm.model_dump_json(), *payload, llm.metadata, llm._get_session()):
        assert canary not in str(text)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-revived")
    revived = QwenCodeInterpreter.from_json(llm.to_json())
    assert revived.api_key is not None and revived.api_key.get_secret_value() == "sk-revived"
    assert (revived.base_url, revived.temperature) == ("http://127.0.0.1:1", 0.2)
    assert QwenCodeInterpreter.class_name() == "QwenCodeInterpreter"


async def test_one_connection_pool_per_model_instance(server: ReplayServer) -> None:
    server.default = Reply(OK)
    llm = make_llm(server)
    for _ in range(3):
        llm.chat(user("q"))
    sync_ports = {r.client_port for r in server.requests}
    for _ in range(3):
        await llm.achat(user("q"))
        [c async for c in await llm.astream_complete("q")]
    async_ports = {r.client_port for r in server.requests[3:]}
    assert len(sync_ports) == 1 and len(async_ports) == 1


async def test_async_endpoints_use_the_async_client_only(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    llm = make_llm(server)
    for endpoint in ENDPOINTS[4:]:
        final, _ = await call(llm, endpoint, "q")
        assert flat(final)[0] == ANSWER
    assert llm._get_session()._client is None  # no sync client: nothing ran in a thread


def test_changed_settings_take_effect(server: ReplayServer) -> None:
    server.default = Reply(OK)
    llm = make_llm(server, temperature=0.1)
    llm.chat(user("q"))
    llm.model_copy(update={"temperature": 0.7}).chat(user("q"))
    llm.temperature = 0.5
    llm.chat(user("q"))
    temps = [r.json["parameters"]["temperature"] for r in server.requests]
    assert temps == [0.1, 0.7, 0.5]
