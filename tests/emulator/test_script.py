"""--script scenario files (YAML and JSON) for users' deterministic tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_ci import Client, Options, Result, build, collect
from qwen_ci_server.emulator import Emulator, ScenarioModel, ScriptError, load_script
from qwen_ci_server.emulator.model import Answer, Message, RunCode, Turn
from qwen_ci_server.emulator.script import fill, parse_script
from qwen_ci_server.sandbox import Limits
from tests.emulator.conftest import running

SCRIPT = """\
scenarios:
  - match: 'weather in (?P<city>\\w+)'
    thinking: 'I will look up the weather in {city}.'
    code: 'print("sunny in {city}")'
    answer: 'It is {output} today.'
  - match: 'double'
    runs:
      - thinking: 'First set x.'
        code: 'x = {"a": 21}["a"]'
      - thinking: 'x is set; now double it.'
        code: 'print(x * 2)'
    final_thinking: 'The result is {output}.'
    answer: 'Twice 21 is {output2}.'
  - match: 'no code'
    thinking: 'Nothing to run.'
    answer: 'Plain: {prompt}'
  - match: 'broken'
    code: '1 / 0'
    answer: 'Error was: {error}'
"""


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    path = tmp_path_factory.mktemp("script") / "scenarios.yaml"
    path.write_text(SCRIPT)
    with running(script=path, pool_size=1, limits=Limits(timeout=5)) as emu:
        yield emu


def ask(emu: Emulator, prompt: str) -> Result:
    client = Client(api_key="sk-any", base_url=emu.base_url)
    request = build([{"role": "user", "content": prompt}], Options(), "dashscope")
    return collect(client.stream(request))


def test_scenario_with_named_groups(scripted: Emulator) -> None:
    result = ask(scripted, "What is the weather in Paris?")
    assert [run.code for run in result.code_runs] == ['print("sunny in Paris")']
    assert result.reasoning.startswith("I will look up the weather in Paris.")
    assert result.text == "It is sunny in Paris today."


def test_scenario_with_several_runs_keeps_state(scripted: Emulator) -> None:
    result = ask(scripted, "please double it")
    # braces of code that are not placeholders are left alone
    assert [run.code for run in result.code_runs] == ['x = {"a": 21}["a"]', "print(x * 2)"]
    assert result.text == "Twice 21 is 42."
    assert "x is set; now double it." in result.reasoning
    assert result.reasoning.endswith("The result is 42.")


def test_thinking_of_consecutive_runs_is_kept_apart(scripted: Emulator) -> None:
    """Each round's thinking starts on its own paragraph, not glued to the previous one."""
    result = ask(scripted, "please double it")
    assert result.reasoning == ("First set x.\n\nx is set; now double it.\n\n"
                                "The result is 42.")
    one = ask(scripted, "What is the weather in Rome?")  # one thinking: nothing to separate
    assert one.reasoning == "I will look up the weather in Rome."


def test_scenario_without_code_and_error_placeholder(scripted: Emulator) -> None:
    result = ask(scripted, "no code here")
    assert result.code_runs == [] and result.text == "Plain: no code here"
    broken = ask(scripted, "broken")
    assert broken.text == "Error was: ZeroDivisionError: division by zero"


def test_unmatched_prompt_falls_back_to_the_builtin_model(scripted: Emulator) -> None:
    result = ask(scripted, "What is 2**10?")
    assert "1024" in result.text and result.code_runs[0].code == "2**10"


def test_the_shipped_example_script_works() -> None:
    import qwen_ci_server.emulator

    path = Path(qwen_ci_server.emulator.__file__).parent / "example_script.yaml"
    model = load_script(path)
    assert len(model.scenarios) == 3 and model.fallback is not None
    turn = Turn("m", (Message("user", "weather in Oslo?"),))
    assert model.pieces(turn) is not None


def test_json_script_and_plain_fallback(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [{"match": "ping", "answer": "pong"}],
                                "fallback": "plain"}))
    model = load_script(path)
    assert isinstance(model, ScenarioModel) and model.fallback is None
    pieces = model.pieces(Turn("qwen3-max", (Message("user", "ping?"),)))
    assert pieces == [Answer("pong")]
    assert model.pieces(Turn("qwen3-max", (Message("user", "other"),))) is None


def test_first_turn_asks_for_the_first_run() -> None:
    scenarios, _ = parse_script([{"match": "x", "code": "print({n})", "answer": "a"}])
    pieces = ScenarioModel(scenarios).pieces(Turn("m", (Message("user", "x"),)))
    assert pieces == [RunCode("print({n})")]
    assert fill("{a} {b} {{c}}", {"a": "1"}) == "1 {b} {{c}}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("- answer: x", "match"),
        ("- match: '('\n  answer: x", "regular expression"),
        ("- match: x", "answer"),
        ("- match: x\n  answer: y\n  cod: z", "unknown key"),
        ("- match: x\n  answer: y\n  code: a\n  runs: [{code: b}]", "either"),
        ("scenarios: []\nfallback: nope", "fallback"),
        ("scenarios: []\nextra: 1", "top-level"),
        ("- match: x\n  answer: y\n  runs: [{thinking: t}]", "code"),
    ],
)
def test_invalid_scripts_say_what_is_wrong(tmp_path: Path, data: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(data)
    with pytest.raises(ScriptError, match=message) as info:
        load_script(path)
    assert str(path) in str(info.value)
