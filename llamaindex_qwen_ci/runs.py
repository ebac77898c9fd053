"""The executed code of every call, inside any query engine, chat engine or agent.

Engines rebuild their answer from text (a query engine's ``Response``, a chat engine's
``AgentChatResponse``), so the ``tool_info`` of the model's message does not reach the
caller. The LLM's own end event does: LlamaIndex dispatches ``LLMChatEndEvent`` /
``LLMCompletionEndEvent`` with the whole response (for a stream, once it was read to the
end). :class:`CodeRunCollector` is an instrumentation event handler that keeps the runs
of those responses; :func:`code_runs` attaches one to the root dispatcher for a block.

Example:
    .. code-block:: python

        from llama_index.core import Document, SummaryIndex
        from llamaindex_qwen_ci import QwenCodeInterpreter, code_runs

        llm = QwenCodeInterpreter()
        engine = SummaryIndex.from_documents([Document(text="x = 2**10")]).as_query_engine(
            llm=llm)
        with code_runs() as runs:
            response = engine.query("What is x // 4? Compute it.")
        for run in runs:
            print(run.code, run.output)  # output: None unless the protocol returns it
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index_instrumentation import get_dispatcher
from pydantic import PrivateAttr

TOOL = "code_interpreter"


@dataclass(frozen=True, slots=True)
class CodeRunRecord:
    """One executed code block of one model call.

    ``output`` is what the run printed where the protocol returns it (``logs`` entries of
    ``outputs``), else ``None``; ``span_id`` is the LlamaIndex span of the model call.

    Example:
        >>> CodeRunRecord(code="123**21", output=None, request_id="r1", span_id=None).code
        '123**21'
    """

    code: str
    output: str | None
    request_id: str | None
    span_id: str | None


def _output(entry: Mapping[str, Any]) -> str | None:
    outputs = entry.get("outputs")
    if not isinstance(outputs, list):
        return None
    return "".join(str(item.get("logs", "")) for item in outputs
                   if isinstance(item, Mapping) and item.get("type") == "logs")


def records(tool_info: Any, request_id: str | None, span_id: str | None) -> list[CodeRunRecord]:
    """The runs of one response's ``tool_info`` list (other entries are skipped).

    Example:
        >>> info = [{"type": "code_interpreter", "code_interpreter": {"code": "1+1"}}]
        >>> [r.code for r in records(info, "r1", None)]
        ['1+1']
    """
    out: list[CodeRunRecord] = []
    for entry in tool_info if isinstance(tool_info, list) else []:
        inner = entry.get(TOOL) if isinstance(entry, Mapping) else None
        if entry.get("type") == TOOL and isinstance(inner, Mapping) and isinstance(
            inner.get("code"), str
        ):
            out.append(CodeRunRecord(inner["code"], _output(inner), request_id, span_id))
    return out


class CodeRuns(list[CodeRunRecord]):
    """The runs a :class:`CodeRunCollector` keeps: a list, filled as responses end."""


class CodeRunCollector(BaseEventHandler):
    """An instrumentation event handler keeping the code runs of every model call it sees.

    Add it to a dispatcher yourself (``get_dispatcher().add_event_handler(collector)``) to
    keep it for the process, or use :func:`code_runs` for a block. While attached it sees
    every call in the process (other threads too).

    Example:
        >>> from llama_index.core.instrumentation import get_dispatcher
        >>> collector = CodeRunCollector()
        >>> get_dispatcher().add_event_handler(collector)
        >>> collector.runs
        []
        >>> get_dispatcher().event_handlers.remove(collector)
    """

    _runs: CodeRuns = PrivateAttr(default_factory=CodeRuns)

    @classmethod
    def class_name(cls) -> str:
        return "CodeRunCollector"

    @property
    def runs(self) -> CodeRuns:
        """The runs seen so far, in the order their responses ended (the live list)."""
        return self._runs

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMChatEndEvent) and event.response is not None:
            response = event.response
            tool_info = response.message.additional_kwargs.get("tool_info")
            request_id = response.additional_kwargs.get("request_id")
        elif isinstance(event, LLMCompletionEndEvent):
            tool_info = event.response.additional_kwargs.get("tool_info")
            request_id = event.response.additional_kwargs.get("request_id")
        else:
            return
        self._runs.extend(records(tool_info, request_id, event.span_id))  # atomic


@contextlib.contextmanager
def code_runs() -> Iterator[CodeRuns]:
    """Collect the code runs of every model call made inside the block.

    The list fills as responses end (a stream: once read to its end); read it inside or
    after the block. It sees every call in the process meanwhile (other threads too).

    Example:
        >>> with code_runs() as runs:
        ...     pass  # engine.query(...), chat_engine.chat(...), agent.run(...)
        >>> list(runs)
        []
    """
    collector = CodeRunCollector()
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        yield collector.runs
    finally:
        with contextlib.suppress(ValueError):
            root.event_handlers.remove(collector)


__all__ = ["CodeRunCollector", "CodeRunRecord", "CodeRuns", "code_runs", "records"]
