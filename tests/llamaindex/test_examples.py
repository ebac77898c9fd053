"""The LlamaIndex examples, against replay servers.

One test runs a script as a process; the others run the scripts' ``main`` in this
process (importing LlamaIndex in a fresh process takes seconds).
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.llamaindex.common import TWO_RUNS
from tests.replay import ReplayServer, Reply, native_stream

# llama-index-workflows inspects agents with inspect.getmembers, which touches pydantic's
# deprecated attributes
pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["llamaindex_chat.py", "llamaindex_stream.py", "llamaindex_react_agent.py"]
AUTH_FAILURE = Reply([b'{"code":"InvalidApiKey","message":"Invalid API-key provided.",'
                      b'"request_id":"r"}'], status=401,
                     headers={"Content-Type": "application/json"})


def main_of(script: str) -> Callable[[], int]:
    namespace = runpy.run_path(str(ROOT / "examples" / script), run_name="example")
    main: Callable[[], int] = namespace["main"]
    return main


def run_main(script: str, monkeypatch: pytest.MonkeyPatch, *args: str,
             key: str | None = "sk-test") -> int:
    if key:
        monkeypatch.setenv("DASHSCOPE_API_KEY", key)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "argv", [script, *args])
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # as when run as a script
    return main_of(script)()


def test_chat_example_runs_as_a_script(server: ReplayServer) -> None:
    server.default = Reply(TWO_RUNS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["DASHSCOPE_API_KEY"] = "sk-test"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llamaindex_chat.py"),
         "--base-url", server.base_url, "2**10 // 4?"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "thinking: First compute.Then done." in done.stdout
    assert "[code run 1]\nx = 2**10" in done.stdout
    assert "[code run 2]\nprint(x // 4)" in done.stdout
    assert "answer: x is 1024; x//4 is 256." in done.stdout
    assert "prompt 260" in done.stdout and "code runs: 2" in done.stdout
    assert server.requests[0].json["input"]["messages"] == [
        {"role": "user", "content": "2**10 // 4?"}]


def test_stream_example_prints_code_between_the_thinking(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server.default = Reply(TWO_RUNS)
    assert run_main("llamaindex_stream.py", monkeypatch, "--base-url", server.base_url) == 0
    out = capsys.readouterr().out
    assert out.index("First compute.") < out.index("[code executed]\nx = 2**10")
    assert out.index("x = 2**10") < out.index("Then ") < out.index("print(x // 4)")
    assert out.index("print(x // 4)") < out.index("done.") < out.index("x is 1024; x//4 is 256.")
    assert "code runs: 2" in out


def test_react_agent_example_calls_its_text_tool(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server.queue(
        Reply(native_stream([
            {"reasoning": "I need the rate."},
            {"content": 'Thought: I need the rate.\nAction: exchange_rate\n'
                        'Action Input: {"currency": "USD"}'},
            {"finish": "stop"},
        ])),
        Reply(native_stream([
            {"tool_info": ["1234.5 * 0.92"]},
            {"content": "Thought: I can answer.\nAnswer: 1234.5 USD is 1135.74 EUR.",
             "tool_info": ["1234.5 * 0.92"]},
            {"finish": "stop", "tool_info": ["1234.5 * 0.92"]},
        ])),
    )
    assert run_main("llamaindex_react_agent.py", monkeypatch, "--base-url", server.base_url,
                    "1234.5 USD in EUR?") == 0
    out = capsys.readouterr().out
    assert "[tool] exchange_rate({'currency': 'USD'}) -> 0.92" in out
    assert "[code executed]\n1234.5 * 0.92" in out
    assert "answer: 1234.5 USD is 1135.74 EUR." in out
    first, second = (r.json for r in server.requests)
    assert "exchange_rate" in first["input"]["messages"][0]["content"]
    assert second["input"]["messages"][-1] == {"role": "user", "content": "Observation: 0.92"}


@pytest.mark.parametrize("script", EXAMPLES)
def test_examples_without_key_run_against_the_local_emulator(
    script: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(script, monkeypatch, "What is 123 to the power of 21?", key=None) == 0
    out = capsys.readouterr().out
    assert "backend: local emulator" in out
    assert "123**21" in out and "77269364466549865653073473388030061522211723" in out


@pytest.mark.parametrize("script", EXAMPLES)
def test_examples_report_service_errors(
    script: str, server: ReplayServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.default = AUTH_FAILURE
    assert run_main(script, monkeypatch, "--base-url", server.base_url, "q") == 1
    assert "error: [401 InvalidApiKey] Invalid API-key provided." in capsys.readouterr().err
