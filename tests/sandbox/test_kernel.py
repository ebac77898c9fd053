"""A real sandboxed kernel: state, outputs, limits, timeouts, crashes, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from qwen_ci_server.sandbox import Kernel, Limits
from qwen_ci_server.sandbox.procs import process_tree
from tests.sandbox.conftest import wait_no_descendants

LIMITS = Limits(timeout=2, interrupt_grace=1, memory=1 << 30, file_size=1 << 20,
                open_files=128, output=2_000)


@pytest.fixture
async def kernel() -> AsyncIterator[Kernel]:
    async with Kernel(LIMITS) as k:
        yield k
    assert wait_no_descendants() == set()


async def test_state_outputs_and_errors(kernel: Kernel) -> None:
    first = await kernel.execute("x = 6\nprint('hello')\nx * 7")
    assert (first.status, first.stdout, first.result) == ("ok", "hello\n", "42")
    second = await kernel.execute("import sys\nprint('oops', file=sys.stderr)\nx + 1")
    assert second.stderr == "oops\n" and second.result == "7"
    failed = await kernel.execute("print('\\x1b[31mred\\x1b[0m')\n1 / 0")
    assert failed.status == "error" and failed.error == "ZeroDivisionError: division by zero"
    assert failed.stdout == "red\n"
    assert "\x1b" not in failed.traceback and "ZeroDivisionError" in failed.traceback


async def test_output_is_capped(kernel: Kernel) -> None:
    result = await kernel.execute("print('a' * 5000 + 'b' * 5000)")
    assert len(result.stdout) < 2_100 and "characters omitted" in result.stdout
    assert result.stdout.startswith("aaa") and result.stdout.rstrip().endswith("bbb")


async def test_timeout_interrupts_and_keeps_state(kernel: Kernel) -> None:
    await kernel.execute("y = 1")
    result = await kernel.execute("import time\nwhile True:\n    time.sleep(0.01)")
    assert result.status == "timeout" and not result.reset
    assert "interrupted" in result.error
    assert (await kernel.execute("y")).result == "1"


async def test_uninterruptible_code_is_killed(kernel: Kernel) -> None:
    pids = kernel.pids()
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result = await kernel.execute(code, time_limit=1)
    assert result.status == "timeout" and result.reset and not kernel.alive
    assert 1.9 < result.duration < 6
    await asyncio.sleep(0.2)
    assert all(not process_tree(pid) for pid in pids)
    after = await kernel.execute("1")
    assert after.status == "crashed" and after.reset


async def test_file_size_open_files_and_memory_limits(kernel: Kernel) -> None:
    big = await kernel.execute("open('big', 'wb').write(b'0' * (2 << 20))")
    assert big.status == "error" and "File too large" in big.error
    files = await kernel.execute("handles = [open('f%d' % i, 'w') for i in range(200)]")
    assert files.status == "error" and "Too many open files" in files.error
    memory = await kernel.execute("block = bytearray(2 << 30)")
    assert memory.status == "error" and memory.error.startswith("MemoryError")
    assert (await kernel.execute("print('alive')")).stdout == "alive\n"


async def test_crash_is_reported_with_a_reset(kernel: Kernel) -> None:
    result = await kernel.execute("import os\nos._exit(3)")
    assert result.status == "crashed" and result.reset
    assert "exited with status 3" in result.error


async def test_killed_kernel_leaves_nothing_behind() -> None:
    kernel = Kernel(LIMITS)
    await kernel.start()
    tree = kernel.pids()
    assert len(tree) >= 1 and kernel.pid in tree
    await kernel.execute("import subprocess\nsubprocess.Popen(['sleep', '300'])")
    assert len(kernel.pids()) > len(tree)
    kernel.kill()
    kernel.kill()  # idempotent
    assert wait_no_descendants() == set()


async def test_bwrap_sandbox_has_no_capabilities_secrets_or_host_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qwen_ci_server.sandbox import detect_isolation

    if detect_isolation("auto").mode != "bwrap":
        pytest.skip("bubblewrap isolation is not available here")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-must-not-leak")
    async with Kernel(LIMITS) as kernel:
        code = (
            "import os\n"
            "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
            "print(status['CapEff'].strip(), status['CapPrm'].strip(), os.getuid() != 0,\n"
            "      'DASHSCOPE_API_KEY' in os.environ, os.getcwd(), os.getpid() < 10,\n"
            "      os.path.exists(os.path.expanduser('~root/.bash_history')))"
        )
        result = await kernel.execute(code)
    assert result.stdout.split() == [
        "0000000000000000", "0000000000000000", "True", "False", "/workspace", "True", "False"]



UNFORMATTABLE = (
    "class Unformattable(Exception):\n"
    "    def _render_traceback_(self):\n"
    "        raise OSError(24, 'Too many open files')\n"
)


async def test_an_exception_ipython_cannot_format_is_still_an_error(kernel: Kernel) -> None:
    """#11 item 4: when IPython cannot format an exception (as when the run exhausted the
    open files) IOPub carries no error message; only the execute_reply says the run
    failed (it came back 'ok' with empty output). 50 times in a row."""
    await kernel.execute(UNFORMATTABLE)
    for index in range(50):
        failed = await kernel.execute(f"raise Unformattable('run {index}')")
        assert (failed.status, failed.error) == ("error", f"Unformattable: run {index}")


@pytest.mark.timeout(240)
async def test_runs_exhausting_files_memory_or_recursion_report_the_error() -> None:
    """Runs that fail by exhausting open files, memory or the recursion limit report
    their error, 50 times in a row each."""
    limits = Limits(timeout=10, interrupt_grace=2, memory=512 << 20, open_files=128,
                    output=2_000)
    codes = {
        "OSError": "handles = [open('/dev/null') for _ in range(500)]",
        "MemoryError": "blocks = [bytearray(64 << 20) for _ in range(100)]",
        "RecursionError": "def deep(n):\n    return deep(n + 1)\ndeep(0)",
    }
    async with Kernel(limits) as kernel:
        # short tracebacks, quickly formatted: 150 failing runs stay fast
        await kernel.execute("import sys\nsys.setrecursionlimit(150)\n"
                             "get_ipython().run_line_magic('xmode', 'Minimal')")
        for _ in range(50):
            for name, code in codes.items():
                failed = await kernel.execute(code)
                assert failed.status == "error" and failed.error.startswith(name), failed
        assert (await kernel.execute("print('alive')")).stdout == "alive\n"
    assert wait_no_descendants() == set()
