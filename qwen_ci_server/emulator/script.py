"""``--script FILE``: scenarios for deterministic tests (YAML or JSON).

::

    scenarios:
      - match: 'weather in (?P<city>\\w+)'     # regex searched in the last user message
        thinking: 'I will look up {city}.'     # before the first run
        code: 'print("sunny in {city}")'       # one run (or `runs:` for several)
        answer: 'It is {output}.'              # the final answer
      - match: 'double'
        runs:
          - code: 'x = 21'
          - thinking: 'x is set; now double it.'
            code: 'print(x * 2)'
        final_thinking: 'The result is {output}.'
        answer: 'Twice 21 is {output}.'
    fallback: builtin     # unmatched prompts: builtin (scripted model, default) or plain

Placeholders: ``{prompt}``, the regex's named groups, ``{output}`` (output of the
latest run), ``{output1}``, ``{output2}``... (output of run N), ``{error}`` (error of
the latest run, empty when it succeeded). Other ``{...}`` are left as they are, so
code with braces needs no escaping.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_ci_server.emulator.model import Answer, Model, Piece, Run, RunCode, Thinking, Turn
from qwen_ci_server.emulator.scripted import ScriptedModel

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SCENARIO_KEYS = frozenset({"match", "thinking", "code", "runs", "final_thinking", "answer"})
_RUN_KEYS = frozenset({"thinking", "code"})


class ScriptError(ValueError):
    """The scenario file is invalid (the message names the place).

    Example:
        >>> try:
        ...     parse_script([{"answer": "x"}])
        ... except ScriptError as exc:
        ...     print(exc)
        scenarios[0].match must be a non-empty regular expression.
    """


@dataclass(frozen=True, slots=True)
class ScriptedRun:
    """One run of a scenario: the thinking before it and its code template.

    Example:
        >>> ScriptedRun("print({output})", "Now print it.").code
        'print({output})'
    """

    code: str
    thinking: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A prompt pattern and what the model does for it.

    Example:
        >>> parse_script([{"match": "hi", "answer": "hello"}])[0][0].answer
        'hello'
    """

    pattern: re.Pattern[str]
    runs: tuple[ScriptedRun, ...]
    answer: str
    final_thinking: str = ""


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` for the known names only."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise ScriptError(f"{where} must be a string.")
    return str(value)


def _scenario(raw: Any, index: int) -> Scenario:
    where = f"scenarios[{index}]"
    if not isinstance(raw, Mapping):
        raise ScriptError(f"{where} must be a mapping.")
    unknown = sorted(set(raw) - _SCENARIO_KEYS)
    if unknown:
        raise ScriptError(f"{where} has unknown key(s) {unknown}; known: {sorted(_SCENARIO_KEYS)}.")
    if not isinstance(raw.get("match"), str) or not raw["match"]:
        raise ScriptError(f"{where}.match must be a non-empty regular expression.")
    try:
        pattern = re.compile(raw["match"], re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise ScriptError(f"{where}.match is not a valid regular expression: {exc}") from None
    if "answer" not in raw:
        raise ScriptError(f"{where} needs an 'answer'.")
    if "code" in raw and "runs" in raw:
        raise ScriptError(f"{where}: use either 'code' or 'runs', not both.")
    runs: list[ScriptedRun] = []
    if "code" in raw:
        runs.append(ScriptedRun(_text(raw["code"], f"{where}.code")))
    elif "runs" in raw:
        if not isinstance(raw["runs"], list) or not raw["runs"]:
            raise ScriptError(f"{where}.runs must be a non-empty list.")
        for number, run in enumerate(raw["runs"]):
            run_where = f"{where}.runs[{number}]"
            if not isinstance(run, Mapping) or not isinstance(run.get("code"), str):
                raise ScriptError(f"{run_where} must be a mapping with a 'code' string.")
            extra = sorted(set(run) - _RUN_KEYS)
            if extra:
                raise ScriptError(f"{run_where} has unknown key(s) {extra}.")
            runs.append(ScriptedRun(run["code"], _text(run.get("thinking"), run_where)))
    thinking = _text(raw.get("thinking"), f"{where}.thinking")
    final_thinking = _text(raw.get("final_thinking"), f"{where}.final_thinking")
    if runs and thinking and not runs[0].thinking:
        runs[0] = ScriptedRun(runs[0].code, thinking)
    elif not runs and thinking:
        final_thinking = final_thinking or thinking
    return Scenario(pattern, tuple(runs), _text(raw["answer"], f"{where}.answer"), final_thinking)


def parse_script(data: Any) -> tuple[list[Scenario], str]:
    """Scenarios and the fallback (``builtin`` or ``plain``) from loaded YAML/JSON."""
    if isinstance(data, list):
        data = {"scenarios": data}
    if not isinstance(data, Mapping):
        raise ScriptError("The script must be a list of scenarios or a mapping with 'scenarios'.")
    unknown = sorted(set(data) - {"scenarios", "fallback"})
    if unknown:
        raise ScriptError(f"Unknown top-level key(s) {unknown}; use 'scenarios' and 'fallback'.")
    raw = data.get("scenarios")
    if not isinstance(raw, list):
        raise ScriptError("'scenarios' must be a list.")
    fallback = data.get("fallback", "builtin")
    if fallback not in ("builtin", "plain"):
        raise ScriptError("'fallback' must be 'builtin' or 'plain'.")
    return [_scenario(item, index) for index, item in enumerate(raw)], str(fallback)


def load_script(path: str | Path) -> ScenarioModel:
    """Read a YAML or JSON scenario file."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ScriptError(f"{path}: invalid JSON: {exc}") from None
    else:
        import yaml  # type: ignore[import-untyped]

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScriptError(f"{path}: invalid YAML: {exc}") from None
    try:
        scenarios, fallback = parse_script(data)
    except ScriptError as exc:
        raise ScriptError(f"{path}: {exc}") from None
    return ScenarioModel(scenarios, ScriptedModel() if fallback == "builtin" else None)


def _values(match: re.Match[str], prompt: str, runs: Sequence[Run]) -> dict[str, str]:
    values = {k: v for k, v in match.groupdict().items() if v is not None}
    values["prompt"] = prompt
    for number, run in enumerate(runs, start=1):
        values[f"output{number}"] = run.result.output
    if runs:
        values["output"] = runs[-1].result.output
        values["error"] = runs[-1].result.error
    else:
        values["output"] = values["error"] = ""
    return values


class ScenarioModel:
    """Answers from scenarios; unmatched prompts go to ``fallback`` (or a plain answer).

    Example:
        >>> from qwen_ci_server.emulator.script import ScenarioModel, parse_script
        >>> from qwen_ci_server.emulator.model import Message, Turn
        >>> scenarios, _ = parse_script([{"match": "ping", "code": "print('pong')",
        ...                               "answer": "{output}!"}])
        >>> ScenarioModel(scenarios).pieces(Turn("qwen3-max", (Message("user", "ping"),)))
        [RunCode(code="print('pong')", memo=None)]
    """

    name = "script"

    def __init__(self, scenarios: Sequence[Scenario], fallback: Model | None = None) -> None:
        self.scenarios = list(scenarios)
        self.fallback = fallback

    def _match(self, prompt: str) -> tuple[Scenario, re.Match[str]] | None:
        for scenario in self.scenarios:
            if match := scenario.pattern.search(prompt):
                return scenario, match
        return None

    def pieces(self, turn: Turn) -> list[Piece] | None:
        """The round's pieces, or None when no scenario matches."""
        found = self._match(turn.prompt)
        if found is None:
            return None
        scenario, match = found
        values = _values(match, turn.prompt, turn.runs)
        index = len(turn.runs)
        # the thinking of a later round continues the earlier one: a blank line between
        thought = any(run.thinking for run in scenario.runs[: min(index, len(scenario.runs))])
        sep = "\n\n" if thought else ""
        if turn.code_interpreter and index < len(scenario.runs):
            run = scenario.runs[index]
            pieces: list[Piece] = []
            if run.thinking:
                pieces.append(Thinking(sep + fill(run.thinking, values).lstrip("\n")))
            pieces.append(RunCode(fill(run.code, values)))
            return pieces
        pieces = []
        if scenario.final_thinking:
            text = fill(scenario.final_thinking, values)
            pieces.append(Thinking(sep + text.lstrip("\n")))
        pieces.append(Answer(fill(scenario.answer, values)))
        return pieces

    async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        """Stream the round: the matching scenario, else the fallback model."""
        pieces = self.pieces(turn)
        if pieces is None:
            if self.fallback is not None:
                async for piece in self.fallback.turn(turn):
                    yield piece
                return
            pieces = [Answer("No scenario of the emulator's script matches this prompt.")]
        for piece in pieces:
            yield piece
