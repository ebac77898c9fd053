"""Code runs in LlamaIndex traces: opt-in instrumentation events on the call's span,
OpenTelemetry span events on OpenInference's LLM span, no OpenInference warnings."""

from __future__ import annotations

import logging

import pytest
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent, LLMCompletionStartEvent

from llamaindex_qwen_ci import QwenCodeInterpreter
from llamaindex_qwen_ci.tracing import SPAN_EVENT, CodeInterpreterRunEvent
from tests.llamaindex.common import (
    ANSWER,
    ENDPOINTS,
    TWO_RUNS,
    Recorder,
    call,
    make_llm,
    user,
)
from tests.replay import ReplayServer, Reply

CODES = [(0, "x = 2**10"), (1, "print(x // 4)")]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_opt_in_run_events_on_the_calls_span(server: ReplayServer, recorder: Recorder,
                                                   endpoint: str) -> None:
    server.default = Reply(TWO_RUNS)
    llm = make_llm(server, emit_code_events=True)
    await call(llm, endpoint, "q")
    runs = [e for e in recorder.events if isinstance(e, CodeInterpreterRunEvent)]
    assert [(e.index, e.code) for e in runs] == CODES
    (start,) = [e for e in recorder.events
                if isinstance(e, LLMChatStartEvent | LLMCompletionStartEvent)]
    assert start.span_id is not None
    assert {e.span_id for e in runs} == {start.span_id}  # captured before the generator


def test_run_event_arrives_before_the_thinking_that_follows(server: ReplayServer,
                                                            recorder: Recorder) -> None:
    server.default = Reply(TWO_RUNS)
    llm = make_llm(server, emit_code_events=True)
    seen: list[str] = []
    for chunk in llm.stream_chat(user("q")):
        events = [e for e in recorder.events if isinstance(e, CodeInterpreterRunEvent)]
        seen.append(f"{len(events)}:{chunk.additional_kwargs.get('thinking_delta', '')}")
    assert "1:Then " in seen and "2:done." in seen and "0:compute." in seen


async def test_no_run_events_by_default(server: ReplayServer, recorder: Recorder) -> None:
    server.default = Reply(TWO_RUNS)
    llm = make_llm(server)
    llm.chat(user("q"))
    await llm.achat(user("q"))
    assert not [e for e in recorder.events if isinstance(e, CodeInterpreterRunEvent)]


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
async def test_openinference_llm_span_carries_answer_tokens_and_code(
    server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    server.default = Reply(TWO_RUNS)
    llm: QwenCodeInterpreter = make_llm(server)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    caplog.set_level(logging.WARNING)
    try:
        llm.chat(user("q"))
        list(llm.stream_chat(user("q")))
        await llm.achat(user("q"))
        [c async for c in await llm.astream_chat(user("q"))]
        llm.complete("q")
    finally:
        instrumentor.uninstrument()
    spans = [s for s in exporter.get_finished_spans()
             if (s.attributes or {}).get("openinference.span.kind") == "LLM"]
    assert len(spans) == 5
    for span in spans:
        attrs = dict(span.attributes or {})
        assert ANSWER in str(attrs["output.value"])
        assert attrs["llm.token_count.prompt"] == 260
        assert int(attrs["llm.token_count.completion"]) > 0  # type: ignore[call-overload]
        code_events = [e for e in span.events if e.name == SPAN_EVENT]
        assert [(e.attributes or {}).get("code_interpreter.index") for e in code_events] == [0, 1]
        assert [(e.attributes or {}).get("code_interpreter.code") for e in code_events] == [
            code for _, code in CODES]
    warnings = [r for r in caplog.records if r.name.startswith("openinference")]
    assert warnings == []


def test_span_events_only_on_a_recording_span(server: ReplayServer) -> None:
    """Without any tracer nothing is recorded and nothing breaks."""
    server.default = Reply(TWO_RUNS)
    assert make_llm(server).chat(user("q")).message.content == ANSWER
