"""The model interface of the emulator: one small protocol.

The emulator calls :meth:`Model.turn` once per round. A turn streams thinking and
answer text and ends either with one :class:`RunCode` (the emulator executes it in the
sandbox, appends the result to :attr:`Turn.runs` and starts the next turn) or without
one (the answer is complete). The built-in scripted model, the ``--script`` scenarios
and a real model behind an OpenAI-compatible endpoint (self-hosted mode) all implement
this protocol. A model that knows its real token counts may also yield
:class:`TurnUsage` before the end of a turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from qwen_ci_server.sandbox.limits import ExecutionResult

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation, as text (images appear as ``[image]``).

    Example:
        >>> Message("user", "2**10?").text
        '2**10?'
    """

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Run:
    """A code run of the current request and its result.

    Example:
        >>> from qwen_ci_server.sandbox import ExecutionResult
        >>> Run("2**10", ExecutionResult("ok", result="1024")).result.output
        '1024'
    """

    code: str
    result: ExecutionResult
    memo: object = None
    """What the model attached to the :class:`RunCode` of this run (opaque here)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """Everything the model sees at the start of a round.

    Example:
        >>> Turn("qwen3-max", (Message("system", "Be brief."), Message("user", "hi"))).prompt
        'hi'
    """

    model: str
    messages: tuple[Message, ...]
    runs: tuple[Run, ...] = ()
    code_interpreter: bool = True
    thinking: bool = True
    options: dict[str, object] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """Text of the last user message."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""


@dataclass(frozen=True, slots=True)
class Thinking:
    """Thinking text (streamed as ``reasoning_content``).

    Example:
        >>> Thinking("Let me compute.").text
        'Let me compute.'
    """

    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer text (streamed as ``content``).

    Example:
        >>> Answer("1024").text
        '1024'
    """

    text: str


@dataclass(frozen=True, slots=True)
class RunCode:
    """Run this code; ends the turn.

    Example:
        >>> RunCode("2**10").code
        '2**10'
    """

    code: str
    memo: object = None
    """Opaque data handed back in :attr:`Run.memo` on later turns (the self-hosted
    driver keeps the upstream's assistant message there)."""


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """The real token usage of the current round, for models that know it.

    Replaces the emulator's estimate for the round; once a model reports usage, the
    request's usage is the sum of the reported rounds.

    Example:
        >>> TurnUsage(input_tokens=120, output_tokens=30, reasoning_tokens=12).output_tokens
        30
    """

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SearchResults:
    """Web search results the model used (``output.search_info`` on the native wire).

    Each result has the recorded keys ``icon``, ``site_name``, ``index``, ``title``, ``url``.

    Example:
        >>> SearchResults(({"index": 1, "title": "t", "url": "u"},)).results[0]["index"]
        1
    """

    results: tuple[dict[str, object], ...]


Piece = Thinking | Answer | RunCode | TurnUsage | SearchResults


@runtime_checkable
class Model(Protocol):
    """What the emulator needs from a model.

    Example:
        >>> from collections.abc import AsyncIterator
        >>> from qwen_ci_server.emulator.model import Answer, Model, Piece, Turn
        >>> class Echo:
        ...     name = "echo"
        ...     async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        ...         yield Answer(turn.prompt)
        >>> isinstance(Echo(), Model)
        True
    """

    name: str

    def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        """Stream the pieces of one round (at most one :class:`RunCode`, last)."""
        ...
