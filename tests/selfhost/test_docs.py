"""docs/selfhost.md: its Python snippets run against the self-hosted server, and also the
way tests/test_readme.py runs the README's (the section is pasted there); its commands
use options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from qwen_ci.cli import _parser
from qwen_ci_server.selfhost import SelfHost
from tests.langchain.test_chat_model import TWO_RUNS
from tests.replay import ReplayServer, Reply
from tests.selfhost.conftest import KEY
from tests.selfhost.upstream import FakeUpstream, stdout_of, stream, tool_outputs

DOC = Path(__file__).resolve().parents[2] / "docs" / "selfhost.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def responses_snippet(code: str) -> bool:
    """The Responses API example (the ``openai`` SDK, not the package's models)."""
    return "responses.create" in code


def run_snippets(native_only: bool = False) -> None:
    namespace: dict[str, object] = {"__name__": "selfhost_doc"}
    for index, code in enumerate(blocks("python")):
        if native_only and responses_snippet(code):
            continue
        exec(compile(code, f"docs/selfhost.md snippet {index + 1}", "exec"), namespace)


def test_snippets_against_the_self_hosted_server(
    server: SelfHost, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if outputs := tool_outputs(body):
            return stream(content=["It is ", stdout_of(outputs[-1]), "."])
        if "factorial" in body["messages"][-1]["content"]:  # the Responses example
            return stream(codes=["import math\nprint(math.factorial(20))"])
        return stream(reasoning=["Divide exactly."], codes=["print(round(2**100 / 7, 5))"])

    upstream.reset(script)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    run_snippets()
    out = capsys.readouterr().out
    assert f"It is {round(2**100 / 7, 5)}." in out and "Divide exactly." in out
    assert "'code': 'print(round(2**100 / 7, 5))'" in out
    # the Responses example prints the code, the log of the server's sandbox, the answer
    assert "print(math.factorial(20)) -> 2432902008176640000" in out
    assert "It is 2432902008176640000." in out


def test_snippets_run_as_the_readme_test_runs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    with ReplayServer() as replay:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
        monkeypatch.setenv("DASHSCOPE_BASE_URL", replay.base_url)
        replay.default = Reply(TWO_RUNS)
        run_snippets(native_only=True)
        native = [code for code in blocks("python") if not responses_snippet(code)]
        assert len(replay.requests) == len(native)


def test_documented_serve_commands_parse() -> None:
    text = "\n".join(blocks("bash")).replace("\\\n", " ")
    commands = [line.split("#")[0].strip().rstrip("&") for line in text.splitlines()
                if line.strip().startswith("qwen-ci serve")]
    assert len(commands) >= 3
    for command in commands:
        args = _parser().parse_args(shlex.split(command.replace("$port", "8701"))[1:])
        assert args.command == "serve" and args.upstream_base_url.endswith("/v1")


def test_no_key_on_a_command_line_and_fail_closed_documented() -> None:
    """#14 row 9: the vLLM example passed `--api-key` on the command line (visible in
    /proc/<pid>/cmdline); keys go by environment now, and the guide says serve fails
    closed."""
    text = "\n".join(blocks("bash")).replace("\\\n", " ")
    assert not re.search(r"--api-key[ =](?!-)", text), "a key on a command line"
    doc = DOC.read_text("utf-8")
    assert "fails closed" in doc.lower() and "SECURITY.md" in doc
    security = (DOC.parent / "SECURITY.md").read_text("utf-8")
    for topic in ("Fail closed", "shared kernel", "GPU", "Non-root", "Reporting a problem",
                  "Without a cgroup", "Why bubblewrap fails"):
        assert topic.lower() in security.lower(), topic
