"""#22: isolation resolved or refused, never silently weaker; socket buffers bounded;
what the host cannot guarantee is said."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_ci_server.sandbox import KernelPool, Limits, detect_isolation
from qwen_ci_server.sandbox.cgroups import cgroup_support, socket_budget
from qwen_ci_server.sandbox.isolation import resolve_python

BWRAP = detect_isolation("auto").mode == "bwrap"


def test_the_interpreter_path_is_resolved() -> None:
    assert resolve_python("/usr/bin/../bin/python3") == "/usr/bin/python3"
    assert resolve_python("python3") == os.path.join(os.path.realpath(os.getcwd()), "python3")


@pytest.mark.skipif(not BWRAP, reason="bubblewrap does not work here")
def test_a_symlinked_environment_keeps_bubblewrap(tmp_path: Path) -> None:
    """Finding 4: started from a symlinked venv, the sandbox fell back to rlimits (the
    unresolved interpreter path did not exist inside it) and blamed bubblewrap."""
    link = tmp_path / "env-link"
    link.symlink_to(Path(sys.prefix))
    python = link / "bin" / Path(sys.executable).name
    assert python.exists()
    probe = ("from qwen_ci_server.sandbox import detect_isolation; "
             "i = detect_isolation('auto'); print(i.mode, '|', i.reason)")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          timeout=180, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bwrap |"), done.stdout


SOCKETS = r"""
import socket, time
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(64)
pairs, sent = [], 0
for _ in range(32):
    client = socket.socket()
    client.connect(server.getsockname())
    peer, _ = server.accept()
    client.setblocking(False)
    pairs.append((client, peer))
    idle = 0
    while idle < 20:
        try:
            sent += client.send(b"x" * 65536)
            idle = 0
        except BlockingIOError:
            idle += 1
            time.sleep(0.005)
        except OSError:
            break
print(sent >> 20)
"""


@pytest.mark.skipif(not cgroup_support().sockets.startswith(("bounded", "counted")),
                    reason="socket buffers cannot be bounded here (said at start)")
async def test_socket_buffers_on_the_sandbox_loopback_are_bounded() -> None:
    """Finding 3: TCP buffers on the sandbox's loopback were not charged to its cgroup (v1):
    code held about 1 GiB of host memory with --memory-mb 256. Never read, every
    connection's buffers fill; what they hold in all stays within the budget."""
    limits = Limits(timeout=60, memory=256 << 20)
    async with KernelPool(size=0, limits=limits) as pool, pool.session() as session:
        result = await session.run(SOCKETS)
    assert result.ok, result.error
    held_mib = int(result.stdout.strip())
    assert held_mib <= (socket_budget(limits) >> 20) + 4 + (limits.memory >> 20) * (
        cgroup_support().version == 2)


async def test_health_says_what_the_host_bounds() -> None:
    async with KernelPool(size=0, limits=Limits(timeout=5)) as pool:
        said = pool.guarantees()
    support = cgroup_support()
    assert said["socket_memory"] == support.sockets
    assert said["resources"] is not None and support.reason in said["resources"]
    assert said["isolation"] in ("bwrap", "rlimits") and said["isolation_reason"]


CLAIM = ("import sys; from qwen_ci_server.sandbox.isolation import uid_range; "
         "r = uid_range(); print(r.start, r.stop, flush=True); sys.stdin.read()")


def test_two_servers_never_share_a_sandbox_uid() -> None:
    """Finding 7: uids came from the pid (``200000 + (97*pid + n) % 60000``): two servers
    could hand out the same uid, and RLIMIT_NPROC is per uid across the host."""
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        ranges = []
        for proc in procs:
            assert proc.stdout is not None
            start, stop = map(int, proc.stdout.readline().split())
            ranges.append(range(start, stop))
    finally:
        for proc in procs:
            proc.communicate(timeout=30)
    for i, first in enumerate(ranges):
        assert len(first) >= 128
        for second in ranges[i + 1:]:
            assert first.stop <= second.start or second.stop <= first.start, (first, second)


FDS = r"""
import os
found = []
for fd in os.listdir("/proc/self/fd"):
    try:
        found.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
print("|".join(found))
"""


async def test_the_kernel_log_is_no_host_file_the_code_can_fill() -> None:
    """Finding 9: the kernel's stdout and stderr went to ``kernel.log`` on the host's
    ``/tmp``, which the code could fill (64 MiB per kernel, outside the budgets). They go to
    a pipe the server drains now, keeping a capped tail for error messages."""
    async with KernelPool(size=0, limits=Limits(timeout=10)) as pool, pool.session() as session:
        result = await session.run(FDS)
        assert session.kernel is not None
        base = session.kernel._dir
        assert base is not None
        files = [name for _, _, names in os.walk(base) for name in names]
    assert result.ok, result.error
    assert "kernel.log" not in result.stdout
    assert "kernel.log" not in files


def test_the_warning_names_the_real_cause() -> None:
    """Finding 4: with bubblewrap installed but the sandboxed Python failing, the warning
    still said "Install bubblewrap"."""
    from qwen_ci_server.sandbox import Isolation

    failing = Isolation("rlimits", "the sandboxed Python does not start: bwrap: execvp x")
    assert failing.warning is not None
    assert "execvp x" in failing.warning and "Install bubblewrap" not in failing.warning
    missing = Isolation("rlimits", "bwrap is not installed")
    assert missing.warning is not None and "apt-get install bubblewrap" in missing.warning
    assert "--isolation none" in (failing.refusal("qwen-ci emulator") or "")
