"""Code runs in LlamaIndex traces: an opt-in instrumentation event and OTel span events.

A :class:`CodeReporter` is made when a call starts (inside the public endpoint, before a
streaming generator is returned), so it holds the call's LlamaIndex span id and the
OpenTelemetry span current at that moment (the LLM span under OpenInference), and reports
each run to them the moment its code is final.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index_instrumentation import get_dispatcher

from qwen_ci.events import CodeRun, Event

SPAN_EVENT = "code_interpreter"
"""Name of the OpenTelemetry span event added per executed run."""

dispatcher = get_dispatcher(__name__)


class CodeInterpreterRunEvent(BaseEvent):
    """One executed code block, dispatched when its code is final (opt-in).

    Example:
        >>> from llamaindex_qwen_ci.tracing import CodeInterpreterRunEvent
        >>> CodeInterpreterRunEvent(index=0, code="123**21", span_id=None).code
        '123**21'
    """

    index: int
    code: str

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


class CodeReporter:
    """Reports the runs of one call to its spans.

    Example:
        >>> from qwen_ci.events import CodeRun, TextDelta
        >>> reporter = CodeReporter(dispatch=False)
        >>> list(reporter.watch(iter([CodeRun(0, "1+1"), TextDelta("2")])))
        [CodeRun(index=0, code='1+1'), TextDelta(text='2')]
    """

    __slots__ = ("_dispatch", "_otel_span", "_span_id")

    def __init__(self, *, dispatch: bool) -> None:
        self._dispatch = dispatch
        self._span_id = active_span_id.get()
        self._otel_span = _current_otel_span()

    def _span_event(self, run: CodeRun) -> None:
        if self._otel_span is not None and self._otel_span.is_recording():
            self._otel_span.add_event(
                SPAN_EVENT,
                {"code_interpreter.index": run.index, "code_interpreter.code": run.code},
            )

    def _event(self, run: CodeRun) -> CodeInterpreterRunEvent:
        return CodeInterpreterRunEvent(index=run.index, code=run.code, span_id=self._span_id)

    def watch(self, events: Iterator[Event]) -> Iterator[Event]:
        """Pass events through, reporting each run."""
        for event in events:
            if isinstance(event, CodeRun):
                self._span_event(event)
                if self._dispatch:
                    dispatcher.event(self._event(event))
            yield event

    async def awatch(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """Async :meth:`watch`."""
        async for event in events:
            if isinstance(event, CodeRun):
                self._span_event(event)
                if self._dispatch:
                    await dispatcher.aevent(self._event(event))
            yield event
