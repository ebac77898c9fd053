"""The examples run as scripts, against a replay server."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.replay import ReplayServer, Reply, native_stream

ROOT = Path(__file__).resolve().parents[1]
STREAM = native_stream([
    {"reasoning": "Let me compute. "},
    {"tool_info": ["2**100"]},
    {"reasoning": "Got it.", "tool_info": ["2**100"]},
    {"content": "2**100 = 1267650600228229401496703205376", "tool_info": ["2**100"]},
    {"finish": "stop", "tool_info": ["2**100"]},
])


def run(script: str, *args: str, key: str | None = "sk-test") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    if key:
        env["DASHSCOPE_API_KEY"] = key
    return subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_quickstart_shows_thinking_code_answer_and_usage(server: ReplayServer) -> None:
    server.default = Reply(STREAM)
    done = run("quickstart.py", "--base-url", server.base_url, "2**100?")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # a local base URL is not "DashScope service"
    assert f"backend: local server at {server.base_url}" in out and "DashScope" not in out
    assert "\n\n\n" not in out and "[code executed]\n2**100\nGot it." in out  # no stray blanks
    assert "Let me compute." in out and "[code executed]\n2**100" in out
    assert "1267650600228229401496703205376" in out
    assert "code runs: 1" in out
    assert server.requests[0].json["input"]["messages"] == [{"role": "user", "content": "2**100?"}]


def test_dashscope_base_url_alone_is_honoured(server: ReplayServer) -> None:
    """DASHSCOPE_BASE_URL without a key: that server (a local one takes any key)."""
    server.default = Reply(STREAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["DASHSCOPE_BASE_URL"] = server.base_url
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "2**100?"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"backend: local server at {server.base_url}" in done.stdout
    assert len(server.requests) == 1


def test_quickstart_without_key_runs_against_the_local_emulator() -> None:
    done = run("quickstart.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out
    assert "[code executed]\n123**21" in out
    assert "77269364466549865653073473388030061522211723" in out


BIG = "1169008215014432917465348578887506800769541157267"


def tools_at(depth: int) -> str:
    """The two-step question's two tool steps, as the examples print them."""
    pad = "  " * depth
    return (f"{pad}TOOL code_interpreter\n{pad}  123**23\n"
            f"{pad}TOOL code_interpreter\n{pad}  {BIG} / 5\n")


def test_tracing_langchain_example_prints_the_trace_tree_with_tool_steps() -> None:
    done = run("tracing_langchain.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out and "2.338016430028866e+47" in out
    lines = out[out.index("CHAIN RunnableSequence"):].splitlines()
    assert lines[:2] == ["CHAIN RunnableSequence", "  PROMPT ChatPromptTemplate"]
    assert lines[2].startswith("  LLM ChatQwenCodeInterpreter  (tokens: prompt ")
    assert "reasoning None" not in lines[2]
    assert lines[3].startswith("    thinking: The user asks for two steps")
    assert "\n".join(lines[4:]) + "\n" == tools_at(2) + "  CHAIN StrOutputParser\n"


def test_tracing_llamaindex_example_prints_the_trace_tree_with_tool_spans() -> None:
    done = run("tracing_llamaindex.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out and "2.338016430028866e+47" in out
    lines = out[out.index("LLM QwenCodeInterpreter.stream_chat"):].splitlines()
    assert "reasoning None" not in lines[0] and "(tokens: prompt " in lines[0]
    assert lines[1].startswith("  thinking: The user asks for two steps")
    assert lines[2].startswith("  metadata: {'code_interpreter_count': 2, 'request_id': ")
    assert "\n".join(lines[3:]) + "\n" == tools_at(1)


@pytest.mark.parametrize(("script", "extra"), [("tracing_langchain.py", "langchain-tracing"),
                                               ("tracing_llamaindex.py", "llamaindex-tracing")])
def test_tracing_examples_without_opentelemetry_name_the_extra(
    tmp_path: Path, script: str, extra: str
) -> None:
    fake = tmp_path / "opentelemetry"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'opentelemetry'\", name='opentelemetry')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        "This example needs OpenTelemetry and OpenInference (opentelemetry is missing): "
        f"pip install 'qwen-code-interpreter[{extra},emulator]' (from a checkout: "
        f"pip install -e '.[{extra},emulator]'; the emulator extra runs it offline).")
    assert extra in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
