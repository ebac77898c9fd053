"""LangChain over the Responses protocol (real HTTP, frames from PROTOCOL.md section 6):
each run's output in ``tool_info``, a ``server_tool_result`` block per run, the tool run's
output, ``invoke == sum(stream)``, web_search / web_extractor, counts from ``x_tools``."""

from __future__ import annotations

from functools import reduce
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from langchain_qwen_ci import ChatQwenCodeInterpreter
from langchain_qwen_ci.tracing import TOOL_OUTPUT
from tests.replay import (
    RESP_CODE,
    RESP_LOGS,
    RESP_ONE_RUN,
    RESP_ONE_RUN_INFO,
    ReplayServer,
    Reply,
    native_stream,
    responses_stream,
)

ANSWER = "123**21 = 77269364466549865653073473388030061522211723."
THINKING = "The user wants 123**21.It printed the value."
WEB = [
    ("reasoning", ["Search first."]),
    ("search", "qwen3.5 release", ["https://qwen.ai/blog", "https://example.org/q"]),
    ("extract", ["https://qwen.ai/blog"], "release date", "Released in February."),
    ("code", "print(2026 - 2025)", "1\n"),
    ("text", ["One year."]),
]


def model(server: ReplayServer, **kwargs: Any) -> ChatQwenCodeInterpreter:
    kwargs.setdefault("model", "qwen3.5-plus")
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, **kwargs)


def tools_of(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for run in runs:
        out += [c for c in run.child_runs if c.run_type == "tool"]
        out += tools_of(run.child_runs)
    return out


def failed(frames: list[bytes]) -> list[bytes]:
    """The code_interpreter_call reported as failed by the service."""
    done = b'"container_id":"cntr_7f3e2a","status":"completed"'
    return [f.replace(done, done.replace(b"completed", b"failed")) for f in frames]


@pytest.mark.parametrize("how", ["unset", "explicit"])
def test_invoke_carries_code_output_and_blocks(server: ReplayServer, how: str) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    kwargs = {} if how == "unset" else {"protocol": "responses"}
    msg = model(server, **kwargs).invoke("123**21?")
    assert server.requests[0].path == "/compatible-mode/v1/responses"
    assert server.requests[0].json["tools"] == [{"type": "code_interpreter"}]
    assert msg.content == ANSWER
    assert msg.additional_kwargs["reasoning_content"] == THINKING
    assert msg.additional_kwargs["tool_info"] == RESP_ONE_RUN_INFO
    assert msg.response_metadata["plugins"] == {"code_interpreter": {"count": 1}}
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["output_token_details"]["reasoning"] == 3
    blocks = msg.content_blocks
    assert [b["type"] for b in blocks] == ["reasoning", "server_tool_call",
                                          "server_tool_result", "text"]
    call, result = blocks[1], blocks[2]
    assert call["name"] == "code_interpreter" and call["args"] == {"code": RESP_CODE}
    assert result["tool_call_id"] == call["id"]
    assert result["status"] == "success" and result["output"] == RESP_LOGS
    assert result["extras"] == {"container_id": "cntr_7f3e2a"}


def _plain(blocks: list[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in b.items() if k not in ("id", "tool_call_id", "index")}
            for b in blocks]


def test_invoke_equals_the_sum_of_the_stream(server: ReplayServer) -> None:
    server.default = Reply(responses_stream(WEB))
    llm = model(server, protocol="responses", builtin_tools=["web_search", "web_extractor"])
    whole = llm.invoke("q")
    chunks = list(llm.stream("q"))
    summed = reduce(lambda a, b: a + b, chunks)
    assert isinstance(summed, AIMessageChunk)
    assert summed.content == whole.content == "One year."
    assert summed.additional_kwargs == whole.additional_kwargs
    assert summed.usage_metadata == whole.usage_metadata
    assert summed.response_metadata["plugins"] == whole.response_metadata["plugins"]
    assert _plain(summed.content_blocks) == _plain(whole.content_blocks)
    # each run's output is on the chunk that carries the run, once
    with_runs = [c for c in chunks if c.additional_kwargs.get("tool_info")]
    assert len(with_runs) == 1
    run_blocks = with_runs[0].content_blocks
    assert [b["type"] for b in run_blocks] == ["server_tool_call", "server_tool_result"]
    assert run_blocks[1]["output"] == "1\n"


def test_web_search_and_extractor_are_surfaced_and_counted(server: ReplayServer) -> None:
    server.default = Reply(responses_stream(WEB))
    llm = model(server, protocol="responses", builtin_tools=["web_search", "web_extractor"])
    with collect_runs() as collector:
        msg = llm.invoke("When was qwen3.5 released?")
    assert server.requests[0].json["tools"] == [
        {"type": "code_interpreter"}, {"type": "web_search"}, {"type": "web_extractor"}]
    search, extract = msg.additional_kwargs["builtin_tools"]
    assert search["web_search"] == {"query": "qwen3.5 release", "sources": [
        "https://qwen.ai/blog", "https://example.org/q"]}
    assert extract["web_extractor"]["output"] == "Released in February."
    assert msg.response_metadata["plugins"] == {
        "web_search": {"count": 1}, "web_extractor": {"count": 1},
        "code_interpreter": {"count": 1}}
    blocks = [b for b in msg.content_blocks if b["type"].startswith("server_tool")]
    assert [(b["type"], b.get("name")) for b in blocks] == [
        ("server_tool_call", "code_interpreter"), ("server_tool_result", None),
        ("server_tool_call", "web_search"), ("server_tool_result", None),
        ("server_tool_call", "web_extractor"), ("server_tool_result", None)]
    assert blocks[2]["args"] == {"query": "qwen3.5 release"}
    assert blocks[3]["tool_call_id"] == blocks[2]["id"] == search["id"]
    assert blocks[3]["output"] == {"sources": ["https://qwen.ai/blog", "https://example.org/q"]}
    assert blocks[5]["output"] == "Released in February."
    tools = {t.name: t for t in tools_of(collector.traced_runs)}
    assert set(tools) == {"web_search", "web_extractor", "code_interpreter"}
    assert tools["web_search"].outputs == {
        "output": "https://qwen.ai/blog\nhttps://example.org/q"}
    assert tools["web_extractor"].outputs == {"output": "Released in February."}
    assert tools["code_interpreter"].outputs == {"output": "1\n"}
    # started in the order the service ran them
    order = sorted(tools.values(), key=lambda t: t.start_time)
    assert [t.name for t in order] == ["web_search", "web_extractor", "code_interpreter"]


@pytest.mark.parametrize("style", ["invoke", "stream"])
def test_the_tool_run_ends_with_the_logs(server: ReplayServer, style: str) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    llm = model(server, protocol="responses")
    with collect_runs() as collector:
        if style == "invoke":
            llm.invoke("q")
        else:
            list(llm.stream("q"))
    (tool,) = tools_of(collector.traced_runs)
    assert tool.name == "code_interpreter" and tool.error is None
    assert tool.outputs == {"output": RESP_LOGS}


def test_native_tool_runs_still_say_the_output_is_not_returned(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"tool_info": ["1+1"]},
                                          {"content": "2", "tool_info": ["1+1"]},
                                          {"finish": "stop", "tool_info": ["1+1"]}]))
    with collect_runs() as collector:
        msg = model(server, model="qwen3-max-preview").invoke("q")
    (tool,) = tools_of(collector.traced_runs)
    assert tool.outputs == {"output": TOOL_OUTPUT}
    assert [b["type"] for b in msg.content_blocks] == ["server_tool_call", "text"]


async def test_astream_events_show_the_start_before_the_logs(server: ReplayServer) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    llm = model(server, protocol="responses")
    order: list[tuple[str, Any]] = []
    async for event in llm.astream_events("q", version="v2"):
        if event["event"] == "on_tool_start":
            order.append(("start", event["data"]["input"]["code"]))
        elif event["event"] == "on_tool_end":
            order.append(("end", event["data"]["output"]))
        elif event["event"] == "on_chat_model_stream":
            chunk = event["data"]["chunk"]
            if chunk.content:
                order.append(("text", chunk.content))
        elif event["event"] == "on_custom_event":
            order.append((event["name"], event["data"]))
    assert order[:4] == [
        ("start", RESP_CODE), ("code_interpreter_start", {"index": 0, "code": RESP_CODE}),
        ("end", RESP_LOGS),
        ("code_interpreter", {"index": 0, "code": RESP_CODE, "output": RESP_LOGS})]
    assert order[4][0] == "text"


def test_a_failed_run_is_an_error_block_and_a_tool_error(server: ReplayServer) -> None:
    server.default = Reply(failed(responses_stream(
        [("code", "1/0", "ZeroDivisionError: division by zero"), ("text", ["It failed."])])))
    with collect_runs() as collector:
        msg = model(server, protocol="responses").invoke("q")
    assert msg.additional_kwargs["tool_info"][0]["code_interpreter"]["status"] == "failed"
    result = next(b for b in msg.content_blocks if b["type"] == "server_tool_result")
    assert result["status"] == "error" and "ZeroDivisionError" in result["output"]
    (tool,) = tools_of(collector.traced_runs)
    assert tool.error is not None and "failed" in tool.error


def test_x_tools_absent_means_no_runs(server: ReplayServer) -> None:
    server.default = Reply(responses_stream([("text", ["Hi."])]))
    msg = model(server, protocol="responses").invoke("hi")
    assert msg.response_metadata["plugins"] == {}
    assert msg.additional_kwargs["tool_info"] == []
    assert "builtin_tools" not in msg.additional_kwargs


def test_unsupported_protocol_is_refused_before_any_request(server: ReplayServer) -> None:
    with pytest.raises(ValueError, match="use protocol 'responses'"):  # when it is built
        model(server, model="qwen3.6-flash", protocol="dashscope")
    llm = model(server, model="qwen3.6-flash").model_copy(update={"protocol": "dashscope"})
    with pytest.raises(ValueError, match="use protocol 'responses'"):  # an unvalidated copy
        llm.invoke("q")
    assert server.requests == []
