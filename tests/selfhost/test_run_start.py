"""``qwen-ci serve`` sends a run's ``tool_info`` frame before it executes the code."""

from __future__ import annotations

from typing import Any

from qwen_ci_server.selfhost import SelfHost
from tests.emulator.conftest import native_body
from tests.emulator.test_run_start import SLEEPY, check_announced_before_run, timed_frames
from tests.selfhost.conftest import KEY
from tests.selfhost.upstream import FakeUpstream, stream


def test_serve_sends_the_run_before_executing_it(server: SelfHost,
                                                 upstream: FakeUpstream) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["I will wait."], codes=[SLEEPY], usage=(50, 20, 8))
        return stream(reasoning=["Done waiting."], content=["slept"], usage=(90, 15, 4))

    upstream.reset(script)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable",
                   "Accept": "text/event-stream"}
        frames = timed_frames(server.base_url, native_body("Wait a bit."), headers)
    finally:
        upstream.reset()
    check_announced_before_run(frames, SLEEPY)
