"""QwenCodeInterpreter (LlamaIndex) end to end against the emulator, both protocols."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")
llamaindex_qwen_ci = pytest.importorskip("llamaindex_qwen_ci")

from llama_index.core.base.llms.types import ChatMessage, MessageRole  # noqa: E402
from llama_index.core.chat_engine import SimpleChatEngine  # noqa: E402

from qwen_ci_server.emulator import Emulator  # noqa: E402
from tests.emulator.conftest import KEY  # noqa: E402

BIG = "77269364466549865653073473388030061522211723"
SEED = "123的21次方是多少？"
PROTOCOLS = ["dashscope", "openai"]


def llm(emu: Emulator, protocol: str) -> object:
    return llamaindex_qwen_ci.QwenCodeInterpreter(base_url=emu.base_url, api_key=KEY,
                                                  protocol=protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chat_and_complete(emulator: Emulator, protocol: str) -> None:
    model = llm(emulator, protocol)
    response = model.chat([ChatMessage(role=MessageRole.USER, content=SEED)])  # type: ignore[attr-defined]
    assert BIG in (response.message.content or "")
    assert response.message.additional_kwargs["reasoning_content"]
    assert response.additional_kwargs["finish_reason"] == "stop"
    tool_info = response.message.additional_kwargs["tool_info"]
    if protocol == "dashscope":
        assert [t["code_interpreter"]["code"] for t in tool_info] == ["123**21"]
    else:
        assert tool_info == []
    completion = model.complete("What is 20 factorial?")  # type: ignore[attr-defined]
    assert "2432902008176640000" in completion.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_chat_last_chunk_equals_chat(emulator: Emulator, protocol: str) -> None:
    model = llm(emulator, protocol)
    messages = [ChatMessage(role=MessageRole.USER, content="What is 2**100?")]
    chunks = list(model.stream_chat(messages))  # type: ignore[attr-defined]
    assert "".join(c.delta or "" for c in chunks) == chunks[-1].message.content
    thinking = "".join(c.additional_kwargs.get("thinking_delta", "") for c in chunks)
    assert thinking == chunks[-1].message.additional_kwargs["reasoning_content"]
    assert "1267650600228229401496703205376" in (chunks[-1].message.content or "")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_async(emulator: Emulator, protocol: str) -> None:
    model = llm(emulator, protocol)
    response = await model.achat([ChatMessage(role=MessageRole.USER, content="7 * 8 = ?")])  # type: ignore[attr-defined]
    assert "56" in (response.message.content or "")
    stream = await model.astream_chat(  # type: ignore[attr-defined]
        [ChatMessage(role=MessageRole.USER, content="What is 3**4?")]
    )
    deltas = [chunk.delta or "" async for chunk in stream]
    assert "81" in "".join(deltas)


def test_chat_engine(emulator: Emulator) -> None:
    engine = SimpleChatEngine.from_defaults(llm=llm(emulator, "dashscope"))  # type: ignore[arg-type]
    first = engine.chat("Hello")
    assert str(first).startswith("Hello!")
    streamed = engine.stream_chat("What is 10 factorial?")
    text = "".join(streamed.response_gen)
    assert "3628800" in text
    assert len(engine.chat_history) == 4


async def test_async_chat_engine(emulator: Emulator) -> None:
    engine = SimpleChatEngine.from_defaults(llm=llm(emulator, "openai"))  # type: ignore[arg-type]
    response = await engine.achat("What is the sum of 1, 2 and 3?")
    assert "6" in str(response)
