"""The normalized event stream: the core's whole vocabulary towards the adapters."""

from __future__ import annotations

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
    """A run started: its code first appeared non-empty in a ``tool_info`` snapshot.

    The service executes the code now; ``code`` is what was known at that moment.
    The same ``index``'s :class:`CodeRun` follows once the code is final, and its code wins.
    """

    index: int
    code: str


@dataclass(frozen=True, slots=True)
class CodeRun:
    """One executed code block, emitted once when its code is final.

    ``index`` is the run's position in the service's ``tool_info`` list.
    """

    index: int
    code: str

    def to_tool_info(self) -> dict[str, Any]:
        """The run in DashScope's own ``tool_info`` entry shape."""
        return {"type": TOOL_NAME, TOOL_NAME: {"code": self.code}}


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


Event = ReasoningDelta | TextDelta | CodeStart | CodeRun | SearchInfo | Usage | Finish
