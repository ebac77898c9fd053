"""The normalized event stream: the core's whole vocabulary towards the adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TOOL_NAME = "code_interpreter"
"""The built-in tool's name: in ``tool_info`` entries, plugin counts and every trace."""
TOOL_DESCRIPTION = "Python executed by Qwen's hosted code interpreter"
"""How tracers describe the tool step of a run."""
NO_OUTPUT = "(executed by the service; its output is not returned to the client)"
"""A run's output where the protocol does not return it."""


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Thinking text, in order, including thinking after a code run."""

    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class CodeStart:
    """A run started: its code is known and the service executes it now.

    Native protocol: its code first appeared non-empty in a ``tool_info`` snapshot;
    Responses: its ``code_interpreter_call`` item arrived with its code.
    The same ``index``'s :class:`CodeRun` follows once the code is final, and its code wins.
    """

    index: int
    code: str


def logs_of(outputs: Sequence[Any] | None) -> str | None:
    """The execution log of a run's ``outputs`` (the ``logs`` entries, joined), or None.

    Example:
        >>> logs_of([{"type": "logs", "logs": "42\\n"}])
        '42\\n'
        >>> logs_of(None) is None
        True
    """
    if outputs is None:
        return None
    return "".join(
        entry["logs"]
        for entry in outputs
        if isinstance(entry, dict) and entry.get("type") == "logs"
        and isinstance(entry.get("logs"), str)
    )


@dataclass(frozen=True, slots=True)
class CodeRun:
    """One executed code block, emitted once when its code is final.

    ``index`` is the run's position among the response's runs (native: in ``tool_info``).
    Where the protocol returns them (Responses), ``outputs`` is the service's own list
    (``[{"type": "logs", "logs": ...}]``), ``status`` the item's status (``"completed"``)
    and ``container_id`` the sandbox that ran it; ``None`` elsewhere.

    Example:
        >>> run = CodeRun(0, "print(6*7)", outputs=[{"type": "logs", "logs": "42\\n"}])
        >>> run.output, run.ok
        ('42\\n', True)
        >>> run.to_tool_info()["code_interpreter"]["outputs"]
        [{'type': 'logs', 'logs': '42\\n'}]
    """

    index: int
    code: str
    outputs: list[dict[str, Any]] | None = None
    status: str | None = None
    container_id: str | None = None

    def __repr__(self) -> str:
        """The fields the protocol gave (a native run shows only its index and code)."""
        shown = [f"index={self.index!r}", f"code={self.code!r}"]
        for name in ("outputs", "status", "container_id"):
            value = getattr(self, name)
            if value is not None:
                shown.append(f"{name}={value!r}")
        return f"CodeRun({', '.join(shown)})"

    @property
    def output(self) -> str | None:
        """The execution log as text, or None where the protocol does not return it."""
        return logs_of(self.outputs)

    @property
    def ok(self) -> bool:
        """False when the service reports the call as failed or incomplete."""
        return self.status not in FAILED

    def to_tool_info(self) -> dict[str, Any]:
        """The run in DashScope's own ``tool_info`` entry shape (plus ``outputs``,
        ``container_id`` and ``status`` where the protocol returns them)."""
        inner: dict[str, Any] = {"code": self.code}
        if self.outputs is not None:
            inner["outputs"] = [dict(entry) for entry in self.outputs]
        if self.container_id is not None:
            inner["container_id"] = self.container_id
        if self.status is not None:
            inner["status"] = self.status
        return {"type": TOOL_NAME, TOOL_NAME: inner}


FAILED = frozenset({"failed", "incomplete", "cancelled"})
"""Item statuses that mean a built-in tool call did not complete."""
WEB_SEARCH = "web_search"
WEB_EXTRACTOR = "web_extractor"
BUILTIN_TOOLS: tuple[str, ...] = (WEB_SEARCH, WEB_EXTRACTOR)
"""Built-in tools besides the interpreter that a call may enable (Responses; native:
``web_search`` as ``enable_search``)."""


@dataclass(frozen=True, slots=True)
class ToolStart:
    """A built-in tool call other than the interpreter started (``web_search``,
    ``web_extractor``); ``args`` is what it was asked (``{"query"}``; ``{"urls", "goal"}``).

    Example:
        >>> ToolStart("msg_1", "web_search", {"query": "qwen"}).name
        'web_search'
    """

    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A built-in tool call other than the interpreter, emitted once when it is done.

    ``output`` is what it returned: for ``web_search`` ``{"sources": [url, ...]}``, for
    ``web_extractor`` the extractor's output; ``item`` is the service's whole item.

    Example:
        >>> run = ToolRun("msg_1", "web_search", {"query": "qwen"},
        ...               {"sources": ["https://qwen.ai"]}, "completed")
        >>> run.to_entry()["web_search"]["sources"]
        ['https://qwen.ai']
    """

    id: str
    name: str
    args: dict[str, Any]
    output: Any
    status: str | None = None
    item: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """False when the service reports the call as failed or incomplete."""
        return self.status not in FAILED

    def to_entry(self) -> dict[str, Any]:
        """The call as one ``builtin_tools`` entry: ``{"type": name, "id", "status",
        name: {**args, **output}}`` (a non-dict output goes under ``"output"``)."""
        inner: dict[str, Any] = dict(self.args)
        if isinstance(self.output, dict):
            inner.update(self.output)
        elif self.output is not None:
            inner["output"] = self.output
        return {"type": self.name, "id": self.id, "status": self.status, self.name: inner}


@dataclass(frozen=True, slots=True)
class SearchInfo:
    """``output.search_info`` of a web-search call, emitted once."""

    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Final token totals, emitted once.

    ``input_tokens`` is the prompt of the latest round (the service feeds code results
    back, so it grows after a run); ``plugins`` is e.g. ``{"code_interpreter": {"count": 1}}``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int | None = None
    plugins: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finish:
    """The stream ended normally; ``raw`` is the last wire frame as a dict."""

    reason: str
    request_id: str | None
    model: str
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)


Event = (ReasoningDelta | TextDelta | CodeStart | CodeRun | ToolStart | ToolRun | SearchInfo
         | Usage | Finish)
