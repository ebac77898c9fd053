"""Every Python snippet of docs/llamaindex.md runs, in order, against a replay server."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from llama_index.core import Settings

from tests.llamaindex.common import ANSWER, TWO_RUNS
from tests.replay import Recorded, ReplayServer, Reply, native_stream

DOC = Path(__file__).resolve().parents[2] / "docs" / "llamaindex.md"

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)

ACTION = native_stream([
    {"reasoning": "I need the rate."},
    {"content": 'Thought: I need the rate.\nAction: exchange_rate\n'
                'Action Input: {"currency": "USD"}'},
    {"finish": "stop"},
])
ANSWER_REACT = native_stream([
    {"tool_info": ["1234.5 * 0.92"]},
    {"content": "Thought: I can answer.\nAnswer: 1135.74 EUR.", "tool_info": ["1234.5 * 0.92"]},
    {"finish": "stop", "tool_info": ["1234.5 * 0.92"]},
])


def choose(request: Recorded) -> Reply:
    """ReAct prompts get a tool call, then an answer; everything else gets TWO_RUNS."""
    messages = request.json["input"]["messages"]
    if "## Tools" in messages[0]["content"]:
        observed = messages[-1]["content"].startswith("Observation:")
        return Reply(ANSWER_REACT if observed else ACTION)
    return Reply(TWO_RUNS)


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def test_doc_snippets_run(server: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    if not DOC.is_file():
        pytest.skip(f"{DOC} not found")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    monkeypatch.setattr(Settings, "_llm", None)  # a snippet sets Settings.llm
    server.chooser = choose
    namespace: dict[str, object] = {"__name__": "docs"}
    blocks = snippets()
    assert len(blocks) >= 6
    for index, code in enumerate(blocks):
        exec(compile(code, f"{DOC.name} snippet {index + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count(ANSWER) >= 6
    assert "x = 2**10" in out and "print(x // 4)" in out
    # code_runs(): both runs of the query engine's call and of the chat engine's
    assert out.count("ran: 'x = 2**10', request ") == 2
    assert "['exchange_rate']" in out and "1135.74 EUR." in out and "1234.5 * 0.92" in out


def test_class_docstring_example_runs(server: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from llamaindex_qwen_ci import QwenCodeInterpreter

    doc = QwenCodeInterpreter.__doc__ or ""
    code = textwrap.dedent(doc.split(".. code-block:: python\n", 1)[1])
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    server.default = Reply(TWO_RUNS)
    exec(compile(code, "QwenCodeInterpreter docstring", "exec"), {"__name__": "docstring"})
    assert capsys.readouterr().out == f"{ANSWER}\nx = 2**10\nprint(x // 4)\n281\n"
