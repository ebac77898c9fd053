"""Instrumentation: one start and one end event per call, the end event carries the runs;
OpenInference spans get the answer and token counts."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatResponse, CompletionResponse
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)

from llamaindex_qwen_ci import QwenCodeInterpreter
from tests.llamaindex.common import (
    ANSWER,
    ENDPOINTS,
    THINKING,
    TWO_RUNS,
    TWO_RUNS_INFO,
    Recorder,
    call,
    make_llm,
    user,
)
from tests.replay import ReplayServer, Reply

START = (LLMChatStartEvent, LLMCompletionStartEvent)
END = (LLMChatEndEvent, LLMCompletionEndEvent)
PROGRESS = (LLMChatInProgressEvent, LLMCompletionInProgressEvent)


@pytest.fixture
def llm(server: ReplayServer) -> QwenCodeInterpreter:
    server.default = Reply(TWO_RUNS)
    return make_llm(server)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_one_start_and_one_end_event_per_call(
    llm: QwenCodeInterpreter, recorder: Recorder, endpoint: str
) -> None:
    await call(llm, endpoint, "q")
    starts = [e for e in recorder.events if isinstance(e, START)]
    ends = [e for e in recorder.events if isinstance(e, END)]
    assert len(starts) == 1 and len(ends) == 1
    kind = LLMCompletionEndEvent if "complete" in endpoint else LLMChatEndEvent
    assert isinstance(ends[0], kind)
    response = ends[0].response
    if isinstance(response, ChatResponse):
        kwargs = response.message.additional_kwargs
        assert response.message.content == ANSWER
    else:
        assert isinstance(response, CompletionResponse)
        kwargs = response.additional_kwargs
        assert response.text == ANSWER
    assert kwargs["tool_info"] == TWO_RUNS_INFO
    assert kwargs["reasoning_content"] == THINKING
    assert response.additional_kwargs["prompt_tokens"] == 260
    progress = [e for e in recorder.events if isinstance(e, PROGRESS)]
    if "stream" in endpoint:
        assert progress and progress[-1].response == response  # the end event sees the last
    else:
        assert progress == []
    start = starts[0]
    assert start.model_dict["model_name"] == "qwen3-max-preview"
    assert start.model_dict["is_function_calling_model"] is False


async def test_refused_call_is_seen_as_one_failed_call(llm: QwenCodeInterpreter,
                                                        recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        await llm.achat([], tools=[{"type": "function"}])
    assert len([e for e in recorder.events if isinstance(e, START)]) == 1
    assert [e for e in recorder.events if isinstance(e, END)] == []


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_openinference_span_carries_answer_and_token_counts(llm: QwenCodeInterpreter) -> None:
    """OpenInference reads usage from ``additional_kwargs`` and exports the message text
    only (not ``additional_kwargs``); the code runs reach its span as span events
    (tests/llamaindex/test_tracing.py)."""
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        llm.chat(user("q"))
        list(llm.stream_chat(user("q")))
    finally:
        instrumentor.uninstrument()
    spans = [s for s in exporter.get_finished_spans()
             if s.attributes and s.attributes.get("openinference.span.kind") == "LLM"]
    assert len(spans) == 2
    for span in spans:
        attrs = dict(span.attributes or {})
        assert attrs["output.value"] == f"assistant: {ANSWER}"
        assert attrs["llm.model_name"] == "qwen3-max-preview"
        assert attrs["llm.finish_reason"] == "stop"
        assert attrs["llm.token_count.prompt"] == 260
        assert attrs["llm.token_count.total"] > 260
        assert not any("tool_call" in key for key in attrs)  # runs are not function calls
