"""ChatQwenCodeInterpreter against a replay server over real HTTP."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.load import dumpd, dumps, loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, ValidationError

from langchain_qwen_ci import PROVIDER, ChatQwenCodeInterpreter
from qwen_ci import IncompleteStreamError, InvalidRequestError, RateLimitError
from tests.replay import (
    CI,
    QUESTION,
    TOOL_INFO,
    TWO_RUNS,
    TWO_RUNS_INFO,
    ReplayServer,
    Reply,
    compat_stream,
    native_frame,
    native_stream,
    recorded_reply,
    recorded_texts,
)


def model(server: ReplayServer, **kwargs: Any) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, **kwargs)


def add(chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def same_message(a: BaseMessage, b: BaseMessage) -> None:
    assert a.content == b.content
    assert a.additional_kwargs == b.additional_kwargs
    assert a.response_metadata == b.response_metadata
    assert getattr(a, "usage_metadata", None) == getattr(b, "usage_metadata", None)


# ------------------------------------------------------------------ conformance


@pytest.mark.usefixtures("recorded")
def test_recorded_invoke(server: ReplayServer) -> None:
    server.default = recorded_reply(CI)
    msg = model(server).invoke(QUESTION)
    assert isinstance(msg, AIMessage)
    answer, thinking = recorded_texts(CI)
    assert msg.content == answer
    assert msg.additional_kwargs["reasoning_content"] == thinking
    assert "我使用代码计算器计算出了结果" in thinking  # the thinking after the run is kept
    assert msg.additional_kwargs["tool_info"] == TOOL_INFO
    assert msg.usage_metadata == {
        "input_tokens": 723, "output_tokens": 254, "total_tokens": 977,
        "input_token_details": {"cache_read": 0},
        "output_token_details": {"reasoning": 150},
    }
    assert msg.response_metadata == {
        "model_provider": PROVIDER, "model_name": "qwen3-max-preview", "finish_reason": "stop",
        "request_id": "752a7de3-d3aa-4aeb-82ab-a8b08b41524b",
        "plugins": {"code_interpreter": {"count": 1}},
    }


@pytest.mark.usefixtures("recorded")
def test_recorded_stream_sums_to_invoke(server: ReplayServer) -> None:
    server.default = recorded_reply(CI)
    llm = model(server)
    invoked = llm.invoke(QUESTION)
    chunks = list(llm.stream(QUESTION))
    same_message(add(chunks), invoked)
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None
    assert all(c.usage_metadata is None for c in chunks[:-1])
    assert all("model_name" not in c.response_metadata for c in chunks[:-1])
    assert all(c.additional_kwargs.get("reasoning_content", "x") for c in chunks)


@pytest.mark.usefixtures("recorded")
async def test_recorded_async_invoke_and_stream(server: ReplayServer) -> None:
    server.default = recorded_reply(CI)
    llm = model(server)
    invoked = await llm.ainvoke(QUESTION)
    chunks = [c async for c in llm.astream(QUESTION)]
    assert invoked.content == recorded_texts(CI)[0]
    assert invoked.additional_kwargs["tool_info"] == TOOL_INFO
    same_message(add(chunks), invoked)


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
async def test_invoke_equals_sum_of_stream_sync_and_async(server: ReplayServer,
                                                          protocol: str) -> None:
    frames = TWO_RUNS if protocol == "dashscope" else compat_stream(
        ["First ", "compute. ", "done."], ["x is 1024", "; x//4 is 256."])
    server.default = Reply(frames)
    llm = model(server, protocol=protocol)
    invoked = llm.invoke("q")
    same_message(add(list(llm.stream("q"))), invoked)
    same_message(await llm.ainvoke("q"), invoked)
    same_message(add([c async for c in llm.astream("q")]), invoked)
    assert invoked.content == "x is 1024; x//4 is 256."
    if protocol == "dashscope":
        assert invoked.additional_kwargs["tool_info"] == TWO_RUNS_INFO
        assert invoked.additional_kwargs["reasoning_content"] == "First compute.Then done."
        assert invoked.response_metadata["plugins"] == {"code_interpreter": {"count": 2}}
        assert invoked.usage_metadata is not None
        assert invoked.usage_metadata["input_tokens"] == 260
    else:
        # one contract for both adapters: no code returned, run count unknown (not 0)
        assert invoked.additional_kwargs["tool_info"] == []
        assert invoked.response_metadata["plugins"] == {"code_interpreter": {"count": None}}
        assert invoked.response_metadata["model_name"] == "qwen3-max-2026-01-23"
        assert invoked.usage_metadata is not None
        assert invoked.usage_metadata["output_token_details"] == {"reasoning": 153}


def test_runs_arrive_in_stream_order_before_the_thinking_after_them(server: ReplayServer) -> None:
    server.queue(Reply(TWO_RUNS))
    pieces: list[tuple[str, Any]] = []
    for chunk in model(server).stream("q"):
        if "reasoning_content" in chunk.additional_kwargs:
            pieces.append(("thinking", chunk.additional_kwargs["reasoning_content"]))
        if chunk.additional_kwargs.get("tool_info"):  # the last chunk has an empty list
            pieces.append(("code", chunk.additional_kwargs["tool_info"][0]["code_interpreter"]
                           ["code"]))
        if chunk.content:
            pieces.append(("text", chunk.content))
    assert pieces == [
        ("thinking", "First "), ("thinking", "compute."), ("code", "x = 2**10"),
        ("thinking", "Then "), ("code", "print(x // 4)"), ("thinking", "done."),
        ("text", "x is 1024"), ("text", "; x//4 is 256."),
    ]


def test_content_blocks_reasoning_runs_then_text(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    llm = model(server)
    msg = llm.invoke("q")
    blocks = msg.content_blocks
    assert [b["type"] for b in blocks] == [
        "reasoning", "server_tool_call", "server_tool_call", "text"]
    assert blocks[0]["reasoning"] == "First compute.Then done."  # type: ignore[typeddict-item]
    calls = blocks[1:3]
    assert [c["name"] for c in calls] == ["code_interpreter"] * 2  # type: ignore[typeddict-item]
    assert [c["args"] for c in calls] == [  # type: ignore[typeddict-item]
        {"code": "x = 2**10"}, {"code": "print(x // 4)"}]
    assert calls[0]["id"] != calls[1]["id"]  # type: ignore[typeddict-item]
    assert msg.content_blocks == blocks  # stable: same ids every time
    streamed = add(list(llm.stream("q")))
    assert [b["type"] for b in streamed.content_blocks] == [b["type"] for b in blocks]
    # the chunk that carried a run shows the same id as the aggregated message
    chunks = list(llm.stream("q"))
    run_chunk = next(c for c in chunks if "tool_info" in c.additional_kwargs)
    total = add(chunks)
    assert run_chunk.content_blocks[0]["id"] == total.content_blocks[1]["id"]  # type: ignore[typeddict-item]


def test_search_info_surfaces_once(server: ReplayServer) -> None:
    first = native_frame({"output": {"choices": [{"message": {"content": "", "role": "assistant"},
                                                  "finish_reason": "null"}],
                                     "search_info": {"search_results": [{"index": 1,
                                                                         "title": "t"}]}},
                          "usage": {}, "request_id": "r"})
    rest = native_stream([{"content": "sunny"}, {"finish": "stop"}], request_id="r")
    server.default = Reply([first, *rest])
    llm = model(server, extra_body={"enable_search": True})
    msg = llm.invoke("weather?")
    assert msg.additional_kwargs["search_info"] == {"search_results": [{"index": 1, "title": "t"}]}
    chunks = list(llm.stream("weather?"))
    assert sum("search_info" in c.additional_kwargs for c in chunks) == 1
    assert server.requests[0].json["parameters"]["enable_search"] is True


# ------------------------------------------------------------------ the request sent


def test_fields_and_call_arguments_reach_the_wire(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    llm = model(server, protocol="dashscope", temperature=0.3, top_p=0.8, max_tokens=99,
                seed=5, stop=["END"], thinking_budget=400,
                extra_body={"search_options": {"a": 1, "b": 2}},
                default_headers={"X-App": "demo"})
    llm.invoke("q")
    params = server.requests[0].json["parameters"]
    assert params == {
        "enable_code_interpreter": True, "enable_thinking": True, "result_format": "message",
        "incremental_output": True, "temperature": 0.3, "top_p": 0.8, "max_tokens": 99,
        "seed": 5, "stop": ["END"], "thinking_budget": 400, "search_options": {"a": 1, "b": 2},
    }
    assert server.requests[0].headers["x-app"] == "demo"
    llm.bind(temperature=0.9, extra_body={"search_options": {"b": 3}}).invoke("q", stop=["you"])
    params = server.requests[1].json["parameters"]
    assert params["temperature"] == 0.9 and params["stop"] == ["you"]
    assert params["search_options"] == {"a": 1, "b": 3}
    llm.invoke("q", model="qwen3.5-plus")
    assert server.requests[2].json["model"] == "qwen3.5-plus"
    assert server.requests[2].path.endswith("/multimodal-generation/generation")


def test_compatible_protocol_request(server: ReplayServer) -> None:
    server.default = Reply(compat_stream(["t"], ["a"]))
    model(server, protocol="openai", max_tokens=7).invoke("q")
    got = server.requests[0]
    assert got.path == "/compatible-mode/v1/chat/completions"
    assert got.json["enable_code_interpreter"] is True and got.json["enable_thinking"] is True
    assert got.json["stream"] is True and got.json["stream_options"] == {"include_usage": True}
    assert got.json["max_tokens"] == 7


def test_messages_translation(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    history = [
        SystemMessage("Be brief."),
        SystemMessage("Use code."),
        HumanMessage("hi", name="alice"),
        AIMessage("hello", additional_kwargs={"reasoning_content": "secret thoughts",
                                              "tool_info": TOOL_INFO}),
        HumanMessage([{"type": "text", "text": "2**8?"}]),
    ]
    model(server).invoke(history)
    assert server.requests[0].json["input"]["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse code."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2**8?"},
    ]


def test_image_blocks_for_multimodal_models(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": [{"text": "a cat"}], "finish": "stop"}]))
    msg = HumanMessage([
        {"type": "text", "text": "What is it?"},
        {"type": "image", "url": "https://example.com/cat.png"},
        {"type": "image", "base64": "AAAA", "mime_type": "image/jpeg"},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}},
    ])
    llm = model(server, model="qwen3.5-plus", protocol="dashscope")
    assert llm.invoke([msg]).content == "a cat"
    assert server.requests[0].json["input"]["messages"][0]["content"] == [
        {"text": "What is it?"}, {"image": "https://example.com/cat.png"},
        {"image": "data:image/jpeg;base64,AAAA"}, {"image": "https://example.com/dog.png"}]


# ------------------------------------------------------------------ refused before any request


class Answer(BaseModel):
    value: int


def tool(x: int) -> int:
    """Double x."""
    return 2 * x


REFUSALS = [
    (lambda llm: llm.bind_tools([tool]), "mutually exclusive"),
    (lambda llm: llm.with_structured_output(Answer), "needs function calling or JSON"),
    (lambda llm: llm.invoke("q", tools=[{"type": "function"}]), "mutually exclusive"),
    (lambda llm: llm.invoke("q", tool_choice="auto"), "mutually exclusive"),
    (lambda llm: llm.invoke("q", functions=[{"name": "f"}]), "mutually exclusive"),
    (lambda llm: llm.invoke("q", response_format={"type": "json_object"}), "JSON mode"),
    (lambda llm: llm.invoke("q", extra_body={"enable_thinking": False}), "thinking mode"),
    (lambda llm: llm.invoke("q", extra_body={"enable_code_interpreter": False}),
     "enable_code_interpreter"),
    (lambda llm: llm.invoke([]), "messages is empty"),
    (lambda llm: llm.invoke([HumanMessage("q"), AIMessage(
        "", tool_calls=[{"name": "f", "args": {}, "id": "1"}]),
        ToolMessage("2", tool_call_id="1")]), "mutually exclusive"),
    (lambda llm: llm.invoke([HumanMessage("q"), ToolMessage("2", tool_call_id="1")]),
     "mutually exclusive"),
    (lambda llm: llm.invoke([HumanMessage([{"type": "image", "url": "https://x/c.png"}])]),
     "text model"),
    (lambda llm: llm.invoke("q", temprature=1), "Unsupported argument"),
]


@pytest.mark.parametrize(("call", "match"), REFUSALS)
def test_bad_input_raises_before_any_request(server: ReplayServer, call: Any,
                                             match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        call(model(server))
    assert server.requests == []


ASYNC_REFUSALS = [
    ({"tools": [{"type": "function"}]}, "q", "mutually exclusive"),
    ({"tool_choice": "auto"}, "q", "mutually exclusive"),
    ({"response_format": {"type": "json_object"}}, "q", "JSON mode"),
    ({"extra_body": {"enable_thinking": False}}, "q", "thinking mode"),
    ({}, [], "messages is empty"),
    ({}, [HumanMessage("q"), ToolMessage("2", tool_call_id="1")], "mutually exclusive"),
]


@pytest.mark.parametrize(("kwargs", "messages", "match"), ASYNC_REFUSALS)
async def test_bad_input_raises_before_any_request_async(
    server: ReplayServer, kwargs: dict[str, Any], messages: Any, match: str
) -> None:
    llm = model(server)
    with pytest.raises(InvalidRequestError, match=match):
        await llm.ainvoke(messages, **kwargs)
    with pytest.raises(InvalidRequestError, match=match):
        async for _ in llm.astream(messages, **kwargs):
            pass
    with pytest.raises(InvalidRequestError, match=match):
        list(llm.stream(messages, **kwargs))
    assert server.requests == []


@pytest.mark.parametrize("field", ["tools", "tool_choice", "functions"])
def test_tools_at_construction_are_refused(field: str) -> None:
    with pytest.raises((InvalidRequestError, ValidationError), match="mutually exclusive"):
        ChatQwenCodeInterpreter(api_key="k", **{field: [{"type": "function"}]})


def test_unknown_constructor_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        ChatQwenCodeInterpreter(api_key="k", temprature=1)


def test_missing_key_raises_before_any_request(server: ReplayServer) -> None:
    llm = ChatQwenCodeInterpreter(base_url=server.base_url)
    with pytest.raises(InvalidRequestError, match="DASHSCOPE_API_KEY"):
        llm.invoke("q")
    assert server.requests == []


def test_key_from_environment(server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url + "/api/v1")
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    assert ChatQwenCodeInterpreter().invoke("q").content == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-env"


# ------------------------------------------------------------------ errors


def test_service_errors_propagate_typed(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": "a"}, {"content": "part"}])
    frames.append(native_frame({"code": "Throttling.RateQuota", "message": "slow down",
                                "request_id": "rq"}, event="error", status=429))
    server.default = Reply(frames)
    with pytest.raises(RateLimitError) as info:
        model(server).invoke("q")
    assert (info.value.status, info.value.code, info.value.request_id) == (
        429, "Throttling.RateQuota", "rq")
    with pytest.raises(RateLimitError):
        list(model(server).stream("q"))
    assert len(server.requests) == 2  # never retried after output started


def test_cut_off_stream_is_an_error_not_an_answer(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"reasoning": "a"}, {"content": "half an ans"}]))
    with pytest.raises(IncompleteStreamError):
        model(server).invoke("q")
    with pytest.raises(IncompleteStreamError):
        list(model(server).stream("q"))


# ------------------------------------------------------------------ in chains and graphs


def test_lcel_chain(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    prompt = ChatPromptTemplate.from_messages([("system", "You compute."), ("human", "{q}")])
    chain = prompt | model(server) | StrOutputParser()
    assert chain.invoke({"q": "2**10 // 4?"}) == "x is 1024; x//4 is 256."
    assert "".join(chain.stream({"q": "again"})) == "x is 1024; x//4 is 256."
    assert server.requests[0].json["input"]["messages"][0] == {
        "role": "system", "content": "You compute."}


async def test_astream_events_carry_reasoning(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    thinking, codes = [], []
    async for event in model(server).astream_events("q", version="v2"):
        if event["event"] == "on_chat_model_stream":
            chunk = event["data"]["chunk"]
            if "reasoning_content" in chunk.additional_kwargs:
                thinking.append(chunk.additional_kwargs["reasoning_content"])
            codes += chunk.additional_kwargs.get("tool_info", [])
        if event["event"] == "on_chat_model_end":
            output = event["data"]["output"]
            assert output.additional_kwargs["tool_info"] == TWO_RUNS_INFO
    assert "".join(thinking) == "First compute.Then done."
    assert codes == TWO_RUNS_INFO


def test_langgraph_messages_stream_keeps_additional_kwargs(server: ReplayServer) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    server.default = Reply(TWO_RUNS)
    llm = model(server)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    app = graph.compile()
    chunks = [chunk for chunk, _meta in app.stream({"messages": [HumanMessage("q")]},
                                                   stream_mode="messages")]
    assert "".join(c.additional_kwargs.get("reasoning_content", "") for c in chunks) == (
        "First compute.Then done.")
    assert [t for c in chunks for t in c.additional_kwargs.get("tool_info", [])] == TWO_RUNS_INFO
    final = app.invoke({"messages": [HumanMessage("q")]})["messages"][-1]
    assert final.additional_kwargs["tool_info"] == TWO_RUNS_INFO


# ------------------------------------------------------------------ tracing and serialization


def test_ls_params_honour_per_call_model() -> None:
    llm = ChatQwenCodeInterpreter(api_key="k", temperature=0.2, max_tokens=10)
    params = llm._get_ls_params(stop=["x"])
    assert params == {"ls_provider": "dashscope", "ls_model_name": "qwen3-max-preview",
                      "ls_model_type": "chat", "ls_temperature": 0.2, "ls_max_tokens": 10,
                      "ls_stop": ["x"]}
    assert llm._get_ls_params(model="qwen3.5-plus")["ls_model_name"] == "qwen3.5-plus"


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_key_never_serialized_or_printed() -> None:
    llm = ChatQwenCodeInterpreter(api_key="sk-canary-123", base_url="http://127.0.0.1:1")
    for text in (repr(llm), str(llm), dumps(llm), str(dumpd(llm)), str(llm.model_dump()),
                 str(llm._identifying_params)):
        assert "sk-canary-123" not in text
    assert dumpd(llm)["kwargs"]["api_key"] == {"lc": 1, "type": "secret",
                                               "id": ["DASHSCOPE_API_KEY"]}
    options: dict[str, Any] = {"valid_namespaces": ["langchain_qwen_ci"],
                               "secrets_map": {"DASHSCOPE_API_KEY": "sk-revived"}}
    if "allowed_objects" in inspect.signature(loads).parameters:  # langchain-core >= 1.1
        options["allowed_objects"] = [ChatQwenCodeInterpreter]
    revived = loads(dumps(llm), **options)
    assert isinstance(revived, ChatQwenCodeInterpreter)
    assert revived.api_key is not None and revived.api_key.get_secret_value() == "sk-revived"
    assert revived.base_url == "http://127.0.0.1:1"


def test_streaming_true_invoke_goes_through_stream_and_gives_the_same_message(
    server: ReplayServer,
) -> None:
    server.default = Reply(TWO_RUNS)
    plain = model(server).invoke("q")
    streamed = model(server, streaming=True).invoke("q")
    same_message(streamed, plain)
    assert streamed.additional_kwargs["tool_info"] == TWO_RUNS_INFO


async def test_one_connection_pool_per_model_instance(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    llm = model(server)
    for _ in range(3):
        llm.invoke("q")
    sync_ports = {r.client_port for r in server.requests}
    for _ in range(3):
        await llm.ainvoke("q")
        [c async for c in llm.astream("q")]
    async_ports = {r.client_port for r in server.requests[3:]}
    assert len(sync_ports) == 1 and len(async_ports) == 1


def test_changed_settings_take_effect(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    llm = model(server, temperature=0.1)
    llm.invoke("q")
    llm.model_copy(update={"temperature": 0.7}).invoke("q")
    llm.temperature = 0.5
    llm.invoke("q")
    temps = [r.json["parameters"]["temperature"] for r in server.requests]
    assert temps == [0.1, 0.7, 0.5]
