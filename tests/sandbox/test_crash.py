"""Crash safety (#22 finding 1): a server that dies leaves nothing frozen or behind.

A process holding a warm pool (its kernels frozen between runs, as a server's are) is
killed with SIGKILL. Its watchdog must thaw and kill the kernels and remove their cgroups
and run directories; with the watchdog killed too, the next start must do it and log it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_ci_server.sandbox.cgroups import cgroup_support
from qwen_ci_server.sandbox.procs import is_zombie
from qwen_ci_server.sandbox.reaper import reap_parents

pytestmark = pytest.mark.skipif(not cgroup_support().available,
                                reason="needs a cgroup per sandbox (frozen kernels)")

HOLDER = """
import asyncio, json
from qwen_ci_server.sandbox import KernelPool, Limits
from qwen_ci_server.sandbox.reaper import watchdog_pid

async def main():
    pool = KernelPool(size=2, limits=Limits(timeout=5))
    await pool.start()
    await pool.wait_warm(90)
    kernels = list(pool._warm)
    print(json.dumps({
        "pids": sorted(pool.pids()), "watchdog": watchdog_pid(),
        "groups": [p for k in kernels for p in k.cgroup.dirs.values()],
        "dirs": [k._dir for k in kernels], "frozen": [k.cgroup.frozen for k in kernels],
    }), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not is_zombie(pid)


def _left(info: dict[str, Any]) -> list[str]:
    return ([f"pid {p}" for p in info["pids"] if _alive(p)]
            + [g for g in info["groups"] if os.path.exists(g)]
            + [d for d in info["dirs"] if os.path.exists(d)])


def _wait_gone(info: dict[str, Any], within: float) -> list[str]:
    deadline = time.monotonic() + within
    while (left := _left(info)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info: dict[str, Any] = {"pids": [], "groups": [], "dirs": [], "watchdog": None}
    try:
        info = json.loads(proc.stdout.readline())
        yield proc, info
    finally:
        proc.kill()
        proc.wait(30)
        if info.get("watchdog"):
            with __import__("contextlib").suppress(OSError):
                os.kill(info["watchdog"], signal.SIGKILL)
        # whatever a failing test left: thawed, killed and removed
        reap_parents({os.path.dirname(g) for g in info["groups"]}, within=10)


def test_a_killed_server_leaves_nothing_frozen(
    holder: tuple[subprocess.Popen[str], dict[str, Any]]
) -> None:
    proc, info = holder
    assert info["frozen"] == [True, True] and info["pids"] and info["watchdog"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert _wait_gone(info, 60) == []
    assert all(not os.path.exists(os.path.dirname(g)) for g in info["groups"])


def test_the_next_start_reaps_what_a_dead_server_left(
    holder: tuple[subprocess.Popen[str], dict[str, Any]], tmp_path: Path
) -> None:
    proc, info = holder
    os.kill(info["watchdog"], signal.SIGKILL)  # the watchdog dies first (e.g. kill -9 -1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    time.sleep(0.5)
    left = _left(info)
    assert any(item.startswith("pid ") for item in left)  # frozen, owner gone
    start = ("import logging; logging.basicConfig(level='INFO'); "
             "from qwen_ci_server.sandbox.cgroups import cgroup_support; "
             "print(cgroup_support().available)")
    done = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "reaped what a dead server left" in done.stderr
    assert f"servers {proc.pid}" in done.stderr or str(proc.pid) in done.stderr
    assert _wait_gone(info, 30) == []


def test_a_server_that_exits_cleanly_leaves_no_lock_file(tmp_path: Path) -> None:
    """Each server held /tmp/qwen-ci-owner-<pid>.lock and left it behind (one empty file
    per test process, reaped only by a later start). A clean exit removes its own now."""
    code = ("import os; from qwen_ci_server.sandbox import reaper; reaper.claim(); "
            "print(reaper._lock_path(os.getpid()), os.path.exists("
            "reaper._lock_path(os.getpid())))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    path, existed = done.stdout.split()
    assert existed == "True" and path.startswith(str(tmp_path))
    assert not os.path.exists(path)
