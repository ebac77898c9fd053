"""``qwen-ci serve`` as a process: serves, logs JSON lines without secrets, stops on SIGTERM."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_ci.cli import main
from qwen_ci_server.sandbox.procs import process_tree
from tests.selfhost.upstream import MODEL, FakeUpstream, stdout_of, stream, tool_outputs

CANARY = "sk-upstream-cli-canary-31c7"


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def serve_command(upstream: FakeUpstream, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qwen_ci.cli", "serve", "--upstream-base-url",
            upstream.base_url, "--upstream-model", MODEL, *extra]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(extra)
    return env


def test_serve_answers_logs_json_and_stops_on_sigterm(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["Run it."], codes=["print(2 ** 20)"], usage=(10, 5, 2))
        return stream(content=["It is ", stdout_of(tool_outputs(body)[-1])], usage=(20, 3, 0))

    upstream.reset(script)
    log = tmp_path / "serve.log"
    command = serve_command(upstream, "--upstream-api-key-env", "FAKE_UPSTREAM_KEY",
                            "--port", "0", "--pool-size", "1", "--api-key-env", "SERVE_TEST_KEY")
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env=environment(FAKE_UPSTREAM_KEY=CANARY,
                                                SERVE_TEST_KEY="sk-cli"))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"qwen-ci serve on (http://127\.0\.0\.1:\d+)", line)
        assert match, line + log.read_text()
        url = match.group(1)
        deadline = time.monotonic() + 30
        auth = {"Authorization": "Bearer sk-cli"}
        while httpx.get(url + "/health", headers=auth).json()["warm_kernels"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        out = io.StringIO()
        code = main(["ask", "What is 2 ** 20?", "--base-url", url, "--api-key", "sk-cli"],
                    out=out)
        assert code == 0 and "It is 1048576" in out.getvalue()
        assert "code run 1" in out.getvalue() and "print(2 ** 20)" in out.getvalue()
        assert upstream.received[0].headers["authorization"] == f"Bearer {CANARY}"
        kernels = process_tree(proc.pid) - {proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    time.sleep(0.2)
    assert all(not process_tree(pid) for pid in kernels)
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    requests = [r for r in records if r["logger"] == "qwen_ci_server.selfhost.access"]
    assert [(r["status"], r["outcome"], r["code_runs"], r["input_tokens"]) for r in requests] == [
        (200, "ok", 1, 30)]
    assert any(r["msg"] == "serving" and r["upstream_model"] == MODEL for r in records)
    assert records[-1]["msg"] == "stopped"
    for secret in (CANARY, "sk-cli", "What is 2 ** 20?", "print(2 ** 20)"):
        assert secret not in text


@pytest.mark.parametrize(("extra", "env", "message"), [
    (["--upstream-api-key-env", "UNSET_VAR_FOR_TEST"], {}, "UNSET_VAR_FOR_TEST is not set"),
    (["--upstream-extra-body", "{not json"], {}, "not valid JSON"),
    (["--max-rounds", "0"], {}, "--max-rounds"),
])
def test_serve_rejects_unusable_options(
    upstream: FakeUpstream, extra: list[str], env: dict[str, str], message: str
) -> None:
    done = subprocess.run(serve_command(upstream, "--port", "0", *extra), capture_output=True,
                          text=True, timeout=60, env=environment(**env), check=False)
    assert done.returncode == 2 and message in done.stderr


def test_bad_upstream_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--upstream-base-url", "localhost:8000", "--upstream-model", "m",
                 "--port", "0"])
    assert code == 2 and "not an http(s) URL" in capsys.readouterr().err
