"""ChatQwenCodeInterpreter end to end against the emulator, both protocols."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import KEY

BIG = "77269364466549865653073473388030061522211723"
SEED = "123的21次方是多少？"
TOOL_INFO = [{"type": "code_interpreter", "code_interpreter": {"code": "123**21"}}]
PROTOCOLS = ["dashscope", "openai"]


def llm(emu: Emulator, protocol: str, **kwargs: Any) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(base_url=emu.base_url, api_key=KEY, protocol=protocol,
                                   **kwargs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invoke(emulator: Emulator, protocol: str) -> None:
    message = llm(emulator, protocol).invoke(SEED)
    assert isinstance(message, AIMessage) and BIG in message.content
    assert message.additional_kwargs["reasoning_content"]
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_token_details"]["reasoning"] > 0
    assert message.response_metadata["model_name"] == "qwen3-max-preview"
    assert message.response_metadata["finish_reason"] == "stop"
    if protocol == "dashscope":
        assert message.additional_kwargs["tool_info"] == TOOL_INFO
        assert message.response_metadata["plugins"] == {"code_interpreter": {"count": 1}}
        calls = [b for b in message.content_blocks if b["type"] == "server_tool_call"]
        assert [c["args"] for c in calls] == [{"code": "123**21"}]
    else:
        assert message.additional_kwargs["tool_info"] == []  # this protocol returns no code
        assert message.response_metadata["plugins"] == {"code_interpreter": {"count": None}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_adds_up_to_invoke(emulator: Emulator, protocol: str) -> None:
    model = llm(emulator, protocol)
    chunks = list(model.stream("First compute 123 to the power of 23, then divide that by 5"))
    assert len(chunks) > 10
    total: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert chunks[-1].chunk_position == "last"
    invoked = model.invoke("First compute 123 to the power of 23, then divide that by 5")
    assert total.content == invoked.content
    assert total.additional_kwargs == invoked.additional_kwargs
    assert total.usage_metadata == invoked.usage_metadata
    if protocol == "dashscope":
        runs = [r["code_interpreter"]["code"] for r in total.additional_kwargs["tool_info"]]
        assert runs == ["123**23", "1169008215014432917465348578887506800769541157267 / 5"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_async(emulator: Emulator, protocol: str) -> None:
    model = llm(emulator, protocol)
    message = await model.ainvoke("What is the average of 3, 4 and 8?")
    assert str(message.content).endswith("is:\n\n5")  # exact: 5, not 5.0
    pieces = [chunk async for chunk in model.astream([HumanMessage("What is 12 * 12?")])]
    assert "144" in "".join(str(p.content) for p in pieces)
    batch = await model.abatch(["What is 2**8?", "Hello"])
    assert "256" in batch[0].content and batch[1].content.startswith("Hello!")


def test_chain_with_prompt_and_parser(emulator: Emulator) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You compute exactly."), ("human", "What is {n} factorial?")]
    )
    chain = prompt | llm(emulator, "dashscope") | StrOutputParser()
    assert "2432902008176640000" in chain.invoke({"n": 20})


def test_history_and_system_messages(emulator: Emulator) -> None:
    messages = [SystemMessage("hello"), SystemMessage("hello"), HumanMessage("hello"),
                AIMessage("hello"), HumanMessage("What is 9 ** 3?")]
    assert "729" in llm(emulator, "openai").invoke(messages).content


def test_stop_and_max_tokens(emulator: Emulator) -> None:
    stopped = llm(emulator, "dashscope", stop=["scripted"]).invoke("Hello")
    assert stopped.content == "Hello! I am the "
    short = llm(emulator, "dashscope", max_tokens=3).invoke("Hello")
    assert short.response_metadata["finish_reason"] == "length" and short.content
