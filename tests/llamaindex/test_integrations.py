"""The LLM inside LlamaIndex: chat engine, query engine, ReAct agent; FunctionAgent refused."""

from __future__ import annotations

import pytest
from llama_index.core import Document, MockEmbedding, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import AgentStream, AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ThinkingBlock
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.tools import FunctionTool

from llamaindex_qwen_ci import QwenCodeInterpreter
from tests.llamaindex.common import ANSWER, THINKING, TWO_RUNS, TWO_RUNS_INFO, make_llm
from tests.replay import ReplayServer, Reply, native_stream

# llama-index-workflows inspects agents with inspect.getmembers, which touches pydantic's
# deprecated attributes; nothing here uses them
pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)

# ------------------------------------------------------------------ chat engine


@pytest.fixture
def llm(server: ReplayServer) -> QwenCodeInterpreter:
    server.default = Reply(TWO_RUNS)
    return make_llm(server)


def check_history_turn(engine: SimpleChatEngine) -> None:
    """The stored answer is the answer text and keeps thinking and runs."""
    stored = engine.chat_history[-1]
    assert stored.role == "assistant" and stored.content == ANSWER
    assert stored.additional_kwargs["tool_info"] == TWO_RUNS_INFO
    assert stored.additional_kwargs["reasoning_content"] == THINKING
    assert "tool_calls" not in stored.additional_kwargs


def test_simple_chat_engine_chat_and_stream_chat(llm: QwenCodeInterpreter,
                                                 server: ReplayServer) -> None:
    engine = SimpleChatEngine.from_defaults(llm=llm, system_prompt="You compute.")
    assert str(engine.chat("2**10 // 4?")) == ANSWER
    check_history_turn(engine)
    streamed = engine.stream_chat("and again?")
    assert "".join(streamed.response_gen) == ANSWER
    check_history_turn(engine)
    assert len(engine.chat_history) == 4
    # the second request carried the first answer back as text only
    assert server.requests[1].json["input"]["messages"] == [
        {"role": "system", "content": "You compute."},
        {"role": "user", "content": "2**10 // 4?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "and again?"},
    ]


async def test_simple_chat_engine_async(llm: QwenCodeInterpreter) -> None:
    engine = SimpleChatEngine.from_defaults(llm=llm)
    assert str(await engine.achat("q")) == ANSWER
    check_history_turn(engine)
    streamed = await engine.astream_chat("again")
    assert "".join([token async for token in streamed.async_response_gen()]) == ANSWER
    if streamed.awrite_response_to_history_task is not None:
        await streamed.awrite_response_to_history_task
    check_history_turn(engine)
    assert len(engine.chat_history) == 4


# ------------------------------------------------------------------ query engine


@pytest.fixture
def index(llm: QwenCodeInterpreter, monkeypatch: pytest.MonkeyPatch) -> VectorStoreIndex:
    monkeypatch.setattr(Settings, "_llm", None)  # restored after the test
    Settings.llm = llm
    docs = [Document(text="The vault code is 4711."), Document(text="Apples are red.")]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))


def test_query_engine_with_settings_llm(index: VectorStoreIndex,
                                        server: ReplayServer) -> None:
    assert str(index.as_query_engine().query("What is the vault code?")) == ANSWER
    streaming = index.as_query_engine(streaming=True).query("What is the vault code?")
    assert isinstance(streaming, StreamingResponse)
    assert "".join(streaming.response_gen) == ANSWER
    for request in server.requests:
        sent = request.json["input"]["messages"]
        assert "The vault code is 4711." in sent[-1]["content"]
        assert "What is the vault code?" in sent[-1]["content"]
    assert len(server.requests) == 2


async def test_query_engine_async(index: VectorStoreIndex) -> None:
    assert str(await index.as_query_engine().aquery("What is the vault code?")) == ANSWER


# ------------------------------------------------------------------ agents

PRICES: list[str] = []


def lookup_price(item: str) -> str:
    """Price of one item in the shop."""
    PRICES.append(item)
    return "42 EUR"


def react_replies() -> list[Reply]:
    """A tool call in ReAct text format, then an answer computed with the interpreter."""
    action = native_stream([
        {"reasoning": "I need the price first."},
        {"content": "Thought: I need the price.\nAction: lookup_price\n"},
        {"content": 'Action Input: {"item": "apple"}'},
        {"finish": "stop"},
    ])
    answer = native_stream([
        {"reasoning": "Multiply."},
        {"tool_info": ["42 * 3"]},
        {"reasoning": " It is 126.", "tool_info": ["42 * 3"]},
        {"content": "Thought: I can answer.\nAnswer: Three apples cost 126 EUR.",
         "tool_info": ["42 * 3"]},
        {"finish": "stop", "tool_info": ["42 * 3"]},
    ])
    return [Reply(action), Reply(answer)]


@pytest.mark.parametrize("streaming", [True, False])
async def test_react_agent_runs_a_text_tool(server: ReplayServer, streaming: bool) -> None:
    PRICES.clear()
    server.queue(*react_replies())
    agent = ReActAgent(tools=[FunctionTool.from_defaults(lookup_price)], llm=make_llm(server),
                       streaming=streaming)
    handler = agent.run("How much are three apples?")
    thinking = []
    async for event in handler.stream_events():
        if isinstance(event, AgentStream) and event.thinking_delta:
            thinking.append(event.thinking_delta)
    result = await handler
    assert PRICES == ["apple"]
    assert str(result) == "Three apples cost 126 EUR."
    assert [c.tool_name for c in result.tool_calls] == ["lookup_price"]
    assert result.tool_calls[0].tool_output.content == "42 EUR"
    # the interpreter's run is on the agent's final message
    assert result.response.additional_kwargs["tool_info"] == [
        {"type": "code_interpreter", "code_interpreter": {"code": "42 * 3"}}]
    assert any(isinstance(b, ThinkingBlock) for b in result.response.blocks)
    if streaming:
        assert "".join(thinking) == "I need the price first.Multiply. It is 126."
    # the tool is described in text and its result comes back as text: no function calling
    first, second = (r.json for r in server.requests)
    assert "tools" not in first and "tools" not in first["parameters"]
    assert "lookup_price" in first["input"]["messages"][0]["content"]
    assert second["input"]["messages"][-1] == {"role": "user", "content": "Observation: 42 EUR"}
    assert len(server.requests) == 2


async def test_agent_workflow_picks_react_for_this_llm(server: ReplayServer) -> None:
    PRICES.clear()
    server.queue(*react_replies())
    workflow = AgentWorkflow.from_tools_or_functions([lookup_price], llm=make_llm(server))
    assert isinstance(workflow.agents["Agent"], ReActAgent)
    assert str(await workflow.run(user_msg="How much are three apples?")) == (
        "Three apples cost 126 EUR.")
    assert PRICES == ["apple"]


async def test_function_agent_fails_clearly_before_any_request(server: ReplayServer) -> None:
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(lookup_price)], llm=make_llm(server))
    with pytest.raises(ValueError, match="LLM must be a FunctionCallingLLM"):
        await agent.run("How much are three apples?")
    assert server.requests == []
