"""Tracing: each executed code block is a ``code_interpreter`` tool run, child of the chat
model's run, in every call style; live custom events on the model's run; OpenInference."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from langchain_qwen_ci import ChatQwenCodeInterpreter
from langchain_qwen_ci.tracing import INDEX_KEY, TOOL_OUTPUT
from qwen_ci.errors import IncompleteStreamError
from qwen_ci.events import TOOL_DESCRIPTION
from tests.replay import ReplayServer, Reply
from tests.tracing_streams import ANSWER, CHANGED, CODES, FINAL, PARTIAL, THINKING, THREE_RUNS

INFO = [{"type": "code_interpreter", "code_interpreter": {"code": c}} for c in CODES]


def _tracers_keep_tool_inputs() -> bool:
    """langchain-core 1.0.x tracers record a tool run's inputs as ``{"input": input_str}``
    whatever ``inputs`` the callback carries; later versions keep ``inputs``."""
    from uuid import uuid4

    from langchain_core.tracers.core import _TracerCore

    class Probe(_TracerCore):
        def _persist_run(self, run: Run) -> None:
            pass

    return Probe()._create_tool_run({}, "x", uuid4(), inputs={"code": "x"}).inputs == {
        "code": "x"}


KEY = "code" if _tracers_keep_tool_inputs() else "input"


def inputs(code: str) -> dict[str, str]:
    """A tool run's inputs as the installed langchain-core's tracers record them."""
    return {KEY: code}


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


def all_runs(runs: list[Run]) -> Iterator[Run]:
    for run in runs:
        yield run
        yield from all_runs(run.child_runs)


def check_tool_runs(llm_run: Run, codes: list[str] = CODES) -> None:
    """The model's run has one tool run per code block: in order, exact code, inside the
    model's run in time, one after the other."""
    tools = llm_run.child_runs
    assert [(t.run_type, t.name) for t in tools] == [("tool", "code_interpreter")] * len(codes)
    assert [t.inputs for t in tools] == [inputs(code) for code in codes]
    assert [t.parent_run_id for t in tools] == [llm_run.id] * len(codes)
    assert [(t.extra or {}).get("metadata", {}).get(INDEX_KEY) for t in tools] == list(
        range(len(codes)))
    assert all(t.outputs == {"output": TOOL_OUTPUT} and t.error is None for t in tools)
    assert all(t.serialized and t.serialized["description"] == TOOL_DESCRIPTION for t in tools)
    assert llm_run.end_time is not None
    times = [llm_run.start_time]
    for tool in tools:
        assert tool.end_time is not None
        times += [tool.start_time, tool.end_time]
    times.append(llm_run.end_time)
    assert times == sorted(times)


def check_llm_run(run: Run) -> None:
    """The LLM run's outputs still carry thinking, code, answer, usage and plugins."""
    generation = run.outputs["generations"][0][0]  # type: ignore[index]
    message = generation["message"]["kwargs"]
    assert message["content"] == ANSWER
    assert message["additional_kwargs"]["reasoning_content"] == THINKING
    assert message["additional_kwargs"]["tool_info"] == INFO
    assert message["response_metadata"]["plugins"] == {"code_interpreter": {"count": 3}}
    assert message["usage_metadata"]["output_token_details"]["reasoning"] > 0
    check_tool_runs(run)


@pytest.fixture
def llm(server: ReplayServer) -> ChatQwenCodeInterpreter:
    server.default = Reply(THREE_RUNS)
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url)


def chain_of(llm: ChatQwenCodeInterpreter) -> Runnable[Any, str]:
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()


SYNC: dict[str, Callable[[Runnable[Any, Any], Any, Any], None]] = {
    "invoke": lambda r, x, c: r.invoke(x, config=c),
    "stream": lambda r, x, c: list(r.stream(x, config=c)),
    "batch": lambda r, x, c: r.batch([x, x], config=c),
}


async def _ainvoke(r: Runnable[Any, Any], x: Any, c: Any) -> None:
    await r.ainvoke(x, config=c)


async def _astream(r: Runnable[Any, Any], x: Any, c: Any) -> None:
    [_ async for _ in r.astream(x, config=c)]


async def _abatch(r: Runnable[Any, Any], x: Any, c: Any) -> None:
    await r.abatch([x, x], config=c)


ASYNC = {"ainvoke": _ainvoke, "astream": _astream, "abatch": _abatch}
EXPECTED_RUNS = {"invoke": 1, "stream": 1, "batch": 2, "ainvoke": 1, "astream": 1, "abatch": 2}


@pytest.mark.parametrize("where", ["alone", "chain"])
@pytest.mark.parametrize("style", list(SYNC))
def test_tool_runs_sync(llm: ChatQwenCodeInterpreter, style: str, where: str) -> None:
    runnable: Runnable[Any, Any] = llm if where == "alone" else chain_of(llm)
    value: Any = "q" if where == "alone" else {"q": "q"}
    tracer = RecordingTracer()  # passed explicitly: the hard case for stream()
    with collect_runs() as collector:
        SYNC[style](runnable, value, {"callbacks": [tracer]})
    for runs in (tracer.roots, collector.traced_runs):
        found = list(llm_runs(runs))
        assert len(found) == EXPECTED_RUNS[style]
        for run in found:
            check_llm_run(run)


@pytest.mark.parametrize("where", ["alone", "chain"])
@pytest.mark.parametrize("style", list(ASYNC))
async def test_tool_runs_async(llm: ChatQwenCodeInterpreter, style: str, where: str) -> None:
    runnable: Runnable[Any, Any] = llm if where == "alone" else chain_of(llm)
    value: Any = "q" if where == "alone" else {"q": "q"}
    tracer = RecordingTracer()
    with collect_runs() as collector:
        await ASYNC[style](runnable, value, {"callbacks": [tracer]})
    for runs in (tracer.roots, collector.traced_runs):
        found = list(llm_runs(runs))
        assert len(found) == EXPECTED_RUNS[style]
        for run in found:
            check_llm_run(run)


def one_node_graph(node: Callable[..., Any]) -> Any:
    """A compiled LangGraph graph: START -> "model" (``node``) -> END."""
    from langgraph.graph import END, START, MessagesState, StateGraph

    graph = StateGraph(MessagesState)
    graph.add_node("model", node)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    return graph.compile()


@pytest.mark.parametrize("call", ["ainvoke", "astream", "stream", "invoke"])
async def test_tool_runs_inside_a_langgraph_node(llm: ChatQwenCodeInterpreter,
                                                 call: str) -> None:
    from langgraph.graph import MessagesState

    async def call_model(state: MessagesState) -> dict[str, Any]:
        messages = state["messages"]
        if call == "ainvoke":
            return {"messages": [await llm.ainvoke(messages)]}
        if call == "invoke":
            return {"messages": [llm.invoke(messages)]}
        chunks = ([c async for c in llm.astream(messages)] if call == "astream"
                  else list(llm.stream(messages)))
        total = chunks[0]
        for chunk in chunks[1:]:
            total = total + chunk
        return {"messages": [total]}

    tracer = RecordingTracer()
    await one_node_graph(call_model).ainvoke({"messages": [HumanMessage("q")]},
                                  config={"callbacks": [tracer]})
    (run,) = llm_runs(tracer.roots)
    check_llm_run(run)
    (node,) = [r for r in all_runs(tracer.roots) if r.name == "model"]
    assert run.parent_run_id == node.id  # the model's run is where the node made it


async def test_langgraph_messages_stream_mode(llm: ChatQwenCodeInterpreter) -> None:
    from langgraph.graph import MessagesState

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    with collect_runs() as collector:
        async for _ in one_node_graph(call_model).astream({"messages": [HumanMessage("q")]},
                                               stream_mode="messages"):
            pass
    (run,) = llm_runs(collector.traced_runs)
    check_llm_run(run)


def test_code_completed_after_the_start_final_code_in_the_output(server: ReplayServer) -> None:
    server.default = Reply(CHANGED)
    llm = ChatQwenCodeInterpreter(api_key="k", base_url=server.base_url)
    for call in (llm.invoke, lambda q: list(llm.stream(q))):
        with collect_runs() as collector:
            call("q")
        (run,) = llm_runs(collector.traced_runs)
        (tool,) = run.child_runs
        assert tool.inputs == inputs(PARTIAL)  # what was known at the start
        assert tool.outputs is not None and tool.outputs["output"].endswith("\n" + FINAL)
    message = llm.invoke("q")
    assert message.additional_kwargs["tool_info"][0]["code_interpreter"]["code"] == FINAL


@pytest.mark.parametrize("style", ["invoke", "stream"])
def test_a_stream_cut_during_a_run_ends_its_tool_run_with_the_error_first(
    server: ReplayServer, style: str
) -> None:
    server.default = Reply(THREE_RUNS, cut_after=4)  # cut after the first run's frame
    llm = ChatQwenCodeInterpreter(api_key="k", base_url=server.base_url, max_retries=0)
    with collect_runs() as collector, pytest.raises(IncompleteStreamError):
        SYNC[style](llm, "q", None)
    (run,) = llm_runs(collector.traced_runs)
    (tool,) = run.child_runs
    assert tool.inputs == inputs(CODES[0])
    assert tool.error is not None and "IncompleteStreamError" in tool.error
    assert run.error is not None
    assert tool.end_time is not None and run.end_time is not None
    assert tool.end_time <= run.end_time


def test_tool_runs_can_be_turned_off(server: ReplayServer) -> None:
    server.default = Reply(THREE_RUNS)
    quiet = ChatQwenCodeInterpreter(api_key="k", base_url=server.base_url,
                                    trace_code_runs=False)
    with collect_runs() as collector:
        quiet.invoke("q")
        list(quiet.stream("q"))
    runs = list(llm_runs(collector.traced_runs))
    assert len(runs) == 2 and all(run.child_runs == [] for run in runs)


def test_without_a_tracer_nothing_is_dispatched_and_nothing_raises(
    llm: ChatQwenCodeInterpreter,
) -> None:
    chunks = list(llm.stream("q"))
    assert [t for c in chunks for t in c.additional_kwargs.get("tool_info", [])] == INFO
    assert llm.invoke("q").additional_kwargs["tool_info"] == INFO


# ------------------------------------------------------------------ astream_events


def _model_run_id(events: list[dict[str, Any]]) -> str:
    (start,) = [e for e in events if e["event"] == "on_chat_model_start"]
    return str(start["run_id"])


@pytest.mark.parametrize("how", ["stream", "invoke_in_lambda"])
async def test_astream_events_tool_and_custom_events_on_the_model_run(
    llm: ChatQwenCodeInterpreter, how: str
) -> None:
    runnable: Runnable[Any, Any]
    if how == "stream":
        runnable = chain_of(llm)
        value: Any = {"q": "q"}
    else:
        runnable = RunnableLambda(lambda text: llm.invoke(text))
        value = "q"
    events = [e async for e in runnable.astream_events(value, version="v2")]
    model_run = _model_run_id(events)
    order: list[tuple[str, Any]] = []
    for event in events:
        kind = event["event"]
        if kind in ("on_tool_start", "on_tool_end"):
            assert event["name"] == "code_interpreter"
            assert event["parent_ids"][-1] == model_run
            order.append((kind, event["data"].get("input", {}).get("code")))
        elif kind == "on_custom_event":
            assert str(event["run_id"]) == model_run  # attached to the model's run
            order.append((event["name"], event["data"]))
        elif kind == "on_chat_model_stream":
            thinking = event["data"]["chunk"].additional_kwargs.get("reasoning_content")
            if thinking and how == "stream":
                order.append(("thinking", thinking))
    expected: list[tuple[str, Any]] = [("thinking", "Plan: "), ("thinking", "three steps.")]
    for index, code in enumerate(CODES):
        expected += [("on_tool_start", code),
                     ("code_interpreter_start", {"index": index, "code": code}),
                     ("on_tool_end", code),
                     ("code_interpreter", {"index": index, "code": code}),
                     ("thinking", ["Rows sum to 1024.", "Greeted twice.", "Total is 30."][index])]
    if how != "stream":
        expected = [e for e in expected if e[0] != "thinking"]
    assert order == expected


async def test_custom_events_can_be_turned_off(server: ReplayServer) -> None:
    server.default = Reply(THREE_RUNS)
    quiet = ChatQwenCodeInterpreter(api_key="k", base_url=server.base_url,
                                    emit_code_events=False)
    events = [e async for e in chain_of(quiet).astream_events({"q": "q"}, version="v2")]
    assert not [e for e in events if e["event"] == "on_custom_event"]
    assert len([e for e in events if e["event"] == "on_tool_end"]) == 3


# ------------------------------------------------------------------ OpenTelemetry


@pytest.mark.parametrize("style", ["invoke", "stream", "ainvoke", "astream"])
async def test_openinference_tool_spans_under_the_llm_span(
    llm: ChatQwenCodeInterpreter, style: str
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
        chain = chain_of(llm)
        if style in SYNC:
            SYNC[style](chain, {"q": "q"}, None)
        else:
            await ASYNC[style](chain, {"q": "q"}, None)
    finally:
        instrumentor.uninstrument()
    spans = exporter.get_finished_spans()
    kind = {s.context.span_id: (s.attributes or {}).get("openinference.span.kind")
            for s in spans}
    (llm_span,) = [s for s in spans if kind[s.context.span_id] == "LLM"]
    tools = sorted((s for s in spans if kind[s.context.span_id] == "TOOL"),
                   key=lambda s: s.start_time or 0)
    assert [s.name for s in tools] == ["code_interpreter"] * 3
    assert all(s.parent is not None and s.parent.span_id == llm_span.context.span_id
               for s in tools)
    attrs = [dict(s.attributes or {}) for s in tools]
    assert [a["input.value"] for a in attrs] == CODES
    # a plain string: OpenInference sets no mime type, which means text/plain
    assert {a.get("input.mime_type", "text/plain") for a in attrs} == {"text/plain"}
    assert {a["tool.name"] for a in attrs} == {"code_interpreter"}
    assert {a["tool.description"] for a in attrs} == {TOOL_DESCRIPTION}
    assert all(s.status.is_ok for s in tools)
    llm_attrs = dict(llm_span.attributes or {})
    assert llm_attrs["llm.output_messages.0.message.content"] == ANSWER
    # the thinking as reasoning content of the output message (set through get_span)
    prefix = "llm.output_messages.0.message.contents"
    assert llm_attrs[f"{prefix}.0.message_content.type"] == "reasoning"
    assert llm_attrs[f"{prefix}.0.message_content.text"] == THINKING
    assert llm_attrs[f"{prefix}.1.message_content.text"] == ANSWER
    assert int(llm_attrs["llm.token_count.completion_details.reasoning"]) > 0  # type: ignore[call-overload]
    output = json.loads(str(llm_attrs["output.value"]))
    kwargs = output["generations"][0][0]["message"]["kwargs"]
    assert kwargs["additional_kwargs"]["tool_info"] == INFO
    assert llm_span.end_time is not None and all(
        s.end_time is not None and s.end_time <= llm_span.end_time for s in tools)


def test_the_model_run_id_of_a_stream_is_the_chunk_message_id(
    llm: ChatQwenCodeInterpreter,
) -> None:
    """The fixed run id is the one langchain-core stamps on the chunks."""
    with collect_runs() as collector:
        chunks = list(llm.stream("q"))
    (run,) = llm_runs(collector.traced_runs)
    assert chunks[0].id == f"lc_run--{run.id}"
    assert isinstance(run.id, UUID)
