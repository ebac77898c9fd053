"""Scripted streams and helpers shared by the LlamaIndex tests."""

from __future__ import annotations

from typing import Any

from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse

from llamaindex_qwen_ci import QwenCodeInterpreter
from tests.replay import ReplayServer, native_stream

CI = "single-generation-message-with-code-interpreter-sse"
QUESTION = "123的21次方是多少？"
TOOL_INFO = [{"type": "code_interpreter", "code_interpreter": {"code": "123**21"}}]

# two code runs, each first announced with empty code, thinking before/between/after them
TWO_RUNS = native_stream([
    {"reasoning": "First "},
    {"reasoning": "compute."},
    {"tool_info": [""]},
    {"tool_info": ["x = 2**10"]},
    {"reasoning": "Then ", "tool_info": ["x = 2**10"], "input_tokens": 180},
    {"tool_info": ["x = 2**10", ""]},
    {"tool_info": ["x = 2**10", "print(x // 4)"]},
    {"reasoning": "done.", "tool_info": ["x = 2**10", "print(x // 4)"], "input_tokens": 260},
    {"content": "x is 1024", "tool_info": ["x = 2**10", "print(x // 4)"]},
    {"content": "; x//4 is 256.", "tool_info": ["x = 2**10", "print(x // 4)"]},
    {"finish": "stop", "tool_info": ["x = 2**10", "print(x // 4)"]},
])
TWO_RUNS_INFO = [
    {"type": "code_interpreter", "code_interpreter": {"code": "x = 2**10"}},
    {"type": "code_interpreter", "code_interpreter": {"code": "print(x // 4)"}},
]
THINKING = "First compute.Then done."
ANSWER = "x is 1024; x//4 is 256."
OK = native_stream([{"content": "ok", "finish": "stop"}])


def make_llm(server: ReplayServer, **kwargs: Any) -> QwenCodeInterpreter:
    return QwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, **kwargs)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


ENDPOINTS = ["chat", "stream_chat", "complete", "stream_complete",
             "achat", "astream_chat", "acomplete", "astream_complete"]

Response = ChatResponse | CompletionResponse


async def call(llm: QwenCodeInterpreter, endpoint: str, text: str,
               **kwargs: Any) -> tuple[Response, list[Response]]:
    """Run one endpoint; return the final response and the chunks (empty if not streaming)."""
    chunks: list[Any]
    if endpoint == "chat":
        return llm.chat(user(text), **kwargs), []
    if endpoint == "complete":
        return llm.complete(text, **kwargs), []
    if endpoint == "achat":
        return await llm.achat(user(text), **kwargs), []
    if endpoint == "acomplete":
        return await llm.acomplete(text, **kwargs), []
    if endpoint == "stream_chat":
        chunks = list(llm.stream_chat(user(text), **kwargs))
    elif endpoint == "stream_complete":
        chunks = list(llm.stream_complete(text, **kwargs))
    elif endpoint == "astream_chat":
        chunks = [c async for c in await llm.astream_chat(user(text), **kwargs)]
    else:
        chunks = [c async for c in await llm.astream_complete(text, **kwargs)]
    return chunks[-1], chunks


def flat(response: Response) -> tuple[str, dict[str, Any]]:
    """(answer, additional_kwargs) in the completion shape, for any response."""
    if isinstance(response, ChatResponse):
        return response.message.content or "", {**response.message.additional_kwargs,
                                                 **response.additional_kwargs}
    return response.text, response.additional_kwargs
