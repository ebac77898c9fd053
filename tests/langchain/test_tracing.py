"""Tracing: LangChain's own tracers, live code events, OpenInference spans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from langchain_qwen_ci import ChatQwenCodeInterpreter
from tests.langchain.test_chat_model import TWO_RUNS, TWO_RUNS_INFO
from tests.replay import ReplayServer, Reply

THINKING = "First compute.Then done."
ANSWER = "x is 1024; x//4 is 256."


class RecordingTracer(BaseTracer):
    """A tracer built on LangChain's BaseTracer that keeps every finished root run."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


def llm_runs(runs: list[Run]) -> Iterator[Run]:
    for run in runs:
        if run.run_type == "llm":
            yield run
        yield from llm_runs(run.child_runs)


def check_llm_run(run: Run) -> None:
    """The LLM run's outputs carry thinking, code, answer, usage and plugins."""
    generation = run.outputs["generations"][0][0]  # type: ignore[index]
    message = generation["message"]["kwargs"]
    assert message["content"] == ANSWER
    assert message["additional_kwargs"]["reasoning_content"] == THINKING
    assert message["additional_kwargs"]["tool_info"] == TWO_RUNS_INFO
    assert message["response_metadata"]["plugins"] == {"code_interpreter": {"count": 2}}
    usage = message["usage_metadata"]
    assert usage["input_tokens"] == 260 and usage["output_token_details"]["reasoning"] > 0
    metadata = run.extra["metadata"]
    assert metadata["ls_provider"] == "dashscope"
    assert metadata["ls_model_name"] == "qwen3-max-preview"


@pytest.fixture
def llm(server: ReplayServer) -> ChatQwenCodeInterpreter:
    server.default = Reply(TWO_RUNS)
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url)


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_llm_run_outputs_sync(llm: ChatQwenCodeInterpreter, mode: str) -> None:
    tracer = RecordingTracer()
    if mode == "invoke":
        llm.invoke("q", config={"callbacks": [tracer]})
    else:
        list(llm.stream("q", config={"callbacks": [tracer]}))
    (run,) = llm_runs(tracer.roots)
    check_llm_run(run)


@pytest.mark.parametrize("mode", ["ainvoke", "astream"])
async def test_llm_run_outputs_async(llm: ChatQwenCodeInterpreter, mode: str) -> None:
    with collect_runs() as collector:
        if mode == "ainvoke":
            await llm.ainvoke("q")
        else:
            [c async for c in llm.astream("q")]
    (run,) = llm_runs(collector.traced_runs)
    check_llm_run(run)


def test_llm_run_inside_an_lcel_chain(llm: ChatQwenCodeInterpreter) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
    with collect_runs() as collector:
        assert chain.invoke({"q": "q"}) == ANSWER
        assert "".join(chain.stream({"q": "q"})) == ANSWER
    runs = list(llm_runs(collector.traced_runs))
    assert len(runs) == 2
    for run in runs:
        check_llm_run(run)


async def test_llm_run_inside_a_langgraph_node(llm: ChatQwenCodeInterpreter) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    tracer = RecordingTracer()
    await graph.compile().ainvoke({"messages": [HumanMessage("q")]},
                                  config={"callbacks": [tracer]})
    (run,) = llm_runs(tracer.roots)
    check_llm_run(run)


# ------------------------------------------------------------------ live code events


async def test_code_events_in_a_chain_arrive_when_each_run_is_final(
    llm: ChatQwenCodeInterpreter,
) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    order: list[tuple[str, Any]] = []
    async for event in chain.astream_events({"q": "q"}, version="v2"):
        if event["event"] == "on_custom_event" and event["name"] == "code_interpreter":
            order.append(("event", event["data"]))
        elif event["event"] == "on_chat_model_stream":
            chunk = event["data"]["chunk"]
            if "reasoning_content" in chunk.additional_kwargs:
                order.append(("thinking", chunk.additional_kwargs["reasoning_content"]))
    assert order == [
        ("thinking", "First "), ("thinking", "compute."),
        ("event", {"index": 0, "code": "x = 2**10"}),
        ("thinking", "Then "),
        ("event", {"index": 1, "code": "print(x // 4)"}),
        ("thinking", "done."),
    ]


async def test_code_events_from_invoke_inside_a_runnable(llm: ChatQwenCodeInterpreter) -> None:
    node = RunnableLambda(lambda text: llm.invoke(text))
    events = [e async for e in node.astream_events("q", version="v2")
              if e["event"] == "on_custom_event"]
    assert [(e["name"], e["data"]) for e in events] == [
        ("code_interpreter", {"index": 0, "code": "x = 2**10"}),
        ("code_interpreter", {"index": 1, "code": "print(x // 4)"}),
    ]


def test_outside_a_runnable_context_nothing_is_dispatched_and_nothing_raises(
    llm: ChatQwenCodeInterpreter,
) -> None:
    chunks = list(llm.stream("q"))
    assert [t for c in chunks for t in c.additional_kwargs.get("tool_info", [])] == TWO_RUNS_INFO
    assert llm.invoke("q").additional_kwargs["tool_info"] == TWO_RUNS_INFO


async def test_code_events_can_be_turned_off(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    quiet = ChatQwenCodeInterpreter(api_key="k", base_url=server.base_url,
                                    emit_code_events=False)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | quiet
    events = [e async for e in chain.astream_events({"q": "q"}, version="v2")]
    assert not [e for e in events if e["event"] == "on_custom_event"]
    assert any(e["event"] == "on_chat_model_stream" for e in events)


# ------------------------------------------------------------------ OpenTelemetry


def test_openinference_llm_span_carries_answer_tokens_and_code(
    llm: ChatQwenCodeInterpreter,
) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        llm.invoke("q")
        list(llm.stream("q"))
    finally:
        instrumentor.uninstrument()
    spans = [s for s in exporter.get_finished_spans()
             if s.attributes and s.attributes.get("openinference.span.kind") == "LLM"]
    assert len(spans) == 2
    for span in spans:
        attrs = dict(span.attributes or {})
        assert attrs["llm.output_messages.0.message.content"] == ANSWER
        assert attrs["llm.token_count.prompt"] == 260
        assert attrs["llm.token_count.completion_details.reasoning"] > 0
        assert attrs["llm.provider"] == "dashscope"
        assert attrs["llm.model_name"] == "qwen3-max-preview"
        output = json.loads(str(attrs["output.value"]))
        kwargs = output["generations"][0][0]["message"]["kwargs"]
        assert kwargs["additional_kwargs"]["tool_info"] == TWO_RUNS_INFO
        assert kwargs["additional_kwargs"]["reasoning_content"] == THINKING
