"""Where the LLM meets LlamaIndex's own machinery: stream deltas, metadata, construction
errors, and the executed code of calls made inside engines (code_runs)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, SummaryIndex
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.instrumentation import get_dispatcher
from pydantic import ValidationError

from llamaindex_qwen_ci import CodeRunCollector, CodeRunRecord, QwenCodeInterpreter, code_runs
from llamaindex_qwen_ci.runs import records
from tests.llamaindex.common import ANSWER, TWO_RUNS, TWO_RUNS_INFO, make_llm, user
from tests.replay import REQUEST_ID, ReplayServer, Reply

CODES = [info["code_interpreter"]["code"] for info in TWO_RUNS_INFO]

# llama-index-workflows inspects agents with inspect.getmembers, which touches pydantic's
# deprecated attributes; nothing here uses them
pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)


@pytest.fixture
def llm(server: ReplayServer) -> QwenCodeInterpreter:
    server.default = Reply(TWO_RUNS)
    return make_llm(server)


# ------------------------------------------------------------------ streams and metadata


async def test_no_streamed_delta_is_none(llm: QwenCodeInterpreter) -> None:
    """LlamaIndex's loops print ``delta`` as it comes: the last chunk's is "", not None."""
    chunks: list[Any] = [
        *llm.stream_chat(user("q")), *llm.stream_complete("q"),
        *[c async for c in await llm.astream_chat(user("q"))],
        *[c async for c in await llm.astream_complete("q")],
    ]
    assert all(c.delta is not None for c in chunks)
    assert "".join(str(c.delta) for c in llm.stream_complete("q")) == ANSWER


def test_num_output_follows_max_tokens() -> None:
    assert QwenCodeInterpreter(api_key="k").metadata.num_output == 32_768
    small = QwenCodeInterpreter(api_key="k", max_tokens=1000)
    assert small.metadata.num_output == 1000
    # what LlamaIndex reserves for the answer when it packs a prompt
    assert PromptHelper.from_llm_metadata(small.metadata).num_output == 1000


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"model": "qwen-plus"}, "has no code interpreter"),
    ({"extra_body": {"enable_thinking": False}}, "enable_thinking=False"),
    ({"temperature": -1}, "temperature=-1.0 is out of range"),
    ({"top_p": 1.5}, "top_p=1.5 is out of range"),
    ({"max_tokens": 10**6}, "above 'qwen3-max-preview'"),
    ({"tools": [{"type": "function"}]}, "cannot be combined with function calling"),
    ({"response_format": {"type": "json_object"}}, "Structured output"),
])
def test_invalid_settings_fail_at_construction(
    server: ReplayServer, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        make_llm(server, **kwargs)
    assert server.requests == []


# ------------------------------------------------------------------ code_runs


def expected() -> list[tuple[str, str | None, str | None]]:
    return [(code, None, REQUEST_ID) for code in CODES]


def seen(runs: list[CodeRunRecord]) -> list[tuple[str, str | None, str | None]]:
    assert all(run.span_id for run in runs)  # the model call's span
    return [(run.code, run.output, run.request_id) for run in runs]


def test_code_runs_inside_a_query_engine(llm: QwenCodeInterpreter) -> None:
    index = SummaryIndex.from_documents([Document(text="x = 2**10")])
    engine = index.as_query_engine(llm=llm)
    with code_runs() as runs:
        response = engine.query("What is x // 4? Compute it.")
    assert str(response) == ANSWER
    assert "tool_info" not in (response.metadata or {})  # the engine rebuilt it from text
    assert seen(runs) == expected()
    streaming = index.as_query_engine(llm=llm, streaming=True)
    with code_runs() as streamed:
        answer = "".join(streaming.query("again").response_gen)  # type: ignore[union-attr]
    assert answer == ANSWER and seen(streamed) == expected()
    assert len(runs) == 2  # the first block's list stopped filling when the block ended


def test_code_runs_inside_a_context_chat_engine(llm: QwenCodeInterpreter) -> None:
    index = SummaryIndex.from_documents([Document(text="x = 2**10")])
    engine = index.as_chat_engine(chat_mode="context", llm=llm)
    with code_runs() as runs:
        reply = engine.chat("What is x // 4?")
        assert seen(runs) == expected()
        streamed = engine.stream_chat("and again?")
        assert "".join(streamed.response_gen) == ANSWER
    assert str(reply) == ANSWER
    assert seen(runs) == expected() * 2


async def test_code_runs_of_async_calls(llm: QwenCodeInterpreter) -> None:
    index = SummaryIndex.from_documents([Document(text="x = 2**10")])
    with code_runs() as runs:
        await index.as_query_engine(llm=llm).aquery("What is x // 4?")
        await llm.acomplete("q")
    assert seen(runs) == expected() * 2


def test_a_collector_kept_for_the_process(llm: QwenCodeInterpreter) -> None:
    collector = CodeRunCollector()
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        llm.chat(user("q"))
        list(llm.stream_chat(user("q")))
        llm.complete("q")
    finally:
        root.event_handlers.remove(collector)
    assert seen(collector.runs) == expected() * 3
    llm.chat(user("q"))
    assert len(collector.runs) == 6  # detached: no more


def test_records_read_outputs_where_the_protocol_returns_them() -> None:
    info = [
        {"type": "code_interpreter", "code_interpreter": {
            "code": "print(6*7)", "outputs": [{"type": "logs", "logs": "42\n"}]}},
        {"type": "web_search", "web_search": {}},
        {"type": "code_interpreter", "code_interpreter": {"code": "1+1"}},
    ]
    assert [(r.code, r.output) for r in records(info, "r", "s")] == [
        ("print(6*7)", "42\n"), ("1+1", None)]
    assert records(None, None, None) == [] and records("junk", None, None) == []


def test_the_module_example_runs(server: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import textwrap

    import llamaindex_qwen_ci.runs as module

    code = textwrap.dedent((module.__doc__ or "").split(".. code-block:: python\n", 1)[1])
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    server.default = Reply(TWO_RUNS)
    exec(compile(code, "runs module docstring", "exec"), {"__name__": "docstring"})
    assert capsys.readouterr().out == "".join(f"{code} None\n" for code in CODES)


# ------------------------------------------------------------------ agents (docs/llamaindex.md)


async def test_the_interpreter_as_a_tool_of_a_function_calling_agent(
    llm: QwenCodeInterpreter, server: ReplayServer
) -> None:
    """The docs' third alternative to FunctionAgent on this LLM; code_runs sees the runs."""
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    def python(task: str = "What is 2**10 // 4? Compute it.") -> str:
        """Compute something exactly: Qwen writes and runs Python for the task."""
        return llm.complete(task).text

    # LlamaIndex's own scripted function-calling model: it calls every tool once
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(python)],
                          llm=MockFunctionCallingLLM())
    with code_runs() as runs:
        result = await agent.run("What is 2**10 // 4?")
    assert [call.tool_output.content for call in result.tool_calls] == [ANSWER]
    assert seen(runs) == expected()
    assert server.requests[0].json["input"]["messages"] == [
        {"role": "user", "content": "What is 2**10 // 4? Compute it."}]


async def test_function_agent_on_this_llm_fails_in_its_first_step(
    llm: QwenCodeInterpreter, server: ReplayServer
) -> None:
    """What the docs say: it builds, and fails when run, with LlamaIndex's generic message."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent

    def rate(currency: str) -> str:
        """Today's rate."""
        return "0.92"

    agent = FunctionAgent(tools=[rate], llm=llm)  # no error yet
    with pytest.raises(ValueError, match=r"^LLM must be a FunctionCallingLLM$"):
        await agent.run("How many euros are 10 USD?")
    workflow = AgentWorkflow.from_tools_or_functions([rate], llm=llm)
    assert isinstance(workflow.agents["Agent"], ReActAgent)
    assert server.requests == []
