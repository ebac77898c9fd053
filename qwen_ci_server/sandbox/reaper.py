"""Nothing outlives its server: owner locks, the watchdog, and the reap at start.

A server that dies without cleaning up (SIGKILL, the OOM killer) would leave its
sandboxes behind: frozen between runs (a frozen process never sees its death signal),
with their cgroups and run directories. Two mechanisms prevent it:

- **The watchdog**: each server process starts one small process
  (``python -m qwen_ci_server.sandbox.reaper``) that waits for the end of a pipe the
  server holds. When the server dies, for whatever reason, the pipe closes and the
  watchdog thaws and kills every process of the server's groups, removes the groups and
  the server's run directories, and exits. It ignores SIGINT and SIGTERM (it ends with
  its server, not before).
- **The reap at start**: a server starting finds what dead servers left (their owner
  lock is free, or no lock and no process) and removes it the same way, logging it.

The owner of a group or run directory is the server whose pid is in its name
(``qwen-ci-<pid>`` groups, ``qwen-ci-sandbox-<pid>-*`` run directories); a live server
holds an exclusive ``flock`` on ``qwen-ci-owner-<pid>.lock`` in the temporary
directory, so a reused pid is not mistaken for the dead server.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger("qwen_ci_server.sandbox")

RUN_DIR_PREFIX = "qwen-ci-sandbox-"
GROUP_PREFIX = "qwen-ci-"
_RUN_DIR = re.compile(rf"^{RUN_DIR_PREFIX}(\d+)-")
_LOCKS: dict[int, int] = {}


def run_dir_prefix() -> str:
    """The prefix of this server's run directories (``tempfile.mkdtemp(prefix=...)``)."""
    return f"{RUN_DIR_PREFIX}{os.getpid()}-"


def _lock_path(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"qwen-ci-owner-{pid}.lock")


def claim() -> None:
    """Hold this process's owner lock (idempotent; released when the process ends)."""
    pid = os.getpid()
    if pid in _LOCKS:
        return
    path = _lock_path(pid)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    _LOCKS[pid] = fd
    atexit.register(_release, pid, path)


def _release(pid: int, path: str) -> None:
    """At a clean exit, remove this process's lock file (a killed server's is removed by
    the next start's reaping); never in a forked child, which does not own it."""
    if os.getpid() != pid:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    fd = _LOCKS.pop(pid, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def owner_alive(pid: int) -> bool:
    """True while the server ``pid`` runs (its owner lock is held, or, without a lock
    file, a process ``pid`` exists)."""
    if pid == os.getpid():
        return True
    path = _lock_path(pid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.path.exists(f"/proc/{pid}")
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held: the owner lives
    finally:
        os.close(fd)
    return False


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _pids(group: str) -> set[int]:
    return {int(p) for p in _read(os.path.join(group, "cgroup.procs")).split() if p.isdigit()}


def _rmdir(path: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


@dataclass
class Reaped:
    """What a reap removed."""

    processes: int = 0
    groups: int = 0
    run_dirs: int = 0

    def __bool__(self) -> bool:
        return bool(self.processes or self.groups or self.run_dirs)

    def add(self, other: Reaped) -> None:
        self.processes += other.processes
        self.groups += other.groups
        self.run_dirs += other.run_dirs


def reap_parents(parents: Iterable[str], within: float = 10.0) -> Reaped:
    """Thaw and kill every process in the groups under ``parents`` (one server's parent
    group per controller), then remove those groups and the parents."""
    parents = [p for p in parents if os.path.isdir(p)]
    done = Reaped()
    children: dict[str, list[str]] = {}
    for parent in parents:
        with contextlib.suppress(OSError):
            for name in os.listdir(parent):
                path = os.path.join(parent, name)
                if os.path.isdir(path):
                    children.setdefault(name, []).append(path)
    killed: set[int] = set()
    deadline = time.monotonic() + within
    for paths in children.values():
        while True:
            pids: set[int] = set()
            for path in paths:
                pids |= _pids(path)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed |= pids
            for path in paths:
                # a frozen task gets its SIGKILL only once thawed (v1 and v2)
                if os.path.exists(os.path.join(path, "freezer.state")):
                    _write(os.path.join(path, "freezer.state"), "THAWED")
                if os.path.exists(os.path.join(path, "cgroup.freeze")):
                    _write(os.path.join(path, "cgroup.freeze"), "0")
                if os.path.exists(os.path.join(path, "cgroup.kill")):
                    _write(os.path.join(path, "cgroup.kill"), "1")
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for path in paths:
            if _rmdir(path, max(0.5, deadline - time.monotonic())):
                done.groups += 1
    for parent in parents:
        _rmdir(parent, 0.5)
    done.processes = len(killed)
    return done


def reap_run_dirs(owner: int | None = None) -> Reaped:
    """Remove the run directories of server ``owner`` (None: of every dead server)."""
    done = Reaped()
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            match = _RUN_DIR.match(name)
            if match is None:
                continue
            pid = int(match.group(1))
            if (owner is None and owner_alive(pid)) or (owner is not None and pid != owner):
                continue
            path = os.path.join(base, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                done.run_dirs += 1
    if owner is None:
        with contextlib.suppress(OSError):
            for name in os.listdir(base):
                lock = re.match(r"^qwen-ci-owner-(\d+)\.lock$", name)
                if lock and not owner_alive(int(lock.group(1))):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(base, name))
    return done


def stale_parents(directory: str) -> dict[int, str]:
    """Dead servers' parent groups under ``directory``: owner pid -> path."""
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            pid = entry.removeprefix(GROUP_PREFIX)
            if entry == pid or not pid.isdigit():
                continue
            if not owner_alive(int(pid)) and os.path.isdir(os.path.join(directory, entry)):
                found[int(pid)] = os.path.join(directory, entry)
    return found


def reap_stale(directories: Iterable[str]) -> Reaped:
    """Reap what dead servers left under ``directories`` (the hierarchies' folders where
    servers create their parent groups) and in the temporary directory; logged."""
    by_owner: dict[int, list[str]] = {}
    for directory in directories:
        for pid, path in stale_parents(directory).items():
            by_owner.setdefault(pid, []).append(path)
    total = Reaped()
    for parents in by_owner.values():
        total.add(reap_parents(parents))
    total.add(reap_run_dirs(None))
    if total:
        logger.warning(
            "qwen-ci sandbox: reaped what a dead server left (servers %s): %d processes "
            "killed, %d cgroups and %d run directories removed.",
            ", ".join(map(str, sorted(by_owner))) or "-", total.processes, total.groups,
            total.run_dirs)
    return total


_watchdog: int | None = None


def start_watchdog(parents: Iterable[str]) -> int | None:
    """Start this server's watchdog (once per process; its pid): when this process ends,
    however it ends, the watchdog reaps its groups under ``parents`` and its run
    directories. It runs in a session of its own, not as a child of the server."""
    global _watchdog
    if _watchdog is not None and watchdog_pid() is not None:
        return _watchdog
    claim()
    spec = json.dumps({"owner": os.getpid(), "parents": list(parents)})
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": package_root}
    read, write = os.pipe()
    try:
        starter = subprocess.Popen(
            [sys.executable, "-m", "qwen_ci_server.sandbox.reaper", spec],
            stdin=read, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
        )
        os.close(read)
        assert starter.stdout is not None
        line = starter.stdout.readline()
        starter.wait(30)
        _watchdog = int(line)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        os.close(write)
        logger.warning("qwen-ci sandbox: the watchdog could not start (%s): a server killed "
                       "with SIGKILL leaves its sandboxes until the next start.", exc)
        return None
    _PIPES.append(write)  # held until this process ends: then the watchdog reaps
    return _watchdog


_PIPES: list[int] = []


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog, while it runs."""
    if _watchdog is None:
        return None
    try:
        os.kill(_watchdog, 0)
    except OSError:
        return None
    return _watchdog


def main() -> None:
    """The watchdog: detach (a session of its own, not the server's child), wait until
    the owner's pipe closes, then reap the owner's sandboxes."""
    spec = json.loads(sys.argv[1])
    child = os.fork()
    if child:
        print(child, flush=True)
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    reap_parents(spec["parents"])
    reap_run_dirs(int(spec["owner"]))
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(int(spec["owner"])))


if __name__ == "__main__":
    main()
