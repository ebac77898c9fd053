"""Code runs in LlamaIndex traces: a TOOL span per run under the call's LLM span.

A :class:`CodeReporter` is made when a call starts (inside the public endpoint, before a
streaming generator is returned), so it holds the call's LlamaIndex span id and the
OpenTelemetry span current at that moment (the LLM span under OpenInference). Then, when
that span is recording:

- each run becomes an OpenInference TOOL span (``code_interpreter``, the code as
  ``input.value``, ``text/plain``), child of the LLM span, from the run's start
  (:class:`~qwen_ci.events.CodeStart`) to when it is final (its code wins), with the
  execution log as ``output.value`` where the protocol returns it (Responses) and a note
  that it is not returned elsewhere; a run reported as failed ends with an ERROR status;
- each ``web_search`` / ``web_extractor`` call becomes a TOOL span of that name (input:
  the query, or the URLs and goal as JSON; output: the source URLs, or the extracted text);
- at the end of the response the LLM span gets the thinking as reasoning content of the
  output message, the reasoning token count, and the run count and request id in its
  ``metadata``.

Spans are made with the tracer OpenInference's LlamaIndex instrumentation uses (so its
tracer provider and ``TraceConfig`` masking apply), else with the global tracer provider.
Without OpenTelemetry, or without a recording span, nothing is recorded. Opt-in
instrumentation events (:class:`CodeInterpreterStartEvent`,
:class:`CodeInterpreterRunEvent`) go to every LlamaIndex event handler.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index_instrumentation import get_dispatcher

from qwen_ci.events import (
    NO_OUTPUT,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    ToolRun,
    ToolStart,
    Usage,
)

INDEX_KEY = "code_interpreter_index"
COUNT_KEY = "code_interpreter_count"

# OpenInference semantic conventions (openinference-semantic-conventions 0.1.x)
_KIND = "openinference.span.kind"
_MESSAGE = "llm.output_messages.0.message"
_REASONING_TOKENS = "llm.token_count.completion_details.reasoning"
_METADATA = "metadata"

dispatcher = get_dispatcher(__name__)


class CodeInterpreterStartEvent(BaseEvent):
    """A run started: its code was announced and the service executes it now (opt-in).

    Example:
        >>> from llamaindex_qwen_ci.tracing import CodeInterpreterStartEvent
        >>> CodeInterpreterStartEvent(index=0, code="123**21", span_id=None).index
        0
    """

    index: int
    code: str

    @classmethod
    def class_name(cls) -> str:
        return "CodeInterpreterStartEvent"


class CodeInterpreterRunEvent(BaseEvent):
    """One executed code block, dispatched when it is final (opt-in); ``output`` is its
    execution log where the protocol returns it (Responses), else None.

    Example:
        >>> from llamaindex_qwen_ci.tracing import CodeInterpreterRunEvent
        >>> CodeInterpreterRunEvent(index=0, code="123**21", span_id=None).code
        '123**21'
    """

    index: int
    code: str
    output: str | None = None

    @classmethod
    def class_name(cls) -> str:
        return "CodeInterpreterRunEvent"


def _current_otel_span() -> Any:
    """The recording OpenTelemetry span of this context, if OpenTelemetry is installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    # Keep the span itself, not a context-local proxy: instrumentations may re-point such
    # a proxy when the call returns (OpenInference does for LLM calls returning a stream,
    # whose span stays open until the stream ends). ``__wrapped__`` is the standard way
    # to reach a proxy's target.
    return getattr(span, "__wrapped__", span)


def _tracer() -> Any:
    """The tracer of OpenInference's LlamaIndex instrumentation when it is active (its
    provider and TraceConfig), else one from the global tracer provider."""
    module = sys.modules.get("openinference.instrumentation.llama_index")
    if module is not None:
        instrumentor = module.LlamaIndexInstrumentor()
        # not public: the instrumentor keeps the tracer it was given only on its handler
        tracer = getattr(getattr(instrumentor, "_span_handler", None), "_otel_tracer", None)
        if tracer is not None and instrumentor.is_instrumented_by_opentelemetry:
            return tracer
    from opentelemetry import trace

    return trace.get_tracer(__name__)


class _Spans:
    """The OpenTelemetry side of one call: TOOL spans and the LLM span's attributes."""

    __slots__ = ("_llm", "_open", "_reasoning", "_runs", "_tracer", "_usage")

    def __init__(self, llm_span: Any) -> None:
        self._llm = llm_span
        self._tracer = _tracer()
        self._open: dict[int | str, Any] = {}
        self._runs = 0
        self._reasoning: list[str] = []
        self._usage: Usage | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, CodeStart):
            self._open[event.index] = self._start(event)
        elif isinstance(event, CodeRun):
            span = self._open.pop(event.index, None) or self._start(event)
            span.set_attribute("input.value", event.code)  # the final code wins
            output = event.output
            span.set_attribute("output.value", NO_OUTPUT if output is None else output)
            span.set_attribute("output.mime_type", "text/plain")
            if event.ok:
                self._end(span, ok=True)
            else:
                self._end(span, ok=False, error=RuntimeError(
                    f"The service reported the run as {event.status}"))
            self._runs += 1
        elif isinstance(event, ToolStart):
            self._open[event.id] = self._start_web(event)
        elif isinstance(event, ToolRun):
            span = self._open.pop(event.id, None) or self._start_web(event)
            out = event.output
            if isinstance(out, dict) and set(out) == {"sources"}:
                out = "\n".join(out["sources"])
            span.set_attribute("output.value",
                               out if isinstance(out, str) else json.dumps(out))
            if event.ok:
                self._end(span, ok=True)
            else:
                self._end(span, ok=False, error=RuntimeError(
                    f"The service reported the call as {event.status}"))
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            self._finish(event)

    def _start(self, event: CodeStart | CodeRun) -> Any:
        from opentelemetry import trace

        return self._tracer.start_span(
            TOOL_NAME,
            context=trace.set_span_in_context(self._llm),
            attributes={
                _KIND: "TOOL",
                "tool.name": TOOL_NAME,
                "tool.description": TOOL_DESCRIPTION,
                "input.value": event.code,
                "input.mime_type": "text/plain",
                _METADATA: json.dumps({INDEX_KEY: event.index}),
            },
        )

    def _start_web(self, event: ToolStart | ToolRun) -> Any:
        from opentelemetry import trace

        return self._tracer.start_span(
            event.name,
            context=trace.set_span_in_context(self._llm),
            attributes={
                _KIND: "TOOL",
                "tool.name": event.name,
                "input.value": json.dumps(event.args, ensure_ascii=False),
                "input.mime_type": "application/json",
            },
        )

    @staticmethod
    def _end(span: Any, *, ok: bool, error: BaseException | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if ok:
            span.set_status(Status(StatusCode.OK))
        else:
            span.set_status(Status(StatusCode.ERROR, str(error or "response ended early")))
            if error is not None:
                span.record_exception(error)
        span.end()

    def _finish(self, finish: Finish) -> None:
        llm = self._llm
        if not llm.is_recording():
            return
        if self._reasoning:
            llm.set_attribute(f"{_MESSAGE}.role", "assistant")
            llm.set_attribute(f"{_MESSAGE}.contents.0.message_content.type", "reasoning")
            llm.set_attribute(f"{_MESSAGE}.contents.0.message_content.text",
                              "".join(self._reasoning))
        usage = self._usage
        if usage is not None:
            llm.set_attribute(_REASONING_TOKENS, usage.reasoning_tokens)
        metadata: dict[str, Any] = {}
        existing = (getattr(llm, "attributes", None) or {}).get(_METADATA)
        if isinstance(existing, str):
            try:
                loaded = json.loads(existing)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                metadata.update(loaded)
        runs = usage.plugins.get("code_interpreter", {}).get("count") if usage else None
        metadata[COUNT_KEY] = runs if isinstance(runs, int) else self._runs
        metadata["request_id"] = finish.request_id
        llm.set_attribute(_METADATA, json.dumps(metadata))

    def close(self, error: BaseException | None) -> None:
        """End TOOL spans still open (the response failed or was closed early)."""
        for span in self._open.values():
            self._end(span, ok=False, error=error)
        self._open.clear()


class CodeReporter:
    """Reports the runs of one call to its spans.

    Example:
        >>> from qwen_ci.events import CodeRun, TextDelta
        >>> reporter = CodeReporter(dispatch=False)
        >>> [type(e).__name__ for e in reporter.watch(iter([CodeRun(0, "1+1"), TextDelta("2")]))]
        ['CodeRun', 'TextDelta']
    """

    __slots__ = ("_dispatch", "_span_id", "_spans")

    def __init__(self, *, dispatch: bool) -> None:
        self._dispatch = dispatch
        self._span_id = active_span_id.get()
        llm_span = _current_otel_span()
        self._spans = _Spans(llm_span) if llm_span is not None else None

    def _event(self, event: CodeStart | CodeRun) -> BaseEvent:
        if isinstance(event, CodeStart):
            return CodeInterpreterStartEvent(index=event.index, code=event.code,
                                             span_id=self._span_id)
        return CodeInterpreterRunEvent(index=event.index, code=event.code, output=event.output,
                                       span_id=self._span_id)

    def watch(self, events: Iterator[Event]) -> Iterator[Event]:
        """Pass events through, reporting each run."""
        spans = self._spans
        try:
            for event in events:
                if spans is not None:
                    spans.on_event(event)
                if self._dispatch and isinstance(event, CodeStart | CodeRun):
                    dispatcher.event(self._event(event))
                yield event
        except Exception as exc:
            if spans is not None:
                spans.close(exc)
            raise
        finally:
            if spans is not None:
                spans.close(None)

    async def awatch(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """Async :meth:`watch`."""
        spans = self._spans
        try:
            async for event in events:
                if spans is not None:
                    spans.on_event(event)
                if self._dispatch and isinstance(event, CodeStart | CodeRun):
                    await dispatcher.aevent(self._event(event))
                yield event
        except Exception as exc:
            if spans is not None:
                spans.close(exc)
            raise
        finally:
            if spans is not None:
                spans.close(None)
