"""LlamaIndex LLM for Qwen's hosted code interpreter."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from io import IOBase
from typing import TYPE_CHECKING, Any, Literal

import httpx
from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    ImageBlock,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from llama_index.core.utils import resolve_binary
from pydantic import ConfigDict, Field, SecretStr, model_validator

from llamaindex_qwen_ci.tracing import CodeReporter
from qwen_ci.client import DEFAULT_MAX_RETRIES
from qwen_ci.config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_MODEL, DEFAULT_REGION, model_info
from qwen_ci.errors import InvalidRequestError
from qwen_ci.events import CodeRun, Event, Finish, ReasoningDelta, SearchInfo, TextDelta, ToolRun
from qwen_ci.request import SERVICE_OPTIONS, TOOLS_ERROR, WireRequest, build, check_no_tools
from qwen_ci.result import Accumulator, Result, acollect, collect
from qwen_ci.session import TRANSPORT_FIELDS, Session, call_options, session_for
from qwen_ci.settings import check_settings

if TYPE_CHECKING:
    from llama_index.core.chat_engine.types import AgentChatResponse
    from llama_index.core.tools.types import BaseTool

# LlamaIndex passes these through **kwargs; they are not service parameters.
_LLAMA_INDEX_KWARGS = frozenset({"formatted"})

_ROLES: dict[MessageRole, str] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",  # the core refuses tool results with the tools error
    MessageRole.FUNCTION: "function",
}


def _api_key_from_env() -> SecretStr | None:
    value = os.environ.get(API_KEY_ENV)
    return SecretStr(value) if value else None


def _base_url_from_env() -> str | None:
    return os.environ.get(BASE_URL_ENV) or None


class QwenCodeInterpreter(LLM):
    """Qwen with DashScope's built-in code interpreter, as a LlamaIndex LLM.

    The model thinks, writes Python, the service runs it in its sandbox, and the model
    answers with the result. Every call streams on the wire; ``chat`` aggregates.

    Setup: ``pip install "qwen-code-interpreter[llamaindex]"`` and set
    ``DASHSCOPE_API_KEY`` (a key of the region you call), or point ``base_url`` at a
    compatible server.

    Output: ``message.content`` is the answer; ``message.blocks`` holds a ``ThinkingBlock``
    (the whole thinking) and a ``TextBlock`` (the answer);
    ``message.additional_kwargs["reasoning_content"]`` and ``["tool_info"]`` (each executed
    run once, in order, in DashScope's entry shape; with ``protocol="responses"`` each
    entry also holds ``outputs``, the run's execution log, and ``container_id``), and
    ``["builtin_tools"]`` when ``web_search``/``web_extractor`` ran (``builtin_tools=``);
    ``response.additional_kwargs`` holds
    the usage (``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
    ``reasoning_tokens``, ``plugins``); ``response.raw`` is the last wire frame.
    In ``stream_chat``, ``delta`` is answer text, ``additional_kwargs["thinking_delta"]``
    the thinking and ``additional_kwargs["tool_info_delta"]`` a run as soon as it is final
    (``builtin_tools_delta`` for a web tool call); the last chunk equals ``chat``'s
    response. ``protocol`` unset takes the best one the model supports (Responses for
    the Qwen3.5-Plus series and later; native for qwen3-max-preview).

    Function calling is refused (``predict_and_call``, ``tools=...``; ``FunctionAgent``
    fails): the service cannot combine it with the interpreter. Use ``ReActAgent``.
    Settings every call would refuse (a model without the interpreter, out-of-range
    sampling, ``extra_body={"enable_thinking": False}``) fail at construction.

    The last stream chunk's ``delta`` is ``""``, never None; ``metadata.num_output`` is
    ``max_tokens`` when set. Inside query engines, chat engines and agents,
    :func:`llamaindex_qwen_ci.code_runs` collects the executed code of every call.

    Example:
        .. code-block:: python

            from llama_index.core.llms import ChatMessage
            from llamaindex_qwen_ci import QwenCodeInterpreter

            llm = QwenCodeInterpreter(model="qwen3-max-preview")
            response = llm.chat([ChatMessage(role="user", content="123的21次方是多少？")])
            print(response.message.content)
            for run in response.message.additional_kwargs["tool_info"]:
                print(run["code_interpreter"]["code"])  # 123**21
            print(response.additional_kwargs["total_tokens"])
    """

    model: str = Field(default=DEFAULT_MODEL, description="Model name.")
    api_key: SecretStr | None = Field(
        default_factory=_api_key_from_env,
        exclude=True,
        repr=False,
        description=f"DashScope API key ({API_KEY_ENV}); keys belong to one region.",
    )
    base_url: str | None = Field(
        default_factory=_base_url_from_env,  # read when the model is built, as the key is
        description="Service root, e.g. https://dashscope.aliyuncs.com (DASHSCOPE_BASE_URL).",
    )
    region: str = Field(
        default=DEFAULT_REGION, description="Region whose host is used without base_url."
    )
    protocol: Literal["dashscope", "openai", "responses"] | None = Field(
        default=None,
        description="'responses' (the code and its output), 'dashscope' (native, the code) "
        "or 'openai' (chat completions); None: the best one the model supports.",
    )
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    thinking_budget: int | None = Field(default=None, description="Maximum thinking tokens.")
    builtin_tools: list[str] | None = Field(
        default=None,
        description="Built-in tools beside the interpreter: 'web_search', 'web_extractor' "
        "(the extractor on the Responses protocol only).",
    )
    timeout: float | None = Field(
        default=None, description="Seconds to wait for the next byte (default 300)."
    )
    max_retries: int = Field(
        default=DEFAULT_MAX_RETRIES,
        description="Retries for connection errors, 429 and 5xx, only before output starts.",
    )
    extra_body: dict[str, Any] | None = Field(
        default=None,
        description="More service parameters, deep-merged (per-call values win).",
    )
    default_headers: dict[str, str] | None = None
    http_client: httpx.Client | None = Field(
        default=None,
        exclude=True,
        description="An httpx.Client for every sync call (proxies, mTLS, a custom CA, a test "
        "transport) in place of the model's own pool; yours to close. Models given the same "
        "client share its pool.",
    )
    http_async_client: httpx.AsyncClient | None = Field(
        default=None,
        exclude=True,
        description="The same for async calls: an httpx.AsyncClient, used on every event loop.",
    )
    emit_code_events: bool = Field(
        default=False,
        description="Dispatch a CodeInterpreterRunEvent per run, on the call's span (opt-in: "
        "OpenInference logs a warning for every event type it does not know).",
    )

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_tools(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            check_no_tools(values, "the constructor")
        return values

    @model_validator(mode="after")
    def _check_settings(self) -> QwenCodeInterpreter:
        # what every call would refuse fails here (pydantic wraps it in ValidationError)
        check_settings(self.model, {name: getattr(self, name) for name in SERVICE_OPTIONS},
                       self.protocol, {name: getattr(self, name) for name in TRANSPORT_FIELDS})
        return self

    @classmethod
    def class_name(cls) -> str:
        return "QwenCodeInterpreter"

    @property
    def metadata(self) -> LLMMetadata:
        info = model_info(self.model)
        return LLMMetadata(
            context_window=info.context_window,
            num_output=self.max_tokens or info.max_output_tokens,
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=self.model,
        )

    # ------------------------------------------------------------------ endpoints

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _completion(self._chat(_prompt(prompt), **kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        chunks = self._stream_chat(_prompt(prompt), **kwargs)

        def gen() -> CompletionResponseGen:
            for chunk in chunks:
                yield _completion(chunk)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return self._astream_chat(messages, **kwargs)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion(await self._achat(_prompt(prompt), **kwargs))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        chunks = self._astream_chat(_prompt(prompt), **kwargs)

        async def gen() -> CompletionResponseAsyncGen:
            async for chunk in chunks:
                yield _completion(chunk)

        return gen()

    # ------------------------------------------------------------------ tools: refused

    def predict_and_call(
        self,
        tools: list[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> AgentChatResponse:
        """Refused: the code interpreter and function calling are mutually exclusive."""
        raise InvalidRequestError(TOOLS_ERROR.format(what="predict_and_call(tools=...)"))

    async def apredict_and_call(
        self,
        tools: list[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> AgentChatResponse:
        """Refused: the code interpreter and function calling are mutually exclusive."""
        raise InvalidRequestError(TOOLS_ERROR.format(what="apredict_and_call(tools=...)"))

    # ------------------------------------------------------------------ the work
    # Undecorated, so that each public call emits its instrumentation events once.

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _response(collect(self._events(messages, kwargs)))

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _response(await acollect(self._aevents(messages, kwargs)))

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        events = self._events(messages, kwargs)  # validates now, sends on first next()

        def gen() -> ChatResponseGen:
            acc = Accumulator()
            for event in events:
                acc.add(event)
                chunk = _chunk(event, acc.result())
                if chunk is not None:
                    yield chunk

        return gen()

    def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        events = self._aevents(messages, kwargs)  # validates now, sends on first anext()

        async def gen() -> ChatResponseAsyncGen:
            acc = Accumulator()
            async for event in events:
                acc.add(event)
                chunk = _chunk(event, acc.result())
                if chunk is not None:
                    yield chunk

        return gen()

    def _events(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> Iterator[Event]:
        events = self._get_session().stream(self._request(messages, kwargs))
        return CodeReporter(dispatch=self.emit_code_events).watch(events)

    def _aevents(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> AsyncIterator[Event]:
        events = self._get_session().astream(self._request(messages, kwargs))
        return CodeReporter(dispatch=self.emit_code_events).awatch(events)

    def _request(self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]) -> WireRequest:
        """This call's request: the fields, with the call's arguments over them."""
        call = {k: v for k, v in kwargs.items() if k not in _LLAMA_INDEX_KWARGS}
        options = call_options(
            self.model, {name: getattr(self, name) for name in SERVICE_OPTIONS}, call
        )
        return build(_to_core(messages), options, self.protocol)

    def _get_session(self) -> Session:
        """This instance's connection pools, kept while the transport settings stay."""
        return session_for(
            self,
            self.api_key.get_secret_value() if self.api_key else None,
            {name: getattr(self, name) for name in TRANSPORT_FIELDS},
        )


# ---------------------------------------------------------------------- input translation


def _prompt(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


def _image_url(block: ImageBlock, index: int) -> str:
    """The URL of an image block, or a data URL for inline bytes and local files."""
    if block.url is not None:
        return str(block.url)
    if isinstance(block.image, IOBase):  # a file object: raw bytes
        block.image.seek(0)
        data = base64.b64encode(block.image.read())
    elif block.image is not None or block.path is not None:  # bytes are stored base64
        data = resolve_binary(raw_bytes=block.image, path=block.path, as_base64=True).read()
    else:
        raise InvalidRequestError(
            f"messages[{index}] has an image block without url, image or path."
        )
    return f"data:{block.image_mimetype or 'image/png'};base64,{data.decode('ascii')}"


def _content(message: ChatMessage, index: int) -> str | list[dict[str, str]]:
    parts: list[dict[str, str]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image", "url": _image_url(block, index)})
        elif isinstance(block, ThinkingBlock | CachePoint):
            continue  # our own thinking is not sent back; cache hints do not apply
        else:
            raise InvalidRequestError(
                f"messages[{index}] has a {block.block_type!r} block that this model cannot "
                "send; use text and image blocks."
            )
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)  # as ChatMessage.content joins them
    return parts


def _to_core(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex messages -> the core's neutral message dicts."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role, str(message.role.value))
        calls = message.additional_kwargs.get("tool_calls") or [
            b for b in message.blocks if isinstance(b, ToolCallBlock)
        ]
        if calls:  # the core refuses it with the tools error
            out.append({"role": role, "tool_calls": calls})
            continue
        out.append({"role": role, "content": _content(message, index)})
    return out


# ---------------------------------------------------------------------- output translation


def _message(result: Result) -> ChatMessage:
    """The message so far: thinking block, then the answer."""
    blocks: list[ThinkingBlock | TextBlock] = []
    if result.reasoning:
        blocks.append(
            ThinkingBlock(
                content=result.reasoning,
                num_tokens=result.usage.reasoning_tokens if result.usage else None,
            )
        )
    blocks.append(TextBlock(text=result.text))
    additional: dict[str, Any] = {
        "reasoning_content": result.reasoning,
        "tool_info": result.tool_info,
    }
    if result.search_info is not None:
        additional["search_info"] = result.search_info
    if result.tool_runs:
        additional["builtin_tools"] = result.builtin_tools
    return ChatMessage(
        role=MessageRole.ASSISTANT, blocks=list(blocks), additional_kwargs=additional
    )


def _response(result: Result) -> ChatResponse:
    """The whole response: what ``chat`` returns and what the last stream chunk is."""
    finish = result.finish
    assert finish is not None  # collect() raises on a stream without a final frame
    return ChatResponse(
        message=_message(result),
        raw=finish.raw,
        additional_kwargs=_response_kwargs(result, finish),
    )


def _response_kwargs(result: Result, finish: Finish) -> dict[str, Any]:
    out: dict[str, Any] = {}
    usage = result.usage
    if usage is not None:
        out.update(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            plugins=dict(usage.plugins),
        )
        if usage.cached_tokens is not None:
            out["cached_tokens"] = usage.cached_tokens
    out.update(model_name=finish.model, finish_reason=finish.reason, request_id=finish.request_id)
    return out


def _chunk(event: Event, result: Result) -> ChatResponse | None:
    """The stream chunk for one event (``None`` for usage, which the last chunk carries)."""
    if isinstance(event, Finish):
        last = _response(result)
        last.delta = ""  # LlamaIndex's own loops print the delta: never None
        return last
    if isinstance(event, TextDelta):
        return ChatResponse(message=_message(result), delta=event.text)
    if isinstance(event, ReasoningDelta):
        return ChatResponse(
            message=_message(result), delta="", additional_kwargs={"thinking_delta": event.text}
        )
    if isinstance(event, CodeRun):
        return ChatResponse(
            message=_message(result),
            delta="",
            additional_kwargs={"tool_info_delta": [event.to_tool_info()]},
        )
    if isinstance(event, ToolRun):
        return ChatResponse(
            message=_message(result),
            delta="",
            additional_kwargs={"builtin_tools_delta": [event.to_entry()]},
        )
    if isinstance(event, SearchInfo):
        return ChatResponse(message=_message(result), delta="")
    return None


def _completion(chat: ChatResponse) -> CompletionResponse:
    return CompletionResponse(
        text=chat.message.content or "",
        additional_kwargs={**chat.message.additional_kwargs, **chat.additional_kwargs},
        raw=chat.raw,
        delta=chat.delta,
    )


__all__ = ["QwenCodeInterpreter"]
