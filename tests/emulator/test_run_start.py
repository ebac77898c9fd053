"""The run's ``tool_info`` frame goes out before its code executes, so clients see the
run start, then the silence of the run, then the next round (as the recorded order shows:
an empty frame, the ``tool_info`` frame with unchanged usage, the next round with a larger
prompt)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from qwen_ci import Client, CodeRun, CodeStart, Options, build
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import KEY, NATIVE, SSE_HEADERS, native_body

SLEEP = 1.5
SLEEPY = f"import time\ntime.sleep({SLEEP})\nprint('slept')"
PROMPT = f"```python\n{SLEEPY}\n```"


def timed_frames(base_url: str, body: dict[str, Any],
                 headers: dict[str, str]) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, data) of every native frame, read as it arrives."""
    frames: list[tuple[float, dict[str, Any]]] = []
    with httpx.stream("POST", base_url + NATIVE, json=body, headers=headers,
                      timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                frames.append((time.monotonic(), json.loads(line[5:])))
    return frames


def check_announced_before_run(frames: list[tuple[float, dict[str, Any]]], code: str) -> None:
    """As recorded: the last frame of the tool call's tokens, an empty frame with unchanged
    usage, the run's first frame (empty, usage unchanged), sent at least the run's duration
    before the next frame (the next round, whose prompt is larger)."""
    first = next(i for i, (_, f) in enumerate(frames) if f["output"].get("tool_info"))
    (_, spent), (before_at, before), (at, announce), (after_at, after) = (
        frames[first - 2: first + 2])
    assert spent["usage"] == before["usage"]
    assert announce["output"]["tool_info"] == [
        {"code_interpreter": {"code": code}, "type": "code_interpreter"}]
    for frame in (before, announce):
        message = frame["output"]["choices"][0]["message"]
        assert (message["content"], message["reasoning_content"]) == ("", "")
    assert before["usage"]["output_tokens"] == announce["usage"]["output_tokens"]
    assert announce["usage"]["input_tokens"] == before["usage"]["input_tokens"]
    assert frames[-1][1]["usage"]["input_tokens"] > announce["usage"]["input_tokens"]
    assert after["output"]["tool_info"] == announce["output"]["tool_info"]
    # the silence is after the announcement: a lower bound, the code sleeps that long
    assert after_at - at >= SLEEP * 0.9
    assert at - before_at < SLEEP * 0.9


def test_emulator_sends_the_run_before_executing_it(emulator: Emulator) -> None:
    headers = dict(SSE_HEADERS)
    frames = timed_frames(emulator.base_url, native_body(PROMPT), headers)
    check_announced_before_run(frames, SLEEPY)


def test_client_sees_the_start_a_run_duration_before_the_final(emulator: Emulator) -> None:
    client = Client(api_key=KEY, base_url=emulator.base_url, max_retries=0)
    request = build([{"role": "user", "content": PROMPT}], Options(), "dashscope")
    stamps: dict[type, tuple[float, Any]] = {}
    with client:
        for event in client.stream(request):
            if isinstance(event, CodeStart | CodeRun):
                stamps[type(event)] = (time.monotonic(), event)
    (started_at, start), (final_at, final) = stamps[CodeStart], stamps[CodeRun]
    assert start == CodeStart(0, SLEEPY) and final == CodeRun(0, SLEEPY)
    assert final_at - started_at >= SLEEP * 0.9
