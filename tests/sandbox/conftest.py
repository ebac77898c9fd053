"""Helpers of the sandbox tests."""

from __future__ import annotations

import time

from qwen_ci_server.sandbox.procs import descendants
from tests.emulator.conftest import RUNNING


def wait_no_descendants(within: float = 10.0) -> set[int]:
    """Wait until this process has no living children besides the kernels of emulators
    still running in this test session; return those left."""
    deadline = time.monotonic() + within
    while True:
        managed: set[int] = set()
        for emu in list(RUNNING):
            managed |= emu.sandbox_pids()
        left = descendants() - managed
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
