"""Every Python snippet of README.md and of the docs, each page run in order against the
local emulator (the backend the Setup section offers), does what its text claims.

The replay-server tests (test_readme.py, llamaindex/test_docs.py) check the snippets'
mechanics with fixed streams; these check the claims with the scripted model and real code
runs: the code ran, the result is in the answer, ``search_info`` is there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_ci_server.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
BIG = "77269364466549865653073473388030061522211723"

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)


def snippets(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(pool_size=1) as emu:
        yield emu


def run_all(path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``path``'s snippets in order with exactly the variables the docs export for the
    emulator (README "Setup"; docs/langchain.md "Your tools and the interpreter": the
    agent's function-calling qwen-plus is the emulator's own, in compatible mode)."""
    for name in [name for name in os.environ if name.startswith(("DASHSCOPE_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-local")
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url + "/compatible-mode/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    namespace: dict[str, object] = {"__name__": path.stem}
    for index, code in enumerate(snippets(path)):
        exec(compile(code, f"{path.name} snippet {index + 1}", "exec"), namespace)


@pytest.mark.timeout(120)
def test_readme_snippets_do_what_the_readme_says(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all(ROOT / "README.md", emulator, monkeypatch)
    out = capsys.readouterr().out
    code_123 = "[{'type': 'code_interpreter', 'code_interpreter': {'code': '123**21'}}]"
    # LangChain: the answer, the code; LlamaIndex: the thinking block, 2**100 and its run
    assert BIG in out and code_123 in out
    assert "block_type='thinking'" in out and "1267650600228229401496703205376" in out
    assert "[{'type': 'code_interpreter', 'code_interpreter': {'code': '2**100'}}]" in out
    assert "{'code_interpreter': {'count': 1}}" in out
    assert "I do not fully understand" not in out and "没有完全理解" not in out


@pytest.mark.timeout(240)
def test_langchain_guide_snippets_do_what_the_guide_says(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all(ROOT / "docs" / "langchain.md", emulator, monkeypatch)
    out = capsys.readouterr().out
    code_123 = "[{'type': 'code_interpreter', 'code_interpreter': {'code': '123**21'}}]"
    # invoke: the answer, the code, the run count
    assert BIG in out and code_123 in out
    assert "'plugins': {'code_interpreter': {'count': 1}}" in out
    # stream: the 30th Fibonacci number, its code printed once
    assert out.count("[code]\na, b = 0, 1") == 1 and "832040" in out
    # chain: "Answer with a number": the number alone on its line
    assert re.search(r"^1229$", out, re.M)
    # content blocks: a run id and the code
    assert re.search(r"^\S+ 123\*\*21$", out, re.M)
    # the agent recipe, against the emulator's function-calling qwen-plus: the rate tool,
    # then the interpreter (the python tool) computed the product
    assert ("1234.5 USD is 1135.74 EUR (1234.5 × 0.92, the rate exchange_rate returned; "
            "computed by python).") in out
    # errors and retries: the fallback chain answers
    assert "1024" in out
    assert "I do not fully understand" not in out and "没有完全理解" not in out


@pytest.mark.timeout(120)
def test_protocols_page_snippets_do_what_the_page_says(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all(ROOT / "docs" / "protocols.md", emulator, monkeypatch)
    out = capsys.readouterr().out
    # web search: the results and both plugins
    assert "'site_name': 'qwen-ci emulator'" in out
    assert ("{'search': {'count': 1, 'strategy': 'standard'}, "
            "'code_interpreter': {'count': 1}}") in out
    # the core: events, including the code run
    assert "CodeRun(index=0, code='2**100')" in out
    assert "I do not fully understand" not in out and "没有完全理解" not in out


@pytest.mark.timeout(120)
def test_tracing_page_snippets_do_what_the_page_says(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all(ROOT / "docs" / "tracing.md", emulator, monkeypatch)
    out = capsys.readouterr().out
    # live code events (LangChain) and the LlamaIndex run event
    assert "running: 2**100" in out and "done: 2**100" in out and "run 0: 2**64" in out


@pytest.mark.timeout(240)
def test_llamaindex_guide_snippets_do_what_the_guide_says(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llama_index.core import Settings

    monkeypatch.setattr(Settings, "_llm", None)  # a snippet sets Settings.llm
    run_all(ROOT / "docs" / "llamaindex.md", emulator, monkeypatch)
    out = capsys.readouterr().out
    # chat: 2**10 // 4 computed by code
    assert "2**10 // 4" in out and "is:\n\n256" in out
    # streaming: the Fibonacci code, the value, the token count line
    assert "[code executed]\na, b = 0, 1" in out and "832040" in out
    assert re.search(r"^tokens: \d+$", out, re.M)
    # completion: 2**100 and its run
    assert "1267650600228229401496703205376" in out
    assert "[{'type': 'code_interpreter', 'code_interpreter': {'code': '2**100'}}]" in out
    # query engine and context chat engine: total / months, not an average of every number
    assert out.count("176366.71 EUR") >= 2
    # code_runs(): the runs of the calls inside the query engine and the chat engine
    assert "ran: 'total = 1234567\\nmonths = 7" in out and "ran: '2**10 // 4', request " in out
    # ReAct agent: the tool call the guide shows and the interpreter's run
    assert "['exchange_rate']" in out and "1135.74 EUR" in out
    assert "round(1234.5 * 0.92, 2)" in out
    assert "I do not fully understand" not in out and "cannot answer" not in out
