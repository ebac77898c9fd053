"""docs/selfhost.md: its Python snippets run against the self-hosted server (a scripted
upstream, and the guide's offline path: the emulator's function-calling model as the
upstream) and against a replay server; its commands use options that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci.cli import _parser
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.selfhost import SelfHost, ServeConfig, UpstreamConfig
from tests.emulator.conftest import RUNNING
from tests.langchain.test_chat_model import TWO_RUNS
from tests.replay import ReplayServer, Reply
from tests.selfhost.conftest import KEY, LIMITS
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
        return stream(reasoning=["Divide exactly."], codes=[EXACT_CODE])

    upstream.reset(script)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    run_snippets()
    out = capsys.readouterr().out
    assert f"It is {EXACT}." in out and "Divide exactly." in out
    assert "divmod((2**100 * 10**5 * 2 + 7) // 14, 10**5)" in out
    # the Responses example prints the code, the log of the server's sandbox, the answer
    assert "print(math.factorial(20)) -> 2432902008176640000" in out
    assert "It is 2432902008176640000." in out


EXACT = "181092942889747057356671886482.28571"  # 2**100 / 7 to 5 places, not a float
EXACT_CODE = ("whole, part = divmod((2**100 * 10**5 * 2 + 7) // 14, 10**5)  # exact, rounded\n"
              "print(f'{whole}.{part:05d}')")


def test_offline_path_the_emulator_as_the_upstream(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's offline path: `qwen-ci serve` in front of the emulator's function-calling
    model; the guide's example prompt gets the exact value, computed in the sandbox."""
    bash = "\n".join(blocks("bash"))
    upstream_url = re.search(r"--upstream-base-url (http://127\.0\.0\.1:8766\S+) "
                             r"--upstream-model (\S+) \\\n\s+--upstream-extra-body '(.*?)'",
                             bash)
    assert upstream_url is not None
    prompt = re.search(r'qwen-ci ask "([^"]+)"', bash)
    assert prompt is not None
    with Emulator(pool_size=0) as emulator:
        url = upstream_url[1].replace("http://127.0.0.1:8766", emulator.base_url)
        upstream = UpstreamConfig(url, upstream_url[2], timeout=30,
                                  extra_body=json.loads(upstream_url[3]))
        with SelfHost(ServeConfig(upstream, pool_size=1, limits=LIMITS)) as server:
            RUNNING.append(server)
            try:
                monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
                monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-local")
                msg = ChatQwenCodeInterpreter().invoke(prompt[1])
                run_snippets()
            finally:
                RUNNING.remove(server)
    assert msg.content.endswith(EXACT), msg.content
    assert "Fraction(2) ** 100 / Fraction(7)" in msg.additional_kwargs["tool_info"][0][
        "code_interpreter"]["code"]
    out = capsys.readouterr().out
    assert out.count(EXACT) == 1 and "I will use the code_interpreter tool" in out


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
