"""The emulator's function-calling model, through the official ``openai`` SDK (issue #24).

In compatible mode a request with ``tools`` to a model without the interpreter gets a
deterministic function-calling answer, labelled as the emulator's: a tool chosen from the
tools given, with JSON arguments that fit the tool's schema; after the tool's result, an
answer made of it; a clear refusal for what it does not understand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.functions import FINGERPRINT, NOT_UNDERSTOOD
from tests.emulator.conftest import KEY

MODEL = "qwen-plus"


def tool(name: str, description: str, arg: str) -> ChatCompletionToolParam:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {arg: {"type": "string"}},
                       "required": [arg], "additionalProperties": False}}}


PYTHON = tool("run_python", "Run Python code and return what it prints", "code")
RATE = tool("euro_rate", "Today's exchange rate: euros per unit of a currency", "currency")
WEATHER = tool("weather", "The weather in a city", "city")


@pytest.fixture(scope="module")
def client(emulator: Emulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY, base_url=emulator.base_url + "/compatible-mode/v1",
                       max_retries=0) as sdk:
        yield sdk


def ask(client: openai.OpenAI, messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionToolParam], stream: bool) -> dict[str, Any]:
    """One turn: the message (content, tool calls), finish reason and fingerprint, read
    from a completion or assembled from the stream's chunks as a user would."""
    if not stream:
        done = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
        message = done.choices[0].message
        made = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                for c in message.tool_calls or [] if c.type == "function"]
        return {"content": message.content, "calls": made,
                "finish": done.choices[0].finish_reason, "fingerprint": done.system_fingerprint}
    content, finish, fingerprints = "", None, set()
    calls: dict[int, dict[str, Any]] = {}
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=tools,
                                                stream=True):
        fingerprints.add(chunk.system_fingerprint)
        for delta in chunk.choices:
            content += delta.delta.content or ""
            finish = delta.finish_reason or finish
            for part in delta.delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                if part.function is not None:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
    assert len(fingerprints) == 1, fingerprints
    return {"content": content or None, "calls": [calls[i] for i in sorted(calls)],
            "finish": finish, "fingerprint": fingerprints.pop()}


def answered_with(call: dict[str, Any], result: str) -> list[ChatCompletionMessageParam]:
    """The assistant's tool call and the tool's result, as the next turn sends them."""
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_computation_is_handed_to_the_compute_tool_then_answered(
    client: openai.OpenAI, stream: bool
) -> None:
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is 2**100?"}]
    first = ask(client, question, [WEATHER, PYTHON], stream)
    assert first["finish"] == "tool_calls" and first["fingerprint"] == FINGERPRINT
    [call] = first["calls"]
    assert call["name"] == "run_python"  # chosen from the tools given, not the weather one
    arguments = json.loads(call["arguments"])
    assert set(arguments) == {"code"} and isinstance(arguments["code"], str)
    assert call["id"].startswith("call_")
    value = str(2**100)
    assert eval(arguments["code"]) == 2**100  # the emulator's own code

    second = ask(client, question + answered_with(call, value), [WEATHER, PYTHON], stream)
    assert second["finish"] == "stop" and second["calls"] == []
    assert value in second["content"] and second["fingerprint"] == FINGERPRINT


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_conversion_calls_the_rate_tool_then_the_compute_tool(
    client: openai.OpenAI, stream: bool
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "How many euros are 1234.5 USD?"}]
    first = ask(client, messages, [PYTHON, RATE], stream)
    [call] = first["calls"]
    assert (call["name"], json.loads(call["arguments"])) == ("euro_rate", {"currency": "USD"})
    messages += answered_with(call, "0.9")
    second = ask(client, messages, [PYTHON, RATE], stream)
    [call] = second["calls"]
    assert call["name"] == "run_python"
    code = json.loads(call["arguments"])["code"]
    assert "1234.5" in code and "0.9" in code
    messages += answered_with(call, "1111.05")
    third = ask(client, messages, [PYTHON, RATE], stream)
    assert third["calls"] == [] and third["finish"] == "stop"
    assert "1111.05 EUR" in third["content"] and "1234.5 USD" in third["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("question, tools", [
    ("What's the weather like in Paris today?", [WEATHER, PYTHON]),
    ("What is 2**100?", [WEATHER]),  # understood, but no tool can compute it
], ids=["not-understood", "no-compute-tool"])
def test_what_it_cannot_do_is_refused_in_words_never_guessed(
    client: openai.OpenAI, stream: bool, question: str, tools: list[ChatCompletionToolParam]
) -> None:
    answer = ask(client, [{"role": "user", "content": question}], tools, stream)
    assert answer["calls"] == [] and answer["finish"] == "stop"
    assert answer["content"] == NOT_UNDERSTOOD
    assert "qwen-ci emulator" in answer["content"] and "not guess" in answer["content"]
    assert answer["fingerprint"] == FINGERPRINT


def test_a_failed_tool_run_is_reported_not_hidden(client: openai.OpenAI) -> None:
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is 2**100?"}]
    [call] = ask(client, question, [PYTHON], False)["calls"]
    failed = "[error]\nZeroDivisionError: division by zero"
    answer = ask(client, question + answered_with(call, failed), [PYTHON], False)
    assert "could not compute" in answer["content"] and "ZeroDivisionError" in answer["content"]


def test_malformed_tools_are_a_clear_400(client: openai.OpenAI) -> None:
    bad: Any = [{"type": "function", "function": {"description": "no name"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What is 2**100?"}], tools=bad)
    assert caught.value.status_code == 400
    assert "tools must be a list" in str(caught.value)


def test_the_interpreter_model_does_not_answer_with_function_calls(
    client: openai.OpenAI,
) -> None:
    """Only models without the interpreter are the function-calling model."""
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="qwen3-max-preview", messages=[{"role": "user", "content": "What is 2**100?"}],
            tools=[PYTHON], extra_body={"enable_code_interpreter": True})
