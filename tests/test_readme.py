"""The README's Python snippets run, in order, against a replay server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fc_server import FunctionCallingServer
from tests.langchain.test_chat_model import TWO_RUNS
from tests.replay import ReplayServer, Reply

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)


def test_readme_snippets_run(server: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    server.default = Reply(TWO_RUNS)
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = snippets()
    assert len(blocks) >= 9
    with FunctionCallingServer() as agent_model:  # the agent recipe's tool-calling model
        monkeypatch.setenv("OPENAI_BASE_URL", agent_model.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-agent")
        for index, code in enumerate(blocks):
            exec(compile(code, f"README.md snippet {index + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count("x is 1024; x//4 is 256.") >= 4
    assert "running: x = 2**10" in out and "running: print(x // 4)" in out
    assert "[code] x = 2**10" in out
    assert "run 0: x = 2**10" in out and "run 1: print(x // 4)" in out
    assert len(server.requests) >= 8
