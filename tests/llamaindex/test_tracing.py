"""Code runs in LlamaIndex traces: a TOOL span per run under the call's LLM span (OpenInference
conventions), the thinking, reasoning tokens, run count and request id on the LLM span, for
every endpoint, chat/query engines and ReActAgent; opt-in instrumentation events; nothing
without a tracer or without OpenTelemetry installed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent, LLMCompletionStartEvent

from llamaindex_qwen_ci import QwenCodeInterpreter
from llamaindex_qwen_ci.tracing import (
    TOOL_DESCRIPTION,
    CodeInterpreterRunEvent,
    CodeInterpreterStartEvent,
)
from tests.llamaindex.common import ENDPOINTS, Recorder, call, make_llm, user
from tests.replay import REQUEST_ID, ReplayServer, Reply, native_stream
from tests.tracing_streams import ANSWER, CHANGED, CODES, FINAL, THINKING, THREE_RUNS

ROOT = Path(__file__).resolve().parents[2]


class Traced:
    """OpenInference's LlamaIndex instrumentation into an in-memory exporter."""

    def __init__(self, **options: Any) -> None:
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrumentor = LlamaIndexInstrumentor()
        self.instrumentor.instrument(tracer_provider=provider, **options)

    def spans(self, kind: str) -> list[Any]:
        return sorted((s for s in self.exporter.get_finished_spans()
                       if (s.attributes or {}).get("openinference.span.kind") == kind),
                      key=lambda s: s.start_time)

    def calls(self) -> list[Any]:
        """The LLM spans of the model's endpoints (``predict`` and friends wrap them)."""
        return [s for s in self.spans("LLM") if s.name.rsplit(".", 1)[-1] in ENDPOINTS]


@pytest.fixture
def traced() -> Iterator[Traced]:
    tracer = Traced()
    try:
        yield tracer
    finally:
        tracer.instrumentor.uninstrument()


def check_call(traced: Traced, llm_span: Any, codes: list[str] = CODES) -> None:
    """TOOL spans under ``llm_span``: in order, exact code, OK, inside it in time; the LLM
    span carries thinking, reasoning tokens, run count and request id."""
    tools = [s for s in traced.spans("TOOL")
             if s.parent is not None and s.parent.span_id == llm_span.context.span_id]
    assert [s.name for s in tools] == ["code_interpreter"] * len(codes)
    attrs = [dict(s.attributes or {}) for s in tools]
    assert [a["input.value"] for a in attrs] == codes
    assert {a["input.mime_type"] for a in attrs} == {"text/plain"}
    assert {a["tool.name"] for a in attrs} == {"code_interpreter"}
    assert {a["tool.description"] for a in attrs} == {TOOL_DESCRIPTION}
    assert [json.loads(a["metadata"])["code_interpreter_index"] for a in attrs] == list(
        range(len(codes)))
    assert all(s.status.is_ok for s in tools)
    assert all(s.context.trace_id == llm_span.context.trace_id for s in tools)
    times = [llm_span.start_time]
    for span in tools:
        times += [span.start_time, span.end_time]
    if not llm_span.name.rsplit(".", 1)[-1].startswith(("stream", "astream")):
        # OpenInference ends a streamed call's LLM span when the stream is returned
        times.append(llm_span.end_time)
    assert times == sorted(times)
    llm = dict(llm_span.attributes or {})
    prefix = "llm.output_messages.0.message.contents.0.message_content"
    if "llm.output_messages.0.message.role" in llm:
        assert llm[f"{prefix}.type"] == "reasoning"
        assert llm[f"{prefix}.text"] == THINKING
    assert llm["llm.token_count.completion_details.reasoning"] > 0
    metadata = json.loads(llm["metadata"])
    assert metadata["code_interpreter_count"] == len(codes)
    assert metadata["request_id"] == REQUEST_ID


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_tool_spans_under_the_llm_span(server: ReplayServer, traced: Traced,
                                             endpoint: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    server.default = Reply(THREE_RUNS)
    caplog.set_level(logging.WARNING)
    await call(make_llm(server), endpoint, "q")
    (llm_span,) = traced.calls()
    check_call(traced, llm_span)
    attrs = dict(llm_span.attributes or {})
    assert ANSWER in str(attrs["output.value"])
    if "chat" in endpoint:  # chat spans carry the output message: reasoning, then the text
        prefix = "llm.output_messages.0.message.contents"
        assert attrs[f"{prefix}.0.message_content.type"] == "reasoning"
        assert attrs[f"{prefix}.1.message_content.text"] == ANSWER
    assert [r for r in caplog.records if r.name.startswith("openinference")] == []


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
async def test_code_completed_after_the_start_final_code_on_the_span(
    server: ReplayServer, traced: Traced
) -> None:
    server.default = Reply(CHANGED)
    list(make_llm(server).stream_chat(user("q")))
    (tool,) = traced.spans("TOOL")
    assert dict(tool.attributes or {})["input.value"] == FINAL


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_a_stream_cut_during_a_run_ends_its_tool_span_with_the_error(
    server: ReplayServer, traced: Traced
) -> None:
    from qwen_ci.errors import IncompleteStreamError

    server.default = Reply(THREE_RUNS, cut_after=4)
    llm = make_llm(server, max_retries=0)
    with pytest.raises(IncompleteStreamError):
        list(llm.stream_chat(user("q")))
    (tool,) = traced.spans("TOOL")
    assert dict(tool.attributes or {})["input.value"] == CODES[0]
    assert not tool.status.is_ok and tool.status.description
    assert any(e.name == "exception" for e in tool.events)


def test_the_instrumentations_trace_config_applies(server: ReplayServer) -> None:
    from openinference.instrumentation import TraceConfig

    server.default = Reply(THREE_RUNS)
    traced = Traced(config=TraceConfig(hide_inputs=True))
    try:
        make_llm(server).chat(user("q"))
    finally:
        traced.instrumentor.uninstrument()
    tools = traced.spans("TOOL")
    assert len(tools) == 3
    assert not any(code in str(s.attributes) for s in tools for code in CODES)


# ------------------------------------------------------------------ engines and agents


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.parametrize("streaming", [False, True])
async def test_chat_engine(server: ReplayServer, traced: Traced, streaming: bool) -> None:
    from llama_index.core.chat_engine import SimpleChatEngine

    server.default = Reply(THREE_RUNS)
    engine = SimpleChatEngine.from_defaults(llm=make_llm(server))
    if streaming:
        response = engine.stream_chat("q")
        assert "".join(response.response_gen) == ANSWER
        areply = await engine.astream_chat("q")
        assert "".join([t async for t in areply.async_response_gen()]) == ANSWER
    else:
        assert str(engine.chat("q")) == ANSWER
        assert str(await engine.achat("q")) == ANSWER
    spans = traced.calls()
    assert len(spans) == 2
    for span in spans:
        check_call(traced, span)


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.parametrize("streaming", [False, True])
async def test_query_engine(server: ReplayServer, traced: Traced, streaming: bool,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_index.core import Document, MockEmbedding, VectorStoreIndex

    server.default = Reply(THREE_RUNS)
    index = VectorStoreIndex.from_documents([Document(text="The vault code is 1024.")],
                                            embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=make_llm(server), streaming=streaming)
    response = engine.query("What is the vault code?")
    if streaming:
        assert "".join(response.response_gen) == ANSWER  # type: ignore[union-attr]
    else:
        assert str(response) == ANSWER
        assert str(await engine.aquery("What is the vault code?")) == ANSWER
    spans = traced.calls()
    assert len(spans) == (1 if streaming else 2)
    for span in spans:
        check_call(traced, span)


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.parametrize("streaming", [False, True])
async def test_react_agent(server: ReplayServer, traced: Traced, streaming: bool) -> None:
    from llama_index.core.agent.workflow import ReActAgent
    from llama_index.core.tools import FunctionTool

    def lookup_price(item: str) -> str:
        """Price of one item in the shop."""
        return "42 EUR"

    action = native_stream([
        {"reasoning": "I need the price first."},
        {"content": "Thought: I need the price.\nAction: lookup_price\n"},
        {"content": 'Action Input: {"item": "apple"}'},
        {"finish": "stop"},
    ])
    code = "price = 42\nprint(price * 3)  # 三个"
    answer = native_stream([
        {"reasoning": "Multiply."},
        {"tool_info": [code]},
        {"reasoning": " It is 126.", "tool_info": [code]},
        {"content": "Thought: I can answer.\nAnswer: 126 EUR.", "tool_info": [code]},
        {"finish": "stop", "tool_info": [code]},
    ])
    server.queue(Reply(action), Reply(answer))
    agent = ReActAgent(tools=[FunctionTool.from_defaults(lookup_price)],
                       llm=make_llm(server), streaming=streaming)
    assert str(await agent.run("How much are three apples?")) == "126 EUR."
    first, second = traced.calls()
    assert [s for s in traced.spans("TOOL") if s.parent.span_id == first.context.span_id
            ] == []
    tools = [s for s in traced.spans("TOOL") if s.name == "code_interpreter"]
    assert [dict(s.attributes or {})["input.value"] for s in tools] == [code]
    assert tools[0].parent is not None
    assert tools[0].parent.span_id == second.context.span_id
    # the agent's own function tool is a TOOL span too, beside ours
    assert any(s.name != "code_interpreter" for s in traced.spans("TOOL"))


# ------------------------------------------------------------------ without a tracer


async def test_nothing_recorded_without_an_active_tracer(server: ReplayServer) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    server.default = Reply(THREE_RUNS)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    llm = make_llm(server)
    # a recording span elsewhere, ended before the call: the call records nothing
    with tracer.start_as_current_span("before"):
        pass
    for endpoint in ENDPOINTS:
        await call(llm, endpoint, "q")
    assert [s.name for s in exporter.get_finished_spans()] == ["before"]


def test_works_without_opentelemetry_and_openinference(server: ReplayServer) -> None:
    """A subprocess where importing OpenTelemetry or OpenInference fails."""
    server.default = Reply(THREE_RUNS)
    script = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("opentelemetry", "openinference"):
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        from llama_index.core.llms import ChatMessage
        from llamaindex_qwen_ci import QwenCodeInterpreter

        llm = QwenCodeInterpreter(api_key="k", base_url={server.base_url!r},
                                  emit_code_events=True)
        messages = [ChatMessage(role="user", content="q")]
        chunks = list(llm.stream_chat(messages))
        chat = llm.chat(messages)
        assert chat.message.content == chunks[-1].message.content == {ANSWER!r}
        codes = [r["code_interpreter"]["code"] for r in chat.message.additional_kwargs["tool_info"]]
        assert codes == {CODES!r}, codes
        assert not any(m.startswith(("opentelemetry", "openinference")) for m in sys.modules)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ------------------------------------------------------------------ instrumentation events


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_opt_in_start_and_run_events_on_the_calls_span(
    server: ReplayServer, recorder: Recorder, endpoint: str
) -> None:
    server.default = Reply(THREE_RUNS)
    llm = make_llm(server, emit_code_events=True)
    await call(llm, endpoint, "q")
    mine = [e for e in recorder.events
            if isinstance(e, CodeInterpreterStartEvent | CodeInterpreterRunEvent)]
    assert [(type(e).__name__, e.index, e.code) for e in mine] == [
        (kind, i, code) for i, code in enumerate(CODES)
        for kind in ("CodeInterpreterStartEvent", "CodeInterpreterRunEvent")]
    (start,) = [e for e in recorder.events
                if isinstance(e, LLMChatStartEvent | LLMCompletionStartEvent)]
    assert start.span_id is not None
    assert {e.span_id for e in mine} == {start.span_id}  # captured before the generator


def test_run_event_arrives_before_the_thinking_that_follows(server: ReplayServer,
                                                            recorder: Recorder) -> None:
    server.default = Reply(THREE_RUNS)
    llm = make_llm(server, emit_code_events=True)
    seen: list[str] = []
    for chunk in llm.stream_chat(user("q")):
        events = [e for e in recorder.events if isinstance(e, CodeInterpreterRunEvent)]
        seen.append(f"{len(events)}:{chunk.additional_kwargs.get('thinking_delta', '')}")
    assert "1:Rows sum to 1024." in seen and "3:Total is 30." in seen
    assert "0:three steps." in seen


async def test_no_events_by_default(server: ReplayServer, recorder: Recorder) -> None:
    server.default = Reply(THREE_RUNS)
    llm: QwenCodeInterpreter = make_llm(server)
    llm.chat(user("q"))
    await llm.achat(user("q"))
    assert not [e for e in recorder.events
                if isinstance(e, CodeInterpreterStartEvent | CodeInterpreterRunEvent)]
