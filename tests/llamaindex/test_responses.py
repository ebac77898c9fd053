"""LlamaIndex over the Responses protocol (real HTTP, frames from PROTOCOL.md section 6):
each run's output in ``tool_info``, the TOOL span's ``output.value`` is the logs, web tools
as TOOL spans of their own, counts from ``x_tools``, ``chat`` == last ``stream_chat`` chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llamaindex_qwen_ci import QwenCodeInterpreter
from llamaindex_qwen_ci.tracing import CodeInterpreterRunEvent, CodeInterpreterStartEvent
from qwen_ci.events import NO_OUTPUT
from tests.llamaindex.common import ENDPOINTS, Recorder, call, user
from tests.llamaindex.test_tracing import Traced
from tests.replay import (
    RESP_CODE,
    RESP_LOGS,
    RESP_ONE_RUN,
    RESP_ONE_RUN_INFO,
    RESPONSE_ID,
    ReplayServer,
    Reply,
    native_stream,
    responses_stream,
)

ANSWER = "123**21 = 77269364466549865653073473388030061522211723."
WEB = [
    ("search", "qwen3.5 release", ["https://qwen.ai/blog", "https://example.org/q"]),
    ("extract", ["https://qwen.ai/blog"], "release date", "Released in February."),
    ("code", "print(2026 - 2025)", "1\n"),
    ("text", ["One year."]),
]


def make(server: ReplayServer, **kwargs: Any) -> QwenCodeInterpreter:
    kwargs.setdefault("model", "qwen3.5-plus")
    return QwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, **kwargs)


@pytest.fixture
def traced() -> Iterator[Traced]:
    tracer = Traced()
    try:
        yield tracer
    finally:
        tracer.instrumentor.uninstrument()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_carries_the_output(server: ReplayServer, endpoint: str) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    final, chunks = await call(make(server), endpoint, "123**21?")
    assert server.requests[0].path == "/compatible-mode/v1/responses"  # the model's best
    assert final.additional_kwargs["plugins"] == {"code_interpreter": {"count": 1}}
    assert final.additional_kwargs["request_id"] == RESPONSE_ID
    if hasattr(final, "message"):
        kwargs, text = final.message.additional_kwargs, final.message.content
    else:  # completions merge the message's kwargs into their own
        kwargs, text = final.additional_kwargs, final.text
    assert kwargs["tool_info"] == RESP_ONE_RUN_INFO
    assert text == ANSWER
    if chunks:
        deltas = [c.additional_kwargs.get("tool_info_delta") for c in chunks]
        assert [d for d in deltas if d] == [RESP_ONE_RUN_INFO]
        assert chunks[-1] == final


def test_tool_span_output_is_the_logs(server: ReplayServer, traced: Traced) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    list(make(server).stream_chat(user("q")))
    (llm_span,) = traced.calls()
    (tool,) = traced.spans("TOOL")
    attrs = dict(tool.attributes or {})
    assert tool.parent is not None and tool.parent.span_id == llm_span.context.span_id
    assert attrs["input.value"] == RESP_CODE
    assert attrs["output.value"] == RESP_LOGS and attrs["output.mime_type"] == "text/plain"
    assert tool.status.is_ok
    metadata = json.loads(dict(llm_span.attributes or {})["metadata"])
    assert metadata["code_interpreter_count"] == 1


def test_native_tool_span_says_the_output_is_not_returned(server: ReplayServer,
                                                          traced: Traced) -> None:
    server.default = Reply(native_stream([{"tool_info": ["1+1"]},
                                          {"content": "2", "tool_info": ["1+1"]},
                                          {"finish": "stop", "tool_info": ["1+1"]}]))
    make(server, model="qwen3-max-preview").chat(user("q"))
    (tool,) = traced.spans("TOOL")
    assert dict(tool.attributes or {})["output.value"] == NO_OUTPUT


def test_web_tools_are_spans_entries_and_counts(server: ReplayServer, traced: Traced) -> None:
    server.default = Reply(responses_stream(WEB))
    llm = make(server, builtin_tools=["web_search", "web_extractor"])
    chunks = list(llm.stream_chat(user("When?")))
    assert server.requests[0].json["tools"] == [
        {"type": "code_interpreter"}, {"type": "web_search"}, {"type": "web_extractor"}]
    final = chunks[-1]
    search, extract = final.message.additional_kwargs["builtin_tools"]
    assert search["web_search"]["sources"] == ["https://qwen.ai/blog", "https://example.org/q"]
    assert extract["web_extractor"]["output"] == "Released in February."
    assert [c.additional_kwargs["builtin_tools_delta"][0]["type"] for c in chunks
            if "builtin_tools_delta" in c.additional_kwargs] == ["web_search", "web_extractor"]
    assert final.additional_kwargs["plugins"] == {
        "web_search": {"count": 1}, "web_extractor": {"count": 1},
        "code_interpreter": {"count": 1}}
    spans = {s.name: dict(s.attributes or {}) for s in traced.spans("TOOL")}
    assert set(spans) == {"web_search", "web_extractor", "code_interpreter"}
    assert json.loads(spans["web_search"]["input.value"]) == {"query": "qwen3.5 release"}
    assert spans["web_search"]["output.value"] == "https://qwen.ai/blog\nhttps://example.org/q"
    assert spans["web_extractor"]["output.value"] == "Released in February."
    assert spans["code_interpreter"]["output.value"] == "1\n"


def test_failed_run_is_an_error_span(server: ReplayServer, traced: Traced) -> None:
    done = b'"container_id":"cntr_7f3e2a","status":"completed"'
    frames = [f.replace(done, done.replace(b"completed", b"failed")) for f in
              responses_stream([("code", "1/0", "ZeroDivisionError"), ("text", ["No."])])]
    server.default = Reply(frames)
    response = make(server).chat(user("q"))
    assert response.message.additional_kwargs["tool_info"][0]["code_interpreter"][
        "status"] == "failed"
    (tool,) = traced.spans("TOOL")
    assert not tool.status.is_ok
    assert dict(tool.attributes or {})["output.value"] == "ZeroDivisionError"


def test_protocol_refused_locally(server: ReplayServer) -> None:
    with pytest.raises(Exception, match="use protocol 'responses'"):
        make(server, model="qwen3.6-flash", protocol="openai").chat(user("q"))
    assert server.requests == []


def test_stream_shows_the_start_before_the_result(server: ReplayServer,
                                                  recorder: Recorder) -> None:
    """The start event comes while the stream is read, before the run's result and the
    answer; the run event carries the output."""
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    order: list[str] = []
    for chunk in make(server, emit_code_events=True).stream_chat(user("q")):
        for event in recorder.events:
            if isinstance(event, CodeInterpreterStartEvent | CodeInterpreterRunEvent):
                order.append(type(event).__name__)
        recorder.events.clear()
        if chunk.additional_kwargs.get("tool_info_delta"):
            order.append("tool_info_delta")
        if chunk.delta:
            order.append("delta")
    assert order[:3] == ["CodeInterpreterStartEvent", "CodeInterpreterRunEvent",
                         "tool_info_delta"]
    assert set(order[3:]) == {"delta"}


def test_run_event_carries_the_output(server: ReplayServer, recorder: Recorder) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    make(server, emit_code_events=True).chat(user("q"))
    (run,) = [e for e in recorder.events if isinstance(e, CodeInterpreterRunEvent)]
    assert (run.code, run.output) == (RESP_CODE, RESP_LOGS)
