"""Scripted streams and helpers shared by the LlamaIndex tests."""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse
from pydantic import Field

from llamaindex_qwen_ci import QwenCodeInterpreter
from tests.replay import (  # noqa: F401 - shared scripted streams, re-exported
    CI,
    QUESTION,
    TOOL_INFO,
    TWO_RUNS,
    TWO_RUNS_INFO,
    ReplayServer,
    native_stream,
)

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


class Recorder(BaseEventHandler):
    """Keeps every event the root dispatcher sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)
