"""Code runs in LangChain traces: a child tool run per executed code block.

Each run becomes a ``code_interpreter`` tool run (``run_type="tool"``, inputs
``{"code": ...}``), child of the chat model's run, started when the run starts
(:class:`~qwen_ci.events.CodeStart`) and ended when it is final
(:class:`~qwen_ci.events.CodeRun`, whose code wins), with the execution log as its output
where the protocol returns it (Responses) and a note that it is not returned elsewhere;
a run the service reports as failed ends with an error. The other built-in tools
(``web_search``, ``web_extractor``) become tool runs of their own name the same way
(inputs: the query, or the URLs and goal; output: the source URLs, or the extracted text).
It goes through LangChain's callback system, so every tracer (``collect_runs``, a
``BaseTracer``, LangSmith, OpenInference) and ``astream_events``
(``on_tool_start``/``on_tool_end``) see it.

``invoke`` hands the model's run manager to ``_generate``, but ``stream``/``astream``
call ``_stream`` without it (langchain-core 1.x), and so does ``invoke`` when a streaming
handler is attached (``astream_events``, LangGraph's "messages" mode).
:class:`ChatQwenCodeInterpreter`'s ``invoke``/``stream`` (and async forms) therefore fix
the model run's id through the public ``run_id`` config key and make the call's config
visible to ``_stream`` while it runs (:func:`call_config`, :func:`in_call`), so the tool
runs get the handlers langchain-core configures for the model's run and that run as
parent (the id is the one langchain-core stamps on the chunks as ``lc_run--<id>``).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForToolRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    CallbackManagerForToolRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from qwen_ci.events import (
    NO_OUTPUT,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolRun,
    ToolStart,
)

TOOL_OUTPUT = NO_OUTPUT
CODE_EVENT = "code_interpreter"
"""Custom event dispatched on the model's run when a run is final (``{"index", "code"}``,
and ``"output"``, the execution log, where the protocol returns it)."""
CODE_START_EVENT = "code_interpreter_start"
"""Custom event dispatched on the model's run when a run starts (``{"index", "code"}``)."""
INDEX_KEY = "code_interpreter_index"
"""Metadata key of a tool run: the run's position in the response."""

_SERIALIZED = {"name": TOOL_NAME, "description": TOOL_DESCRIPTION}
_WEB = {"web_search": "Web search run by the Qwen service",
        "web_extractor": "Web page extraction run by the Qwen service"}


class _CallConfig:
    """The config of a ``stream``/``astream`` call and its model run's id."""

    __slots__ = ("config", "run_id")

    def __init__(self, config: RunnableConfig, run_id: UUID) -> None:
        self.config = config
        self.run_id = run_id


_CALL: ContextVar[_CallConfig | None] = ContextVar("qwen_ci_langchain_call", default=None)


def prepare_call(config: RunnableConfig) -> tuple[RunnableConfig, _CallConfig]:
    """A copy of ``config`` whose ``run_id`` (the model run's id) is fixed now."""
    run_id = config.get("run_id")
    if not isinstance(run_id, UUID):
        run_id = uuid4()
    config = {**config, "run_id": run_id}
    return config, _CallConfig(config, run_id)


@contextlib.contextmanager
def in_call(call: _CallConfig) -> Iterator[None]:
    """Make ``call`` visible to ``_stream``/``_generate`` during an ``invoke``."""
    token = _CALL.set(call)
    try:
        yield
    finally:
        _CALL.reset(token)


def call_config(chunks: Iterator[Any], call: _CallConfig) -> Iterator[Any]:
    """Iterate ``chunks`` with ``call`` visible to ``_stream``, only while it runs."""
    while True:
        token = _CALL.set(call)
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        finally:
            _CALL.reset(token)
        yield chunk


async def acall_config(chunks: AsyncIterator[Any], call: _CallConfig) -> AsyncIterator[Any]:
    """Async :func:`call_config`."""
    try:
        while True:
            token = _CALL.set(call)
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            finally:
                _CALL.reset(token)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _parent_manager(model: BaseChatModel) -> CallbackManagerForLLMRun | None:
    """The model run's manager rebuilt from the ``stream`` call's config, as langchain-core
    configures it (same handler objects, the fixed run id)."""
    call = _CALL.get()
    if call is None:
        return None
    config = call.config
    manager = CallbackManager.configure(
        config.get("callbacks"), model.callbacks, model.verbose,
        config.get("tags"), model.tags, config.get("metadata"), model.metadata,
    )
    return CallbackManagerForLLMRun(
        run_id=call.run_id, handlers=manager.handlers,
        inheritable_handlers=manager.inheritable_handlers, parent_run_id=manager.parent_run_id,
        tags=manager.tags, inheritable_tags=manager.inheritable_tags,
        metadata=manager.metadata, inheritable_metadata=manager.inheritable_metadata,
    )


def _aparent_manager(model: BaseChatModel) -> AsyncCallbackManagerForLLMRun | None:
    sync = _parent_manager(model)
    if sync is None:
        return None
    return AsyncCallbackManagerForLLMRun(
        run_id=sync.run_id, handlers=sync.handlers,
        inheritable_handlers=sync.inheritable_handlers, parent_run_id=sync.parent_run_id,
        tags=sync.tags, inheritable_tags=sync.inheritable_tags,
        metadata=sync.metadata, inheritable_metadata=sync.inheritable_metadata,
    )


def _child_args(parent: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun
                ) -> dict[str, Any]:
    """What the model run hands down to a child (as ``get_child`` does)."""
    return {
        "handlers": parent.inheritable_handlers,
        "inheritable_handlers": parent.inheritable_handlers,
        "parent_run_id": parent.run_id,
        "tags": parent.inheritable_tags,
        "inheritable_tags": parent.inheritable_tags,
        "metadata": parent.inheritable_metadata,
        "inheritable_metadata": parent.inheritable_metadata,
    }


def _child(parent: CallbackManagerForLLMRun, index: int | None) -> CallbackManager:
    """The manager of a tool run under the model's run, configured as a child runnable's
    (context tracers such as ``collect_runs`` are added as they would be for a tool)."""
    return CallbackManager.configure(CallbackManager(**_child_args(parent)),
                                     local_metadata=_index_metadata(index))


def _achild(parent: AsyncCallbackManagerForLLMRun, index: int | None) -> AsyncCallbackManager:
    return AsyncCallbackManager.configure(AsyncCallbackManager(**_child_args(parent)),
                                          local_metadata=_index_metadata(index))


def _index_metadata(index: int | None) -> dict[str, Any] | None:
    """A code run's position in the response (web tool runs have none)."""
    return None if index is None else {INDEX_KEY: index}


def _events_manager(parent: CallbackManagerForLLMRun) -> CallbackManager:
    return CallbackManager(handlers=parent.handlers, parent_run_id=parent.run_id)


def _aevents_manager(parent: AsyncCallbackManagerForLLMRun) -> AsyncCallbackManager:
    return AsyncCallbackManager(handlers=parent.handlers, parent_run_id=parent.run_id)


def _output(started: str, final: str, logs: str | None = None) -> str:
    """The tool run's output: the execution log, or a note where the protocol returns
    none; and the final code when it changed after the start (the run's inputs hold the
    code known at the start; the final code wins)."""
    text = TOOL_OUTPUT if logs is None else logs
    if started == final:
        return text
    return f"{text}\nThe code was completed after the run started; final code:\n{final}"


def _final_data(run: CodeRun) -> dict[str, Any]:
    """The final event's data: index and code, plus the output where it is known."""
    data: dict[str, Any] = {"index": run.index, "code": run.code}
    if run.output is not None:
        data["output"] = run.output
    return data


def _run_output(started: str, run: CodeRun) -> str:
    return _output(started, run.code, run.output)


class ToolCallFailed(RuntimeError):
    """The service reported a built-in tool call as failed (the tool run's error)."""


def _failure(status: str | None, output: Any) -> ToolCallFailed:
    return ToolCallFailed(f"The service reported the call as {status}: {output}")


def _tool_output(run: ToolRun) -> Any:
    """A web tool run's output: the source URLs, or the extracted text."""
    if isinstance(run.output, dict) and set(run.output) == {"sources"}:
        return "\n".join(run.output["sources"])
    return run.output


class _ReasoningOnSpan:
    """Puts the thinking on OpenInference's LLM span as reasoning content, through its
    public ``LangChainInstrumentor().get_span(run_id)``, when that instrumentation is
    active (OpenInference itself only shows it inside the output JSON)."""

    __slots__ = ("_reasoning", "_span", "_text")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._reasoning: list[str] = []
        self._text: list[str] = []

    @classmethod
    def maybe(cls, run_id: UUID) -> _ReasoningOnSpan | None:
        module = sys.modules.get("openinference.instrumentation.langchain")
        if module is None:  # never imported: the instrumentation cannot be active
            return None
        instrumentor = module.LangChainInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            return None
        span = instrumentor.get_span(run_id)
        if span is None or not span.is_recording():
            return None
        return cls(span)

    def on_event(self, event: Event) -> None:
        if isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, Finish) and self._reasoning and self._span.is_recording():
            prefix = "llm.output_messages.0.message"
            self._span.set_attribute(f"{prefix}.role", "assistant")
            contents = [("reasoning", "".join(self._reasoning)), ("text", "".join(self._text))]
            for index, (kind, text) in enumerate(contents):
                self._span.set_attribute(
                    f"{prefix}.contents.{index}.message_content.type", kind)
                self._span.set_attribute(
                    f"{prefix}.contents.{index}.message_content.text", text)


def _closed_early() -> RuntimeError:
    return RuntimeError("The response ended before this code run was final.")


class _TracerBase:
    """What both tracers keep for one call: the model's run manager, open tool runs."""

    __slots__ = ("_events", "_open", "_parent", "_reasoning", "_started", "_tool_runs")

    def __init__(self, parent: Any, *, tool_runs: bool, events: bool) -> None:
        if parent is not None and not parent.handlers:
            parent = None  # no tracer: nothing to report
        self._parent = parent
        self._reasoning = _ReasoningOnSpan.maybe(parent.run_id) if parent is not None else None
        self._tool_runs = tool_runs
        self._events = events
        self._open: dict[int | str, Any] = {}
        self._started: dict[int, str] = {}


class CodeRunTracer(_TracerBase):
    """Reports the code runs of one call to the model's run (sync calls).

    Example:
        >>> from langchain_qwen_ci import ChatQwenCodeInterpreter
        >>> from qwen_ci.events import CodeRun, CodeStart
        >>> tracer = CodeRunTracer(ChatQwenCodeInterpreter(api_key="k"), None,
        ...                        tool_runs=True, events=True)
        >>> tracer.on_event(CodeStart(0, "1+1")); tracer.on_event(CodeRun(0, "1+1"))
        >>> tracer.close()  # no model run in this context: nothing was reported
    """

    __slots__ = ()

    def __init__(self, model: BaseChatModel, run_manager: CallbackManagerForLLMRun | None, *,
                 tool_runs: bool, events: bool) -> None:
        parent = run_manager if run_manager is not None else _parent_manager(model)
        super().__init__(parent, tool_runs=tool_runs, events=events)

    def on_event(self, event: Event) -> None:
        """Open a tool run on a start, end it when the run is final."""
        parent = self._parent
        if self._reasoning is not None:
            self._reasoning.on_event(event)
        if parent is None:
            return
        if isinstance(event, ToolStart | ToolRun):
            if self._tool_runs:
                self._web(parent, event)
            return
        if not isinstance(event, CodeStart | CodeRun):
            return
        data = {"index": event.index, "code": event.code}
        if isinstance(event, CodeStart):
            if self._tool_runs:
                self._open[event.index] = self._start(parent, event)
                self._started[event.index] = event.code
            if self._events:
                _events_manager(parent).on_custom_event(CODE_START_EVENT, data,
                                                        run_id=parent.run_id)
            return
        if self._tool_runs:
            tool = self._open.pop(event.index, None) or self._start(parent, event)
            output = _run_output(self._started.pop(event.index, event.code), event)
            if event.ok:
                tool.on_tool_end(output)
            else:
                tool.on_tool_error(_failure(event.status, output))
        if self._events:
            _events_manager(parent).on_custom_event(CODE_EVENT, _final_data(event),
                                                    run_id=parent.run_id)

    @staticmethod
    def _start(parent: CallbackManagerForLLMRun, event: CodeStart | CodeRun
               ) -> CallbackManagerForToolRun:
        return _child(parent, event.index).on_tool_start(
            _SERIALIZED, event.code, name=TOOL_NAME, inputs={"code": event.code})

    def _web(self, parent: CallbackManagerForLLMRun, event: ToolStart | ToolRun) -> None:
        key = event.id
        tool = self._open.pop(key, None)
        if tool is None:
            tool = _child(parent, None).on_tool_start(
                {"name": event.name, "description": _WEB[event.name]}, json.dumps(event.args),
                name=event.name, inputs=dict(event.args))
        if isinstance(event, ToolStart):
            self._open[key] = tool
        elif event.ok:
            tool.on_tool_end(_tool_output(event))
        else:
            tool.on_tool_error(_failure(event.status, event.output))

    def close(self, error: BaseException | None = None) -> None:
        """End tool runs still open (the stream failed or was closed early)."""
        for tool in self._open.values():
            with contextlib.suppress(Exception):
                tool.on_tool_error(error or _closed_early())
        self._open.clear()

    def watch(self, events: Iterator[Event]) -> Iterator[Event]:
        """Pass events through, reporting each run."""
        try:
            for event in events:
                self.on_event(event)
                yield event
        except Exception as exc:
            self.close(exc)
            raise
        finally:
            self.close()


class AsyncCodeRunTracer(_TracerBase):
    """Async :class:`CodeRunTracer`.

    Example:
        >>> import asyncio
        >>> from langchain_qwen_ci import ChatQwenCodeInterpreter
        >>> from qwen_ci.events import CodeStart
        >>> tracer = AsyncCodeRunTracer(ChatQwenCodeInterpreter(api_key="k"), None,
        ...                             tool_runs=True, events=True)
        >>> asyncio.run(tracer.on_event(CodeStart(0, "1+1")))
    """

    __slots__ = ()

    def __init__(self, model: BaseChatModel, run_manager: AsyncCallbackManagerForLLMRun | None,
                 *, tool_runs: bool, events: bool) -> None:
        parent = run_manager if run_manager is not None else _aparent_manager(model)
        super().__init__(parent, tool_runs=tool_runs, events=events)

    async def on_event(self, event: Event) -> None:
        """Open a tool run on a start, end it when the run is final."""
        parent = self._parent
        if self._reasoning is not None:
            self._reasoning.on_event(event)
        if parent is None:
            return
        if isinstance(event, ToolStart | ToolRun):
            if self._tool_runs:
                await self._web(parent, event)
            return
        if not isinstance(event, CodeStart | CodeRun):
            return
        data = {"index": event.index, "code": event.code}
        if isinstance(event, CodeStart):
            if self._tool_runs:
                self._open[event.index] = await self._start(parent, event)
                self._started[event.index] = event.code
            if self._events:
                await _aevents_manager(parent).on_custom_event(CODE_START_EVENT, data,
                                                               run_id=parent.run_id)
            return
        if self._tool_runs:
            tool = self._open.pop(event.index, None) or await self._start(parent, event)
            output = _run_output(self._started.pop(event.index, event.code), event)
            if event.ok:
                await tool.on_tool_end(output)
            else:
                await tool.on_tool_error(_failure(event.status, output))
        if self._events:
            await _aevents_manager(parent).on_custom_event(CODE_EVENT, _final_data(event),
                                                           run_id=parent.run_id)

    @staticmethod
    async def _start(parent: AsyncCallbackManagerForLLMRun, event: CodeStart | CodeRun
                     ) -> AsyncCallbackManagerForToolRun:
        return await _achild(parent, event.index).on_tool_start(
            _SERIALIZED, event.code, name=TOOL_NAME, inputs={"code": event.code})

    async def _web(self, parent: AsyncCallbackManagerForLLMRun, event: ToolStart | ToolRun
                   ) -> None:
        key = event.id
        tool = self._open.pop(key, None)
        if tool is None:
            tool = await _achild(parent, None).on_tool_start(
                {"name": event.name, "description": _WEB[event.name]}, json.dumps(event.args),
                name=event.name, inputs=dict(event.args))
        if isinstance(event, ToolStart):
            self._open[key] = tool
        elif event.ok:
            await tool.on_tool_end(_tool_output(event))
        else:
            await tool.on_tool_error(_failure(event.status, event.output))

    async def close(self, error: BaseException | None = None) -> None:
        """End tool runs still open (the stream failed or was closed early)."""
        for tool in self._open.values():
            with contextlib.suppress(Exception):
                await tool.on_tool_error(error or _closed_early())
        self._open.clear()

    async def watch(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """Pass events through, reporting each run."""
        try:
            async for event in events:
                await self.on_event(event)
                yield event
        except Exception as exc:
            await self.close(exc)
            raise
        finally:
            await self.close()
