"""Rounds of model output and code runs -> protocol-neutral frames with usage.

Token counts are the emulator's own estimate (a simple rule, not Qwen's tokenizer):
each CJK character, each number of up to six digits, each word (per six letters) and
each other symbol counts as one token. A model that reports its real usage
(:class:`~qwen_ci_server.emulator.model.TurnUsage`) replaces the estimate: the request's usage is
then the sum of the reported rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from qwen_ci_server.emulator.model import (
    Answer,
    Message,
    Model,
    Run,
    RunCode,
    SearchResults,
    Thinking,
    Turn,
    TurnUsage,
)
from qwen_ci_server.sandbox.limits import ExecutionResult

MAX_RUNS = 8
"""Code runs one request may make by default (the service documents no limit; the
emulator's own choice, also ``qwen-ci serve``'s ``--max-rounds``)."""

_CJK = "\u3400-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]{{1,2}}|\d{{1,6}}|[^\W\d_{_CJK}]+|\s+|.", re.DOTALL)
_CI_PROMPT_TOKENS = 262  # the service's hidden instructions for the code interpreter
_PROMPT_TOKENS = 8
_MESSAGE_TOKENS = 4
_RESULT_WRAPPER_TOKENS = 16
_TOOL_CALL_TOKENS = 12


def estimate_tokens(text: str) -> int:
    """The emulator's token estimate for ``text``."""
    count = 0
    for token in _TOKEN.findall(text):
        if token.isspace():
            continue
        if token[0].isalpha() and not re.match(rf"[{_CJK}]", token):
            count += math.ceil(len(token) / 6)
        else:
            count += 1
    return count


def split_text(text: str, per_piece: int = 2) -> list[str]:
    """Cut ``text`` into small streaming pieces (``"".join`` gives ``text`` back)."""
    pieces: list[str] = []
    current = ""
    words = 0
    for token in _TOKEN.findall(text):
        current += token
        if not token.isspace():
            words += 1
        if words >= per_piece and not token.isspace():
            pieces.append(current)
            current, words = "", 0
    if current:
        if pieces and current.isspace():
            pieces[-1] += current
        else:
            pieces.append(current)
    return pieces


def prompt_tokens(messages: Sequence[Message], code_interpreter: bool) -> int:
    """Estimated input tokens of the first round."""
    base = _CI_PROMPT_TOKENS if code_interpreter else _PROMPT_TOKENS
    return base + sum(_MESSAGE_TOKENS + estimate_tokens(m.text) for m in messages)


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol-neutral frame: deltas, the ``tool_info`` snapshot, running usage.

    Example:
        >>> Frame(content="hi", input_tokens=10, output_tokens=1).total_tokens
        11
    """

    reasoning: str = ""
    content: str = ""
    codes: tuple[str, ...] | None = None
    finish: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    search: tuple[dict[str, object], ...] | None = None
    """Search results, on the one frame that reports them; ``()`` on the frames after."""
    results: tuple[ExecutionResult, ...] = ()
    """What each finished run produced, in order (the Responses protocol returns it)."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request asks for, independent of the protocol.

    Example:
        >>> Generation("qwen3-max", (Message("user", "hi"),), stop=("you",)).stop
        ('you',)
    """

    model: str
    messages: tuple[Message, ...]
    code_interpreter: bool = True
    thinking: bool = True
    max_tokens: int | None = None
    thinking_budget: int | None = None
    stop: tuple[str, ...] = ()
    options: dict[str, object] = field(default_factory=dict)


class SandboxSessionLike(Protocol):
    """The per-request interpreter the engine runs code in.

    Example:
        >>> from qwen_ci_server.sandbox import KernelPool
        >>> isinstance(KernelPool(size=0).session().close, object)
        True
    """

    async def run(self, code: str) -> ExecutionResult:
        """Execute ``code``."""
        ...

    def close(self) -> None:
        """Release the interpreter (synchronous)."""
        ...


class SandboxLike(Protocol):
    """Where sessions come from (a :class:`~qwen_ci_server.sandbox.KernelPool`).

    Example:
        >>> from qwen_ci_server.sandbox import KernelPool
        >>> sandbox: SandboxLike = KernelPool(size=0)
    """

    def session(self) -> SandboxSessionLike:
        """A session for one request."""
        ...


class _State:
    """Running counters of one request."""

    def __init__(self, input_tokens: int) -> None:
        self.input = input_tokens
        self.output = 0
        self.reasoning = 0
        self.round_output = 0
        self.codes: list[str] | None = None
        self.answer = ""
        self.pending = ""  # answer text held back: it may begin a stop sequence
        self.reported = False  # the model reports real usage: sums replace estimates
        self.round_reported = False
        self.round_start = (0, 0)  # output and reasoning tokens when the round began
        self.searched = False  # search results were reported: later frames say so
        self.results: list[ExecutionResult] = []

    def begin_round(self) -> None:
        self.round_start = (self.output, self.reasoning)
        self.round_reported = False

    def report(self, usage: TurnUsage) -> None:
        """The model's real usage of this round replaces the round's estimate."""
        if not self.reported:
            self.reported, self.input = True, 0
        self.input += usage.input_tokens
        self.output = self.round_start[0] + usage.output_tokens
        self.reasoning = self.round_start[1] + usage.reasoning_tokens
        self.round_reported = True

    def frame(self, **deltas: str) -> Frame:
        return Frame(
            reasoning=deltas.get("reasoning", ""),
            content=deltas.get("content", ""),
            codes=tuple(self.codes) if self.codes is not None else None,
            input_tokens=self.input,
            output_tokens=self.output,
            reasoning_tokens=self.reasoning,
            search=() if self.searched else None,
            results=tuple(self.results),
        )

    def spend(self, tokens: int, *, reasoning: bool = False) -> None:
        self.output += tokens
        self.round_output += tokens
        if reasoning:
            self.reasoning += tokens

    def ran(self, result: ExecutionResult) -> None:
        """A run ended: without real usage, the next round's prompt grows by this
        round's output and the run's result, as the service's does."""
        self.results.append(result)
        if not self.reported:
            self.input += (self.round_output + estimate_tokens(result.feedback())
                           + _RESULT_WRAPPER_TOKENS)
        self.round_output = 0


@dataclass(slots=True)
class _Round:
    """How one model round ended: code to run, or a stop word in the answer."""

    code: str | None = None
    memo: object = None
    stop: str | None = None


class Engine:
    """Drives a :class:`~qwen_ci_server.emulator.model.Model` and the sandbox for one request.

    Example:
        >>> import asyncio
        >>> from qwen_ci_server.emulator import Engine, ScriptedModel
        >>> from qwen_ci_server.emulator.engine import Generation
        >>> from qwen_ci_server.emulator.model import Message
        >>> async def main() -> str:
        ...     engine = Engine(ScriptedModel(), sandbox=None)
        ...     frames = [f async for f in engine.frames(
        ...         Generation("qwen3-max", (Message("user", "Hello"),)))]
        ...     return frames[-1].finish or ""
        >>> asyncio.run(main())
        'stop'
    """

    def __init__(
        self,
        model: Model,
        sandbox: SandboxLike | None,
        *,
        frame_delay: float = 0.0,
        max_runs: int = MAX_RUNS,
    ) -> None:
        self.model = model
        self.sandbox = sandbox
        self.frame_delay = frame_delay
        self.max_runs = max_runs

    async def _pace(self) -> None:
        if self.frame_delay > 0:
            await asyncio.sleep(self.frame_delay)

    async def frames(self, gen: Generation) -> AsyncGenerator[Frame, None]:
        """The frames of ``gen``; code runs happen between frames (silently)."""
        state = _State(prompt_tokens(gen.messages, gen.code_interpreter))
        session: SandboxSessionLike | None = None
        runs: list[Run] = []
        finish = "stop"
        try:
            while True:
                turn = Turn(gen.model, gen.messages, tuple(runs), gen.code_interpreter,
                            gen.thinking, dict(gen.options))
                outcome = _Round()
                state.begin_round()
                async with contextlib.aclosing(
                        self._model_round(state, gen, turn, outcome)) as round_frames:
                    async for frame in round_frames:
                        await self._pace()
                        yield frame
                if outcome.stop is not None or outcome.code is None or not gen.code_interpreter:
                    frames, reason = self._flush(state, gen, outcome)
                    for frame in frames:
                        await self._pace()
                        yield frame
                    finish = reason or finish
                    break
                if len(runs) >= self.max_runs:
                    break
                for frame in self._announce(state, outcome.code):
                    await self._pace()
                    yield frame
                if session is None and self.sandbox is not None:
                    session = self.sandbox.session()
                result = await self._run(session, outcome.code)
                runs.append(Run(outcome.code, result, outcome.memo))
                state.ran(result)
            final = replace(state.frame(), finish=finish)
            await self._pace()
            yield final
        finally:
            if session is not None:
                session.close()

    async def _model_round(self, state: _State, gen: Generation, turn: Turn,
                           outcome: _Round) -> AsyncGenerator[Frame, None]:
        """The frames of one model round, until it asks to run code (``outcome.code``),
        stops on a stop word (``outcome.stop``) or ends."""
        pieces = self.model.turn(turn)
        try:
            async for piece in pieces:
                if isinstance(piece, RunCode):
                    outcome.code, outcome.memo = piece.code, piece.memo
                    return
                if isinstance(piece, TurnUsage):
                    state.report(piece)
                elif isinstance(piece, SearchResults):
                    state.searched = True
                    yield replace(state.frame(), search=piece.results)
                elif isinstance(piece, Thinking):
                    for frame in self._thinking(state, gen, piece.text):
                        yield frame
                elif isinstance(piece, Answer):
                    frames, reason = self._answer(state, gen, piece.text)
                    for frame in frames:
                        yield frame
                    if reason is not None:
                        outcome.stop = reason
                        return
        finally:
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:  # a model holding a connection frees it
                await aclose()

    def _flush(self, state: _State, gen: Generation,
               outcome: _Round) -> tuple[list[Frame], str | None]:
        """At the end: the answer text still held back (a possible stop word's start),
        and the finish reason."""
        if outcome.stop is not None:
            return [], outcome.stop
        if not state.pending:
            return [], None
        frames, reason = self._emit(state, gen, state.pending)
        state.pending = ""
        return frames, reason

    @staticmethod
    async def _run(session: SandboxSessionLike | None, code: str) -> ExecutionResult:
        if session is None:
            return ExecutionResult("crashed", error="The emulator has no sandbox.", reset=True)
        try:
            return await session.run(code)
        except Exception as exc:  # a kernel that cannot start is a result, not a 500
            return ExecutionResult(
                "crashed", error=f"The sandbox could not run the code: {exc}", reset=True
            )

    def _thinking(self, state: _State, gen: Generation, text: str) -> list[Frame]:
        if not gen.thinking:
            return []
        frames: list[Frame] = []
        for piece in split_text(text):
            tokens = estimate_tokens(piece)
            if gen.thinking_budget is not None and state.reasoning + tokens > gen.thinking_budget:
                break
            state.spend(tokens, reasoning=True)
            frames.append(state.frame(reasoning=piece))
        return frames

    def _answer(
        self, state: _State, gen: Generation, text: str
    ) -> tuple[list[Frame], str | None]:
        """Frames of answer text; honours stop sequences (never sent) and max_tokens."""
        frames: list[Frame] = []
        for piece in split_text(text):
            text = state.pending + piece
            state.pending = ""
            found = [i for i in (text.find(s) for s in gen.stop) if i >= 0]
            if found:
                emitted, reason = self._emit(state, gen, text[: min(found)])
                return frames + emitted, reason or "stop"
            keep = _stop_prefix(text, gen.stop)
            emitted, reason = self._emit(state, gen, text[: len(text) - keep])
            frames += emitted
            if reason is not None:
                return frames, reason
            state.pending = text[len(text) - keep :]
        return frames, None

    @staticmethod
    def _emit(state: _State, gen: Generation, text: str) -> tuple[list[Frame], str | None]:
        """One content frame for ``text`` unless it would pass ``max_tokens``."""
        if not text:
            return [], None
        tokens = estimate_tokens(text)
        if gen.max_tokens is not None and estimate_tokens(state.answer) + tokens > gen.max_tokens:
            return [], "length"
        state.spend(tokens)
        state.answer += text
        return [state.frame(content=text)], None

    @staticmethod
    def _announce(state: _State, code: str) -> list[Frame]:
        """Frames of the model writing the tool call, ending with the run in tool_info.

        As recorded: a few frames with no text while the code's tokens are generated, an
        empty frame with unchanged usage, then the run appears in ``tool_info`` (with
        ``plugins.code_interpreter.count``, usage still unchanged). A run after the first
        appears with empty code first, then filled in. :meth:`frames` sends these before
        it executes the code, so the silence on the wire comes after the code is announced
        (clients see the run start, then the pause, then the next round).
        """
        frames: list[Frame] = []
        if state.codes is not None:
            state.codes.append("")
            frames.append(state.frame())
        tokens = 0 if state.round_reported else estimate_tokens(code) + _TOOL_CALL_TOKENS
        steps = max(2, min(5, tokens // 4))
        for index in range(steps):
            state.spend(tokens // steps + (1 if index < tokens % steps else 0))
            frames.append(state.frame())
        frames.append(state.frame())  # the tool call is complete: usage stays
        if state.codes is None:
            state.codes = [code]
        else:
            state.codes[-1] = code
        frames.append(state.frame())
        return frames


def _stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
