"""docs/emulator.md: every Python snippet runs as a user would paste it, and does what its
text claims (issue #24).

The page's first snippet talks to ``qwen-ci emulator`` at its default address
(``http://127.0.0.1:8765``); here that address is the test's emulator (on a free port, so
that parallel test runs do not collide): the only change made to a snippet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_ci.errors import IncompleteStreamError
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import running

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"
DEFAULT = "http://127.0.0.1:8765"
BIG = "77269364466549865653073473388030061522211723"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def run(index: int, namespace: dict[str, Any], base_url: str) -> None:
    code = snippets()[index].replace(DEFAULT, base_url)
    exec(compile(code, f"docs/emulator.md snippet {index + 1}", "exec"), namespace)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """An emulator started without a key, as ``qwen-ci emulator`` starts by default."""
    with running(pool_size=1) as emu:
        yield emu


def test_the_page_has_the_snippets_this_test_runs() -> None:
    found = snippets()
    assert len(found) == 5, "a snippet was added or removed: run it below"
    assert DEFAULT in found[0]


@pytest.mark.timeout(120)
def test_the_snippets_do_what_the_page_says(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {"__name__": "emulator_md"}
    # 1. the official openai SDK, Responses API, against the running emulator
    run(0, namespace, emulator.base_url)
    out = capsys.readouterr().out
    assert f"123**21 -> {BIG}" in out
    assert "{'code_interpreter': {'count': 1}}" in out
    # 2. an emulator started from Python, the Chinese question answered by a code run
    run(1, namespace, emulator.base_url)
    out = capsys.readouterr().out
    assert "'code': '123**21'" in out and BIG in out
    # 3. the pytest fixture: it yields the address of a working emulator
    run(2, namespace, emulator.base_url)
    fixture = namespace["qwen_base_url"]
    generator = getattr(fixture, "__wrapped__", None) or fixture._get_wrapped_function()
    steps = generator()
    base_url = next(steps)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    from langchain_qwen_ci import ChatQwenCodeInterpreter

    answer = ChatQwenCodeInterpreter(base_url=base_url, api_key="sk-local").invoke(
        "What is 2**100?")
    assert "1267650600228229401496703205376" in answer.text
    steps.close()
    # 4. your own model: it thinks, runs 2**10, and answers with the run's output
    run(3, namespace, emulator.base_url)
    with Emulator(model=namespace["MyModel"](), pool_size=1) as emu:
        mine = ChatQwenCodeInterpreter(base_url=emu.base_url, api_key="sk-local").invoke("hi")
    assert mine.text == "It is 1024."
    assert mine.additional_kwargs["reasoning_content"] == "Let me compute."
    # 5. a fault by header: the stream is cut after 5 frames, never returned as complete
    namespace["emu"] = emulator
    run(4, namespace, emulator.base_url)
    with pytest.raises(IncompleteStreamError):
        namespace["llm"].invoke("What is 2**100?")
