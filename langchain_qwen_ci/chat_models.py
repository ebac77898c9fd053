"""LangChain chat model for Qwen's hosted code interpreter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import httpx
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import (
    BaseChatModel,
    LangSmithParams,
    LanguageModelInput,
    ModelProfile,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.utils import from_env, secret_from_env
from pydantic import ConfigDict, Field, SecretStr, model_validator

from langchain_qwen_ci._refusals import STRUCTURED, bind_tools_refusal
from langchain_qwen_ci.content_blocks import PROVIDER
from langchain_qwen_ci.errors import atranslated, translated
from langchain_qwen_ci.profile import count_message_tokens, count_tokens, model_profile
from langchain_qwen_ci.tracing import (
    CODE_EVENT,
    AsyncCodeRunTracer,
    CodeRunTracer,
    acall_config,
    call_config,
    in_call,
    prepare_call,
)
from qwen_ci.config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_MODEL, DEFAULT_REGION
from qwen_ci.errors import InvalidRequestError
from qwen_ci.events import (
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    SearchInfo,
    TextDelta,
    ToolRun,
    ToolStart,
    Usage,
)
from qwen_ci.request import (
    SERVICE_OPTIONS,
    WireRequest,
    build,
    check_no_tools,
)
from qwen_ci.result import Result, acollect, collect
from qwen_ci.session import TRANSPORT_FIELDS, Session, call_options, session_for
from qwen_ci.settings import check_settings

# LangChain passes these through **kwargs; they are not service parameters.
_LANGCHAIN_KWARGS = frozenset({"ls_structured_output_format", "stream"})

class ChatQwenCodeInterpreter(BaseChatModel):
    """Qwen with DashScope's built-in code interpreter, as a LangChain chat model.

    The model thinks, writes Python, the service runs it in its sandbox, and the model
    answers with the result. Every call streams on the wire; ``invoke`` aggregates.

    Setup:
        ``pip install "qwen-code-interpreter[langchain]"`` and set ``DASHSCOPE_API_KEY``
        (a Beijing-region key for the default region), or point ``base_url`` at the
        local emulator.

    Key init args:
        model: ``qwen3-max-preview`` (default), ``qwen3-max``, ``qwen3.5-plus``...
        api_key: DashScope key; read from ``DASHSCOPE_API_KEY``.
        region / base_url: ``cn-beijing`` (default), ``ap-southeast-1``, ``us-east-1``,
            or the service root (``DASHSCOPE_BASE_URL``).
        protocol: ``"responses"`` (returns the code and what it printed),
            ``"dashscope"`` (native, returns the executed code) or ``"openai"``
            (chat completions, no executed code); unset: the best one the model
            supports (docs/protocols.md).
        builtin_tools: ``["web_search"]`` or ``["web_search", "web_extractor"]``
            (the extractor on Responses only) beside the interpreter.
        temperature, top_p, max_tokens, seed, stop, thinking_budget: sampling.
        timeout, max_retries: per read timeout in seconds; retries before output.
        extra_body: more service parameters, deep-merged into the request.
        http_client, http_async_client: your own ``httpx`` clients (proxy, mTLS, CA).

    Instantiate:
        .. code-block:: python

            from langchain_qwen_ci import ChatQwenCodeInterpreter

            llm = ChatQwenCodeInterpreter(model="qwen3-max-preview")

    Invoke:
        .. code-block:: python

            msg = llm.invoke("123的21次方是多少？")
            msg.content                               # the answer
            msg.additional_kwargs["reasoning_content"]  # the thinking
            msg.additional_kwargs["tool_info"]        # [{"type": "code_interpreter",
                                                      #   "code_interpreter": {"code": "123**21"}}]
            msg.usage_metadata, msg.response_metadata["plugins"]
            # protocol="responses" also returns what each run printed:
            #   tool_info[0]["code_interpreter"]["outputs"] == [{"type": "logs", "logs": ...}]
            #   and msg.content_blocks holds a server_tool_result per run

    Stream:
        .. code-block:: python

            for chunk in llm.stream("What is 2**100?"):
                if thinking := chunk.additional_kwargs.get("reasoning_content"):
                    print(thinking, end="")
                for run in chunk.additional_kwargs.get("tool_info", []):
                    print("\\n[code]", run["code_interpreter"]["code"])
                print(chunk.content, end="")

    Function calling and structured output are refused (``bind_tools``,
    ``with_structured_output``): the service cannot combine them with the interpreter.
    Settings every call would refuse fail at construction (pydantic's ``ValidationError``).
    ``llm.profile`` comes from the model table; ``get_num_tokens`` and
    ``get_num_tokens_from_messages`` are approximate (no tokenizer needed), so
    ``trim_messages(..., token_counter=llm)`` works. A context-length error is LangChain's
    ``ContextOverflowError`` (and :class:`qwen_ci.BadRequestError`).
    """

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model name."""
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(API_KEY_ENV, default=None), alias="dashscope_api_key"
    )
    """DashScope API key (``DASHSCOPE_API_KEY``). Keys belong to one region."""
    base_url: str | None = Field(default_factory=from_env(BASE_URL_ENV, default=None))
    """Service root, e.g. ``https://dashscope.aliyuncs.com`` (``DASHSCOPE_BASE_URL``)."""
    region: str = DEFAULT_REGION
    """Region whose host is used when ``base_url`` is not set."""
    protocol: Literal["dashscope", "openai", "responses"] | None = None
    """Wire protocol: ``responses`` (code and its output), ``dashscope`` (native, the
    code) or ``openai`` (chat completions); ``None``: the best one the model supports."""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    thinking_budget: int | None = None
    """Maximum thinking tokens."""
    builtin_tools: list[str] | None = None
    """Built-in tools beside the interpreter: ``"web_search"``, ``"web_extractor"``."""
    timeout: float | None = None
    """Seconds to wait for the next byte (default 300: code runs are silent)."""
    max_retries: int = 2
    """Retries for connection errors, 429 and 5xx, only before output starts."""
    extra_body: dict[str, Any] | None = None
    """More service parameters; for the native protocol they go into ``parameters``."""
    default_headers: dict[str, str] | None = None
    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """An ``httpx.Client`` for every sync call (proxies, mTLS, a custom CA, a test
    transport), in place of the model's own pool; yours to close. Models given the same
    client share its pool."""
    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)
    """The same for async calls: an ``httpx.AsyncClient``, used on every event loop."""
    streaming: bool = False
    """Accepted for compatibility; the service always streams."""
    trace_code_runs: bool = True
    """Report each executed code block as a ``code_interpreter`` tool run, child of this
    model's run, from the run's start to when it is final (every tracer sees it)."""
    emit_code_events: bool = True
    """Dispatch ``code_interpreter_start`` and ``code_interpreter`` custom events
    (``{"index", "code"}``) on this model's run when a run starts and when it is final
    (``astream_events`` consumers see them). Nothing is dispatched without a tracer."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_tools(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            check_no_tools(values, "the constructor")
        return values

    @model_validator(mode="after")
    def _check_settings(self) -> ChatQwenCodeInterpreter:
        # what every call would refuse fails here (pydantic wraps it in ValidationError)
        check_settings(self.model_name, {name: getattr(self, name) for name in SERVICE_OPTIONS},
                       self.protocol, {name: getattr(self, name) for name in TRANSPORT_FIELDS})
        return self

    def _resolve_model_profile(self) -> ModelProfile | None:
        return model_profile(self.model_name)

    def get_num_tokens(self, text: str) -> int:
        """Approximate token count of ``text``, without a tokenizer (see
        :func:`langchain_qwen_ci.profile.count_tokens`)."""
        return count_tokens(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Approximate token count of ``messages`` as sent (``trim_messages(token_counter=llm)``
        works without ``transformers``); the exact count is in ``usage_metadata``."""
        return count_message_tokens(messages)

    def get_token_ids(self, text: str) -> list[int]:
        """Not available: no Qwen tokenizer ships with this package."""
        raise NotImplementedError(
            "ChatQwenCodeInterpreter has no tokenizer; get_num_tokens and "
            "get_num_tokens_from_messages give an approximate count."
        )

    # ------------------------------------------------------------------ LangChain API

    @property
    def _llm_type(self) -> str:
        return "qwen-code-interpreter"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "protocol": self.protocol,
            "region": self.region,
            "base_url": self.base_url,
            **{name: getattr(self, name) for name in SERVICE_OPTIONS},
        }

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_qwen_ci", "chat_models"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": API_KEY_ENV}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="dashscope",
            ls_model_name=kwargs.get("model") or self.model_name,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Refused: the code interpreter and function calling are mutually exclusive.

        Agent constructors call this for you; the message names the one you called.
        """
        raise InvalidRequestError(bind_tools_refusal())

    def with_structured_output(
        self, schema: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Refused: structured output needs function calling or JSON mode."""
        raise InvalidRequestError(STRUCTURED)

    # ------------------------------------------------------------------ calls

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        events = self._events(messages, stop, kwargs)
        builder = _ChunkBuilder()
        for event in self._traced(events, run_manager):
            chunk = builder.on_event(event)
            if chunk is not None:
                if run_manager and isinstance(event, TextDelta | ReasoningDelta):
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        events = self._aevents(messages, stop, kwargs)
        builder = _ChunkBuilder()
        async for event in self._atraced(events, run_manager):
            chunk = builder.on_event(event)
            if chunk is not None:
                if run_manager and isinstance(event, TextDelta | ReasoningDelta):
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        events = self._events(messages, stop, kwargs)
        return _chat_result(collect(self._traced(events, run_manager)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        events = self._aevents(messages, stop, kwargs)
        return _chat_result(await acollect(self._atraced(events, run_manager)))

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        # when a streaming handler is attached (astream_events, LangGraph's "messages"
        # mode) langchain-core runs _stream without the run manager: see stream()
        config, call = prepare_call(ensure_config(config))
        with in_call(call):
            return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, call = prepare_call(ensure_config(config))
        with in_call(call):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        # langchain-core calls _stream without the run manager: fix the model run's id and
        # let _stream see the call's config, so code runs become children of that run
        config, call = prepare_call(ensure_config(config))
        return call_config(super().stream(input, config, stop=stop, **kwargs), call)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, call = prepare_call(ensure_config(config))
        return acall_config(super().astream(input, config, stop=stop, **kwargs), call)

    # ------------------------------------------------------------------ helpers

    def _call_args(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        call = {k: v for k, v in kwargs.items() if k not in _LANGCHAIN_KWARGS}
        if stop is not None:
            call["stop"] = stop
        return call

    def _traced(
        self, events: Iterator[Event], run_manager: CallbackManagerForLLMRun | None
    ) -> Iterator[Event]:
        if not (self.trace_code_runs or self.emit_code_events):
            return events
        tracer = CodeRunTracer(self, run_manager, tool_runs=self.trace_code_runs,
                               events=self.emit_code_events)
        return tracer.watch(events)

    def _atraced(
        self, events: AsyncIterator[Event], run_manager: AsyncCallbackManagerForLLMRun | None
    ) -> AsyncIterator[Event]:
        if not (self.trace_code_runs or self.emit_code_events):
            return events
        tracer = AsyncCodeRunTracer(self, run_manager, tool_runs=self.trace_code_runs,
                                    events=self.emit_code_events)
        return tracer.watch(events)

    def _events(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> Iterator[Event]:
        request = self._request(messages, stop, kwargs)  # validates before any I/O
        return translated(self._get_session().stream(request))

    def _aevents(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> AsyncIterator[Event]:
        request = self._request(messages, stop, kwargs)
        return atranslated(self._get_session().astream(request))

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> WireRequest:
        """This call's request: the fields, with the call's arguments over them."""
        options = call_options(
            self.model_name,
            {name: getattr(self, name) for name in SERVICE_OPTIONS},
            self._call_args(stop, kwargs),
        )
        return build(_to_core(messages), options, self.protocol)

    def _get_session(self) -> Session:
        """This instance's connection pools, kept while the transport settings stay."""
        return session_for(
            self,
            self.api_key.get_secret_value() if self.api_key else None,
            {name: getattr(self, name) for name in TRANSPORT_FIELDS},
        )


# ---------------------------------------------------------------------- translation


def _image_url(block: Mapping[str, Any]) -> str | None:
    """URL (or data URL) of an image content block in any LangChain shape."""
    kind = block.get("type")
    if kind == "image_url":
        value = block.get("image_url")
        url = value.get("url") if isinstance(value, Mapping) else value
        return url if isinstance(url, str) else None
    if kind == "image":
        if isinstance(block.get("url"), str):
            return str(block["url"])
        data = block.get("base64") or (
            block.get("data") if block.get("source_type") == "base64" else None
        )
        if isinstance(data, str):
            mime = block.get("mime_type") or "image/png"
            return f"data:{mime};base64,{data}"
    return None


def _content(message: BaseMessage, index: int) -> str | list[dict[str, str]]:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[dict[str, str]] = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind in ("reasoning", "thinking", "server_tool_call", "server_tool_result"):
            continue  # our own output blocks are not sent back
        elif (url := _image_url(block)) is not None:
            parts.append({"type": "image", "url": url})
        else:
            raise InvalidRequestError(
                f"messages[{index}] has a content block of type {kind!r} that this model "
                "cannot send; use text and image blocks."
            )
    return parts


def _to_core(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> the core's neutral message dicts (names are dropped)."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role: str
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
            if message.tool_calls or message.invalid_tool_calls:
                calls = [*message.tool_calls, *message.invalid_tool_calls]
                out.append({"role": "assistant", "tool_calls": calls})
                continue
        elif isinstance(message, ToolMessage):
            role = "tool"
        elif isinstance(message, FunctionMessage):
            role = "function"
        elif isinstance(message, ChatMessage):
            role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
        else:
            raise InvalidRequestError(
                f"messages[{index}] is a {type(message).__name__}; use system, human and "
                "AI messages."
            )
        out.append({"role": role, "content": _content(message, index)})
    return out


def _usage_metadata(usage: Usage) -> UsageMetadata:
    metadata = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        output_token_details={"reasoning": usage.reasoning_tokens},
    )
    if usage.cached_tokens is not None:
        metadata["input_token_details"] = {"cache_read": usage.cached_tokens}
    return metadata


def _response_metadata(finish: Finish, usage: Usage | None) -> dict[str, Any]:
    return {
        "model_provider": PROVIDER,
        "model_name": finish.model,
        "finish_reason": finish.reason,
        "request_id": finish.request_id,
        "plugins": dict(usage.plugins) if usage else {},
    }


class _ChunkBuilder:
    """Events -> chunks; every piece lands on exactly one chunk."""

    __slots__ = ("_usage",)

    _META: ClassVar[dict[str, Any]] = {"model_provider": PROVIDER}

    def __init__(self) -> None:
        self._usage: Usage | None = None

    def on_event(self, event: Event) -> ChatGenerationChunk | None:
        message: AIMessageChunk
        if isinstance(event, TextDelta):
            message = AIMessageChunk(content=event.text, response_metadata=dict(self._META))
        elif isinstance(event, ReasoningDelta):
            message = AIMessageChunk(
                content="",
                additional_kwargs={"reasoning_content": event.text},
                response_metadata=dict(self._META),
            )
        elif isinstance(event, CodeRun):
            message = AIMessageChunk(
                content="",
                additional_kwargs={"tool_info": [event.to_tool_info()]},
                response_metadata=dict(self._META),
            )
        elif isinstance(event, SearchInfo):
            message = AIMessageChunk(
                content="",
                additional_kwargs={"search_info": event.info},
                response_metadata=dict(self._META),
            )
        elif isinstance(event, ToolRun):
            message = AIMessageChunk(
                content="",
                additional_kwargs={"builtin_tools": [event.to_entry()]},
                response_metadata=dict(self._META),
            )
        elif isinstance(event, Usage):
            self._usage = event
            return None
        elif isinstance(event, CodeStart | ToolStart):
            return None  # the chunk contract carries a run once, when final
        else:
            message = AIMessageChunk(
                content="",
                additional_kwargs={"tool_info": []},  # the key is always there, runs or not
                response_metadata=_response_metadata(event, self._usage),
                usage_metadata=_usage_metadata(self._usage) if self._usage else None,
                chunk_position="last",
            )
            return ChatGenerationChunk(
                message=message, generation_info={"finish_reason": event.reason}
            )
        return ChatGenerationChunk(message=message)


def _chat_result(result: Result) -> ChatResult:
    """The aggregated message; equal to the sum of the streamed chunks."""
    additional: dict[str, Any] = {}
    if result.reasoning:
        additional["reasoning_content"] = result.reasoning
    if result.search_info is not None:
        additional["search_info"] = result.search_info
    additional["tool_info"] = result.tool_info  # [] without runs (and with protocol="openai")
    if result.tool_runs:
        additional["builtin_tools"] = result.builtin_tools
    assert result.finish is not None  # collect() raises on incomplete streams
    message = AIMessage(
        content=result.text,
        additional_kwargs=additional,
        response_metadata=_response_metadata(result.finish, result.usage),
        usage_metadata=_usage_metadata(result.usage) if result.usage else None,
    )
    generation = ChatGeneration(
        message=message, generation_info={"finish_reason": result.finish.reason}
    )
    return ChatResult(generations=[generation], llm_output={"model_name": result.finish.model})


__all__ = ["CODE_EVENT", "ChatQwenCodeInterpreter"]
