"""The emulator logs one line per request: method, path, model, status, duration, code
runs, request id; never the prompt or the key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx

from qwen_ci import AuthenticationError, Client, Options, build, collect
from tests.emulator.conftest import COMPAT, NATIVE, SSE_HEADERS, compat_body, native_body

SECRET_PROMPT = "What is 2**77? Use code."
KEY = "sk-very-secret-key-123"
LINE = re.compile(
    r"INFO: POST (?P<path>\S+) model=(?P<model>\S+) status=(?P<status>\d+) "
    r"duration=\d+\.\d{3}s code_runs=(?P<runs>\d+) request_id=(?P<rid>\S+)$"
)


def test_one_line_per_request_without_prompt_or_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["EMULATOR_TEST_KEY"] = KEY
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen_ci.cli", "emulator", "--port", "0", "--pool-size", "1",
         "--api-key-env", "EMULATOR_TEST_KEY", "--frame-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    url = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
    assert url, "the emulator did not start"
    try:
        request = build([{"role": "user", "content": SECRET_PROMPT}], Options(), "dashscope")
        with Client(api_key=KEY, base_url=url.group(1), max_retries=0) as client:
            result = collect(client.stream(request))
        compat = build([{"role": "user", "content": SECRET_PROMPT}], Options(), "openai")
        with Client(api_key=KEY, base_url=url.group(1)) as client:
            collect(client.stream(compat))
        try:
            with Client(api_key="sk-wrong", base_url=url.group(1), max_retries=0) as client:
                collect(client.stream(request))
        except AuthenticationError:
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    lines = [m for m in map(LINE.search, out.splitlines()) if m]
    assert len(lines) == 3, out
    native, openai, rejected = lines
    assert native["path"].endswith("/text-generation/generation")
    assert (native["model"], native["status"], native["runs"]) == ("qwen3-max-preview", "200", "1")
    assert native["rid"] == result.finish.request_id  # type: ignore[union-attr]
    assert openai["path"] == "/compatible-mode/v1/chat/completions" and openai["runs"] == "1"
    assert rejected["status"] == "401" and rejected["model"] == "-"
    assert SECRET_PROMPT not in out and "2**77" not in out and KEY not in out


TYPO = "qwen3-maxx-preveiw"


def test_refused_model_is_named_in_the_log_line() -> None:
    """A typo in the model name is refused (400 native, 404 compatible and Responses) and
    the log line names the model that was asked for, so the typo is visible in the log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen_ci.cli", "emulator", "--port", "0", "--pool-size", "1",
         "--frame-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    url = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
    assert url, "the emulator did not start"
    base = url.group(1)
    auth = {"Authorization": "Bearer sk-any"}
    try:
        native = httpx.post(base + NATIVE, json=native_body("hi", model=TYPO), headers=auth)
        streamed = httpx.post(base + NATIVE, json=native_body("hi", model=TYPO),
                              headers=SSE_HEADERS)
        compat = httpx.post(base + COMPAT, json=compat_body("hi", model=TYPO), headers=auth)
        responses = httpx.post(
            base + "/compatible-mode/v1/responses", headers=auth,
            json={"model": TYPO, "input": "hi", "tools": [{"type": "code_interpreter"}],
                  "enable_thinking": True, "stream": True})
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert native.status_code == 400 and "Model not exist" in native.text
    assert "Model not exist" in streamed.text  # an error however it travels
    assert compat.status_code == 404 and responses.status_code == 404
    lines = [m for m in map(LINE.search, out.splitlines()) if m]
    assert [(m["path"], m["model"], m["status"]) for m in lines] == [
        (NATIVE, TYPO, "400"),
        (NATIVE, TYPO, str(streamed.status_code)),
        (COMPAT, TYPO, "404"),
        ("/compatible-mode/v1/responses", TYPO, "404"),
    ], out
