"""The examples run as scripts, against a replay server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert f"backend: DashScope service ({server.base_url})" in out
    assert "Let me compute." in out and "[code executed]\n2**100" in out
    assert "1267650600228229401496703205376" in out
    assert "code runs: 1" in out
    assert server.requests[0].json["input"]["messages"] == [{"role": "user", "content": "2**100?"}]


def test_quickstart_without_key_runs_against_the_local_emulator() -> None:
    done = run("quickstart.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out
    assert "[code executed]\n123**21" in out
    assert "77269364466549865653073473388030061522211723" in out


def test_tracing_langchain_example_prints_the_trace() -> None:
    done = run("tracing_langchain.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out
    assert "code #0:\n      123**21" in out
    assert "answer: " in out and "77269364466549865653073473388030061522211723" in out
    assert "tokens: prompt" in out and "reasoning" in out


def test_tracing_llamaindex_example_prints_code_span_events() -> None:
    done = run("tracing_llamaindex.py", key=None)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: local emulator" in out
    assert out.count("code #0:\n      123**21") == 2  # chat and stream_chat spans
    assert "77269364466549865653073473388030061522211723" in out
    assert "tokens: prompt" in out
