"""A cgroup per sandbox: one memory, process and CPU budget for everything a request runs.

Resource limits per process (``RLIMIT_AS``) let a request multiply its memory by forking,
and the private tmpfs mounts come out of RAM too. A control group counts all of it: every
process of the sandbox and the pages of its tmpfs mounts, so ``Limits.memory`` is the
budget of the whole request. The group also caps the processes (``pids``) and the CPU
(``cpu`` quota), is frozen while the model thinks (``freezer``), and kills every process
of the sandbox at the end, even daemons that left its process tree.

cgroup v1 (one hierarchy per controller, as on the machines this project is tested on)
and cgroup v2 (the unified hierarchy; the server's own group must be delegated to its
user, as systemd does with ``Delegate=yes``) are both supported. The groups are created
under the server's own group, so the host's limits on the server still apply. Where no
group can be created (no write access, controllers missing), :func:`cgroup_support`
says why and the sandbox falls back to per-process rlimits (see ``docs/SECURITY.md``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Literal

from qwen_ci_server.sandbox.limits import Limits
from qwen_ci_server.sandbox.reaper import reap_stale, start_watchdog

Version = Literal[1, 2]
_V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
_REQUIRED = ("memory", "pids")
_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Whether sandboxes get a cgroup here, and why (not).

    ``parents`` maps each controller (v1) or ``""`` (v2) to the directory under which the
    sandboxes' groups are created.

    Example:
        >>> CgroupSupport(None, "no cgroup filesystem").available
        False
    """

    version: Version | None
    reason: str
    parents: dict[str, str] = field(default_factory=dict)
    sockets: str = "not bounded: no cgroup"
    """How the sandbox's socket buffers (TCP on its loopback) are bounded."""

    @property
    def available(self) -> bool:
        """True when each sandbox gets its own group."""
        return self.version is not None


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, type, options) of every cgroup mount, from mountinfo."""
    found: list[tuple[str, str, str, set[str]]] = []
    for line in _lines("/proc/self/mountinfo"):
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        options = set(rest[2].split(",")) | set(fields[5].split(",") if len(fields) > 5 else [])
        found.append((fields[3], fields[4].replace("\\040", " "), rest[0], options))
    return found


def _own_groups() -> dict[str, str]:
    """Controller (or ``""`` for v2) -> this process's group path, from /proc/self/cgroup."""
    groups: dict[str, str] = {}
    for line in _lines("/proc/self/cgroup"):
        _, controllers, path = line.split(":", 2)
        if not controllers:
            groups[""] = path
        for name in controllers.split(","):
            groups[name] = path
    return groups


def _under(mount: str, root: str, path: str) -> str:
    """The directory of group ``path`` in a hierarchy mounted at ``mount`` from ``root``."""
    relative = path
    if root != "/" and (path == root or path.startswith(root + "/")):
        relative = path[len(root):]
    return os.path.join(mount, relative.lstrip("/"))


def _prepare(directory: str) -> str:
    """This server's parent group under ``directory`` (created, writable) or raise OSError."""
    parent = os.path.join(directory, f"qwen-ci-{os.getpid()}")
    os.makedirs(parent, exist_ok=True)
    probe = os.path.join(parent, f"probe-{secrets.token_hex(4)}")
    os.mkdir(probe)
    os.rmdir(probe)
    return parent


def _detect_v1(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str]) -> CgroupSupport:
    parents: dict[str, str] = {}
    missing: list[str] = []
    bases: dict[str, str] = {}
    for controller in _V1_CONTROLLERS:
        mount = next((m for m in mounts if m[2] == "cgroup" and controller in m[3]), None)
        if mount is not None:
            bases[controller] = _under(mount[1], mount[0], own.get(controller, "/"))
    reap_stale(bases.values())  # what dead servers left, before anything new
    for controller in _V1_CONTROLLERS:
        if controller not in bases:
            missing.append(controller)
            continue
        try:
            parents[controller] = _prepare(bases[controller])
        except OSError as exc:
            if controller in _REQUIRED:
                return CgroupSupport(None, f"cannot create a cgroup for the sandboxes ({exc})")
            missing.append(controller)
    absent = [c for c in _REQUIRED if c not in parents]
    if absent:
        return CgroupSupport(None, f"the {' and '.join(absent)} cgroup controller is not mounted")
    note = f" (without {', '.join(missing)})" if missing else ""
    return CgroupSupport(1, f"cgroup v1{note}", parents, _probe_tcp(parents["memory"]))


TCP_FILE = "memory.kmem.tcp.limit_in_bytes"


def socket_budget(limits: Limits) -> int:
    """Bytes of TCP socket buffers a sandbox may hold (cgroup v1: its own counter, apart
    from ``Limits.memory``): a quarter of the memory budget, at least 16 MiB."""
    return max(16 << 20, limits.memory // 4)


def _probe_tcp(parent: str) -> str:
    """Whether cgroup v1 can bound a group's TCP buffers here (kmem.tcp accounting)."""
    probe = os.path.join(parent, f"probe-{secrets.token_hex(4)}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        return f"not bounded: {exc}"
    try:
        _write(os.path.join(probe, TCP_FILE), str(16 << 20))
        return "bounded: memory.kmem.tcp.limit_in_bytes"
    except OSError as exc:
        return f"not bounded: cgroup v1 without TCP accounting ({exc.strerror or exc})"
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _detect_v2(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str]) -> CgroupSupport:
    mount = next((m for m in mounts if m[2] == "cgroup2"), None)
    if mount is None:
        return CgroupSupport(None, "no cgroup filesystem is mounted")
    base = _under(mount[1], mount[0], own.get("", "/"))
    try:
        available = set(_read(os.path.join(base, "cgroup.controllers")).split())
    except OSError as exc:
        return CgroupSupport(None, f"cgroup v2 is not readable ({exc})")
    absent = [c for c in _REQUIRED if c not in available]
    if absent:
        return CgroupSupport(None, f"cgroup v2 does not delegate {' and '.join(absent)} here")
    wanted = [c for c in ("memory", "pids", "cpu") if c in available]
    reap_stale([base])  # what dead servers left, before anything new
    try:
        enabled = set(_read(os.path.join(base, "cgroup.subtree_control")).split())
        if not set(wanted) <= enabled:
            # no process may stay in a group that hands controllers to its children:
            # the server moves itself into a leaf first (as systemd's Delegate=yes expects)
            leaf = os.path.join(base, "qwen-ci-server")
            os.makedirs(leaf, exist_ok=True)
            for pid in _read(os.path.join(base, "cgroup.procs")).split():
                with contextlib.suppress(OSError):
                    _write(os.path.join(leaf, "cgroup.procs"), pid)
            _write(os.path.join(base, "cgroup.subtree_control"),
                   " ".join(f"+{c}" for c in wanted))
        parent = _prepare(base)
        _write(os.path.join(parent, "cgroup.subtree_control"), " ".join(f"+{c}" for c in wanted))
    except OSError as exc:
        return CgroupSupport(None, f"cannot create a cgroup v2 group for the sandboxes ({exc})")
    return CgroupSupport(2, "cgroup v2", {"": parent},
                         "counted: cgroup v2 charges socket buffers to memory.max")


@functools.cache
def cgroup_support() -> CgroupSupport:
    """Detect (once) whether each sandbox can get its own cgroup here."""
    if os.environ.get("QWEN_CI_NO_CGROUP"):
        found = CgroupSupport(None, "disabled by QWEN_CI_NO_CGROUP")
        reap_stale([])
    else:
        mounts = _mounts()
        own = _own_groups()
        if any(m[2] == "cgroup" and "memory" in m[3] for m in mounts):
            found = _detect_v1(mounts, own)
        else:
            found = _detect_v2(mounts, own)
    # this server's parent groups go when it exits (rmdir: only once they are empty), and
    # whatever it leaves when it dies is reaped by its watchdog
    atexit.register(_remove_dirs, list(found.parents.values()))
    start_watchdog(found.parents.values())
    return found


def _remove_dirs(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.rmdir(path)


class Cgroup:
    """The cgroup of one sandbox: limits, freeze and thaw, kill everything, remove.

    Example:
        >>> from qwen_ci_server.sandbox import Limits
        >>> from qwen_ci_server.sandbox.cgroups import Cgroup, cgroup_support
        >>> support = cgroup_support()
        >>> if support.available:  # doctest: +SKIP
        ...     group = Cgroup.create(support, Limits(memory=256 << 20))
        ...     group.remove()
    """

    def __init__(self, version: Version, dirs: dict[str, str], tcp: bool = False) -> None:
        self.version = version
        self.dirs = dirs
        self._tcp = tcp
        self._frozen = False

    @classmethod
    def create(cls, support: CgroupSupport, limits: Limits) -> Cgroup:
        """A new group with ``limits`` applied (raises OSError when that fails)."""
        if support.version is None:
            raise OSError(support.reason)
        name = f"k{next(_counter)}-{secrets.token_hex(3)}"
        dirs = {key: os.path.join(parent, name) for key, parent in support.parents.items()}
        group = cls(support.version, dirs, support.sockets.startswith("bounded"))
        try:
            for path in dirs.values():
                os.mkdir(path)
            group._limit(limits)
        except OSError:
            group.remove()
            raise
        return group

    def _file(self, controller: str, name: str) -> str:
        return os.path.join(self.dirs["" if self.version == 2 else controller], name)

    def _limit(self, limits: Limits) -> None:
        quota = int(limits.cpus * 100_000)
        if self.version == 1:
            _write(self._file("memory", "memory.limit_in_bytes"), str(limits.memory))
            swap = self._file("memory", "memory.memsw.limit_in_bytes")
            if os.path.exists(swap):
                _write(swap, str(limits.memory))
            _write(self._file("pids", "pids.max"), str(limits.processes))
            if self._tcp:  # socket buffers are not charged to memory.limit_in_bytes in v1
                _write(self._file("memory", TCP_FILE), str(socket_budget(limits)))
            if "cpu" in self.dirs:
                _write(self._file("cpu", "cpu.cfs_period_us"), "100000")
                _write(self._file("cpu", "cpu.cfs_quota_us"), str(quota))
            return
        _write(self._file("", "memory.max"), str(limits.memory))
        with contextlib.suppress(OSError):
            _write(self._file("", "memory.swap.max"), "0")
        _write(self._file("", "pids.max"), str(limits.processes))
        with contextlib.suppress(OSError):
            _write(self._file("", "cpu.max"), f"{quota} 100000")

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process writes its pid to, to join."""
        return [os.path.join(path, "cgroup.procs") for path in self.dirs.values()]

    def pids(self) -> set[int]:
        """Every process in the group."""
        path = self._file("memory", "cgroup.procs")
        try:
            return {int(pid) for pid in _read(path).split()}
        except OSError:
            return set()

    @property
    def can_freeze(self) -> bool:
        """True when the group can be frozen (v2, or v1 with the freezer controller)."""
        return self.version == 2 or "freezer" in self.dirs

    def _set_frozen(self, frozen: bool) -> None:
        with contextlib.suppress(OSError):
            if self.version == 1:
                _write(self._file("freezer", "freezer.state"), "FROZEN" if frozen else "THAWED")
            else:
                _write(self._file("", "cgroup.freeze"), "1" if frozen else "0")
            self._frozen = frozen

    def freeze(self) -> None:
        """Stop every process of the sandbox (no CPU, no output) until :meth:`thaw`."""
        if self.can_freeze and not self._frozen:
            self._set_frozen(True)

    def thaw(self) -> None:
        """Let the processes run again."""
        if self._frozen:
            self._set_frozen(False)

    @property
    def frozen(self) -> bool:
        """True once :meth:`freeze` took effect (as the kernel reports it)."""
        try:
            if self.version == 1:
                return _read(self._file("freezer", "freezer.state")).strip() == "FROZEN"
            return "frozen 1" in _read(self._file("", "cgroup.events"))
        except (OSError, KeyError):
            return False

    def memory_peak(self) -> int | None:
        """The most memory the group used (bytes), when the kernel tracks it."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int(_read(self._file("memory", name)))
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """Processes of the group killed for exceeding its memory."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = _read(self._file("memory", name))
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def kill(self, within: float = 5.0) -> None:
        """SIGKILL every process of the group, also those that left the process tree."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self._file("", "cgroup.kill"), "1")
        deadline = time.monotonic() + within
        while True:
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self.thaw()  # v1 delivers the kill only to thawed tasks
            if not pids or time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and delete the group's directories (idempotent)."""
        if any(os.path.isdir(path) for path in self.dirs.values()):
            self.kill()
        for path in self.dirs.values():
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


__all__ = ["Cgroup", "CgroupSupport", "cgroup_support"]
