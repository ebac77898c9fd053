"""``qwen-ci ask``, ``qwen-ci emulator`` and ``python -m qwen_ci_server.emulator``."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qwen_ci.cli import main
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.sandbox.procs import process_tree
from tests.emulator.conftest import KEY

BIG = "77269364466549865653073473388030061522211723"


def ask(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["ask", *args], out=out)
    return code, out.getvalue()


def test_ask_renders_thinking_code_answer_and_usage(emulator: Emulator) -> None:
    code, text = ask("123的21次方是多少？", "--base-url", emulator.base_url, "--api-key", KEY)
    assert code == 0
    assert " thinking " in text and "用户问的是123的21次方" in text
    assert "code run 1" in text and "123**21" in text
    assert text.index("123**21") < text.index(" answer ") < text.rindex(BIG)
    assert re.search(r"tokens: input \d+, output \d+ \(reasoning \d+\), total \d+; "
                     r"code runs: 1\nrequest_id: \S+", text)


def test_ask_over_the_compatible_protocol(emulator: Emulator) -> None:
    code, text = ask("What is 9 factorial?", "--base-url", emulator.base_url,
                     "--api-key", KEY, "--protocol", "openai")
    assert code == 0 and "362880" in text and "code run 1" not in text
    assert "code runs: 0" not in text  # unknown, and the output says why
    assert "does not return the executed code" in text


def test_ask_reports_errors(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = ask("hi", "--base-url", emulator.base_url, "--api-key", "sk-wrong")
    assert code == 1 and "InvalidApiKey" in capsys.readouterr().err
    code, _ = ask("hi", "--base-url", "https://dashscope.example.com")
    assert code == 2 and "DASHSCOPE_API_KEY" in capsys.readouterr().err


def test_ask_with_an_in_process_emulator() -> None:
    code, text = ask("What is 2**16?", "--emulator")
    assert code == 0 and "65536" in text


def test_ask_without_rich_prints_plain_text(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    code, text = ask("What is 2**10?", "--base-url", emulator.base_url, "--api-key", KEY)
    assert code == 0 and "[code run 1]\n2**10" in text and "[answer]\n" in text


def start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["EMULATOR_TEST_KEY"] = "sk-cli"
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    return output


@pytest.mark.parametrize("runner", ["module", "console-script"])
def test_emulator_command_serves_and_exits_cleanly(runner: str) -> None:
    if runner == "module":
        command = [sys.executable, "-m", "qwen_ci_server.emulator"]
    else:
        script = shutil.which("qwen-ci", path=str(Path(sys.executable).parent))
        if script is None:
            pytest.skip("the qwen-ci console script is not installed")
        command = [script, "emulator"]
    proc, url = start([*command, "--port", "0", "--api-key-env", "EMULATOR_TEST_KEY",
                       "--pool-size", "1",
                       "--frame-delay", "0", "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["warm_kernels"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        kernels = process_tree(proc.pid) - {proc.pid}
        assert kernels
        code, text = ask("What is 2**20?", "--base-url", url, "--api-key", "sk-cli")
        assert code == 0 and "1048576" in text
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    time.sleep(0.2)
    assert all(not process_tree(pid) for pid in kernels)


def test_emulator_command_with_a_script(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("- match: ping\n  code: print('pong')\n  answer: '{output}!'\n")
    proc, url = start([sys.executable, "-m", "qwen_ci_server.emulator", "--port", "0", "--script",
                       str(script), "--pool-size", "0", "--frame-delay", "0"])
    try:
        code, text = ask("ping", "--base-url", url, "--api-key", "sk-local")
        assert code == 0 and "pong!" in text
    finally:
        stop(proc)


def test_emulator_command_rejects_a_bad_script(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    done = subprocess.run([sys.executable, "-m", "qwen_ci_server.emulator", "--script",
                           str(missing)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "missing.yaml" in done.stderr
