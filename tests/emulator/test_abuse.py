"""Hostile code through the emulator: each run ends with an error result fed to the
model, the emulator keeps serving, and no process is left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.sandbox.procs import descendants
from tests.emulator.conftest import NATIVE, SSE_HEADERS, ask, leftovers, native_body, running

ROOT = Path(__file__).resolve().parents[2]


def fenced(code: str) -> str:
    return f"Run this:\n```python\n{code}\n```"


def needs_bwrap(emu: Emulator) -> None:
    isolation = emu.pool.isolation
    if isolation is None or isolation.mode != "bwrap":
        pytest.skip("bubblewrap isolation is not available here (rlimits only)")


def check_still_serving(emu: Emulator) -> None:
    assert "1024" in ask(emu, "What is 2**10?").text
    assert leftovers() == set()


def test_infinite_loop_is_interrupted(emulator: Emulator) -> None:
    result = ask(emulator, fenced("while True:\n    pass"))
    assert "TimeoutError" in result.text and "3 s" in result.text
    assert "TimeoutError" in result.reasoning  # the model read the error
    check_still_serving(emulator)


def test_uninterruptible_loop_is_killed_and_the_model_told_of_the_reset(
    emulator: Emulator,
) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result = ask(emulator, fenced(code))
    assert "TimeoutError" in result.text and "restarted" in result.text
    assert "variables, imports and files from earlier runs are gone" in result.reasoning
    check_still_serving(emulator)


def test_four_gib_allocation_fails(emulator: Emulator) -> None:
    result = ask(emulator, fenced("data = bytearray(4 * 1024**3)"))
    assert "MemoryError" in result.text
    check_still_serving(emulator)


def test_fork_bomb_is_contained(emulator: Emulator) -> None:
    isolation = emulator.pool.isolation
    if os.geteuid() == 0 and (isolation is None or isolation.mode != "bwrap"):
        pytest.skip("as root without bubblewrap RLIMIT_NPROC does not apply: not safe to run")
    result = ask(emulator, fenced("import os\nwhile True:\n    os.fork()"))
    assert "The code failed" in result.text
    assert "BlockingIOError" in result.text or "TimeoutError" in result.text
    check_still_serving(emulator)


def test_network_is_unreachable(emulator: Emulator) -> None:
    needs_bwrap(emulator)
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)"
    result = ask(emulator, fenced(code))
    assert "OSError" in result.text and "unreachable" in result.text.lower()
    dns = ask(emulator, fenced("import socket\nsocket.getaddrinfo('example.com', 80)"))
    assert "gaierror" in dns.text
    check_still_serving(emulator)


def test_writing_outside_the_work_dir_fails(emulator: Emulator) -> None:
    needs_bwrap(emulator)
    target = ROOT / "written-by-the-sandbox.txt"
    venv = Path(__import__("sys").prefix) / "written-by-the-sandbox.txt"
    for path in (target, venv, Path("/etc/written-by-the-sandbox")):
        result = ask(emulator, fenced(f"open({str(path)!r}, 'w').write('x')"))
        assert "The code failed" in result.text
        assert "Read-only file system" in result.text or "No such file" in result.text or (
            "Permission denied" in result.text
        )
        assert not path.exists()
    code = "open('ok.txt', 'w').write('fine')\nprint(open('ok.txt').read())"
    inside = ask(emulator, fenced(code))
    assert "fine" in inside.text
    check_still_serving(emulator)


def test_fifty_megabytes_of_output_are_capped(emulator: Emulator) -> None:
    result = ask(emulator, fenced("print('x' * 50_000_000)"))
    # one 50 MB message is over the sandbox's message limit (#14): the kernel is replaced
    assert "characters omitted" in result.text or "OutputLimitError" in result.text
    assert len(result.text) < 5_000 and len(result.reasoning) < 5_000
    check_still_serving(emulator)


def test_client_leaving_during_a_run_frees_the_kernel(emulator: Emulator) -> None:
    body = native_body(fenced("import time\ntime.sleep(60)"))
    with httpx.stream("POST", emulator.base_url + NATIVE, json=body, headers=SSE_HEADERS,
                      timeout=30) as response:
        for chunk in response.iter_bytes():
            if b"tool_info" in chunk:  # the run has started
                break
        busy = descendants()
    started = time.monotonic()
    while busy & descendants() - emulator.sandbox_pids():
        assert time.monotonic() - started < 5, "the kernel outlived its request"
        time.sleep(0.05)
    check_still_serving(emulator)


def test_cpu_time_limit_kills_the_kernel() -> None:
    from qwen_ci_server.sandbox import Limits

    limits = Limits(timeout=20, cpu=2)
    with running(pool_size=1, limits=limits) as emu:
        result = ask(emu, fenced("while True:\n    pass"))
        assert "CPU time limit" in result.text and "restarted" in result.text
        assert "1024" in ask(emu, "What is 2**10?").text
        assert leftovers() == set()
