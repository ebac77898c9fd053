"""Agents: refusals that fit what the user called, and the recipes that work (README,
examples/langchain_agents.py), driven by real models on 127.0.0.1."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import InvalidRequestError
from qwen_ci_server.emulator import Emulator
from tests.fc_server import FunctionCallingServer
from tests.replay import ReplayServer

ROOT = Path(__file__).resolve().parents[2]


@tool
def rate(currency: str) -> str:
    """Today's price of one unit of `currency` in euros."""
    return "0.92"


class Answer(BaseModel):
    value: int


def model(server: ReplayServer) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(api_key="sk", base_url=server.base_url)


def test_langgraph_create_react_agent_gets_its_own_message(server: ReplayServer) -> None:
    from langgraph.prebuilt import create_react_agent

    with pytest.warns(Warning), pytest.raises(InvalidRequestError) as info:
        create_react_agent(model(server), [rate])
    text = str(info.value)
    assert text.startswith("LangGraph's create_react_agent(model, tools)")
    assert "interpreter a tool of an agent" in text and "text ReAct agent" in text
    assert "Remove bind_tools" not in text and server.requests == []


def test_create_agent_with_tools_gets_its_own_message(server: ReplayServer) -> None:
    from langchain.agents import create_agent

    agent = create_agent(model(server), tools=[rate])
    with pytest.raises(InvalidRequestError) as info:
        agent.invoke({"messages": [("user", "hi")]})
    text = str(info.value)
    assert text.startswith("create_agent(model, tools=[...])")
    assert "examples/langchain_agents.py" in text and server.requests == []


def test_create_agent_with_response_format_is_not_told_to_remove_bind_tools(
    server: ReplayServer,
) -> None:
    from langchain.agents import create_agent

    agent = create_agent(model(server), tools=[], response_format=Answer)
    with pytest.raises(InvalidRequestError) as info:
        agent.invoke({"messages": [("user", "hi")]})
    text = str(info.value)
    assert text.startswith("create_agent(..., response_format=...) needs structured output")
    assert "bind_tools" not in text and server.requests == []


def test_with_structured_output_has_one_clear_message(server: ReplayServer) -> None:
    with pytest.raises(InvalidRequestError) as info:
        model(server).with_structured_output(Answer)
    text = str(info.value)
    assert text.count("with_structured_output") == 1 and "Remove" not in text
    assert "JsonOutputParser" in text


def test_direct_bind_tools_names_bind_tools_and_the_recipes(server: ReplayServer) -> None:
    with pytest.raises(InvalidRequestError) as info:
        model(server).bind_tools([rate])
    assert "Remove bind_tools(...)" in str(info.value)
    assert "examples/langchain_agents.py" in str(info.value)


# ---------------------------------------------------------------------- the recipes


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(pool_size=1) as emu:
        yield emu


@pytest.fixture(scope="module")
def recipes() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return runpy.run_path(str(ROOT / "examples" / "langchain_agents.py"), run_name="x")
    finally:
        sys.path.remove(str(ROOT / "examples"))


def test_interpreter_as_a_tool_of_a_function_calling_agent(
    emulator: Emulator, recipes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_openai import ChatOpenAI

    interpreter = ChatQwenCodeInterpreter(base_url=emulator.base_url, api_key="sk-local")
    with FunctionCallingServer() as fc:
        agent_model = ChatOpenAI(model="qwen-plus", base_url=fc.base_url, api_key="sk-fc")
        answer = recipes["function_calling_agent"](
            agent_model, interpreter, [recipes["exchange_rate"]],
            "How many euros are 1234.5 USD? Compute it exactly.")
    out = capsys.readouterr().out
    # the agent model got both tools through function calling, and called both
    sent = {t["function"]["name"] for t in fc.requests[0]["tools"]}
    assert sent == {"exchange_rate", "python"}
    assert "[tool call] exchange_rate({'currency': 'USD'})" in out
    assert "[tool call] python({'task': 'What is 1234.5 * 0.92? Use code.'})" in out
    # the interpreter ran the computation for real, and its answer made the final answer
    assert "1135.74" in answer and answer.startswith("1234.5 USD is ")


def test_text_react_agent_on_the_interpreter(
    emulator: Emulator, recipes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    llm = ChatQwenCodeInterpreter(base_url=emulator.base_url, api_key="sk-local")
    answer = recipes["react_agent"](llm, [recipes["exchange_rate"]],
                                    "How many euros are 1234.5 USD? Compute it exactly.")
    out = capsys.readouterr().out
    assert "[tool] exchange_rate({'currency': 'USD'}) -> 0.92" in out
    assert "[code executed]\nround(1234.5 * 0.92, 2)" in out
    assert answer.startswith("1234.5 USD is 1135.74 EUR")
