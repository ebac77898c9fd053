"""How a kernel is isolated: bubblewrap when it works, rlimits only otherwise.

With bubblewrap the kernel runs with no network (its own network namespace: Jupyter
talks to it over unix sockets), its own PID namespace (killing the sandbox kills every
process in it), a read-only view of ``/usr``, of the Python installation and of the few
``/etc`` files Python needs (generated ``passwd``, ``group`` and ``hosts``), private
size-limited ``/workspace`` (the working directory and ``HOME``), ``/tmp`` and
``/dev/shm``, a clean environment, a seccomp filter (no new namespaces, only unix and IP
sockets, see :mod:`qwen_ci_server.sandbox.seccomp`) and no capabilities, not even in its
bounding set; when the server runs as root the kernel runs as an unprivileged user id of
its own, with no supplementary groups. In every mode a small launcher applies the rlimits
(memory, CPU, open files, file size, processes) before the kernel starts; a cgroup per
sandbox (:mod:`qwen_ci_server.sandbox.cgroups`) bounds the whole sandbox where one can be made.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from qwen_ci_server.sandbox.limits import Limits
from qwen_ci_server.sandbox.seccomp import filter_fd, filter_program

logger = logging.getLogger("qwen_ci_server.sandbox")

Mode = Literal["bwrap", "rlimits"]
IsolationChoice = Literal["auto", "bwrap", "none"]

WORKSPACE = "/workspace"
"""Working directory and ``HOME`` of the code under bubblewrap."""

LAUNCHER = """\
import ctypes, json, os, resource, sys
spec = json.loads(sys.argv[1])
for name, (soft, hard) in spec["rlimits"].items():
    kind = getattr(resource, name)
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))
libc = ctypes.CDLL(None, use_errno=True)
if spec.get("pdeathsig"):
    libc.prctl(1, 9, 0, 0, 0)
for cap in range(64):
    libc.prctl(24, cap, 0, 0, 0)
uid = spec.get("uid")
if uid is not None and os.getuid() == 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.execv(sys.argv[2], sys.argv[2:])
"""
"""Runs in the sandbox (``python -I -S -c``): applies the rlimits, empties the capability
bounding set (``PR_CAPBSET_DROP``), drops root with no groups, and execs the kernel.
Without bubblewrap it also asks for SIGKILL when the server dies (``PR_SET_PDEATHSIG``)."""

_UID_BASE = 200_000
_UID_SPAN = 60_000
UID_BLOCK = 1_000
"""Sandbox uids one server owns: it takes a block of its own (an exclusive lock per
block), so two servers on one host never hand out the same uid (``RLIMIT_NPROC`` is
counted per uid across the host)."""
_UID_LOCKS = "/run/qwen-ci-uids"
_uid_block: tuple[int, int] | None = None  # (first uid, lock fd)
_uid_counter = 0


def _uid_lock_dir() -> str:
    """Where the block locks live: root-only, so no other user can take the blocks."""
    for path in (_UID_LOCKS, os.path.join(tempfile.gettempdir(), "qwen-ci-uids")):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            return path
    raise RuntimeError("no directory for the sandbox uid locks (/run or the temporary "
                       "directory must be writable by root)")


def uid_range() -> range:
    """The sandbox uids of this server (a block claimed on first use, held until exit)."""
    global _uid_block
    if _uid_block is None or _uid_block[0] < 0:
        directory = _uid_lock_dir()
        blocks = _UID_SPAN // UID_BLOCK
        start = os.getpid() % blocks
        for step in range(blocks):
            block = (start + step) % blocks
            fd = os.open(os.path.join(directory, f"block-{block}.lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            _uid_block = (_UID_BASE + block * UID_BLOCK, fd)
            break
        else:
            raise RuntimeError(f"all {blocks} blocks of sandbox uids are taken by other "
                               "servers on this host")
    first = _uid_block[0]
    return range(first, first + UID_BLOCK)


def _next_uid() -> int:
    """A fresh unprivileged uid per kernel, from this server's own block: separate
    process counts, no shared files, never another server's."""
    global _uid_counter
    uids = uid_range()
    _uid_counter += 1
    return uids[_uid_counter % len(uids)]


@dataclass(frozen=True, slots=True)
class Isolation:
    """The isolation mode in effect, and why.

    Example:
        >>> from qwen_ci_server.sandbox import detect_isolation
        >>> detect_isolation("none").mode
        'rlimits'
    """

    mode: Mode
    reason: str
    bwrap: str | None = None
    supports_size: bool = False
    """This bubblewrap knows ``--size`` (0.7+): the private tmpfs mounts get a quota."""
    seccomp: bool = False
    """The seccomp filter is applied (x86-64 with bubblewrap)."""
    explicit: bool = False
    """rlimits only because ``isolation='none'`` was asked for (not because bubblewrap
    failed)."""

    @property
    def warning(self) -> str | None:
        """The start-up warning for rlimits-only mode."""
        if self.mode == "bwrap":
            return None
        fix = ("Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)."
               if "not installed" in self.reason else
               "See docs/SECURITY.md ('Why bubblewrap fails')." if not self.explicit else "")
        text = (
            f"qwen-ci sandbox: bubblewrap isolation is not in effect ({self.reason}); code "
            "runs with rlimits only: it can use the network, read and write files as "
            "your user and read the server's memory and environment (its keys). " + fix
        ).rstrip()
        if os.geteuid() == 0:
            text += " Running as root, the process limit (fork bombs) does not apply either."
        return text

    def refusal(self, what: str) -> str | None:
        """Why ``what`` (a server) must not start with this isolation, or None.

        Fail closed: a server that runs other people's code starts only with working
        bubblewrap, unless ``isolation='none'`` was given explicitly.
        """
        if self.mode == "bwrap" or self.explicit:
            return None
        return (
            f"{what} refuses to start: the sandbox would not be isolated because "
            f"{self.reason}. Code would run as this server's user and could read its keys. "
            "Fix bubblewrap (see docs/SECURITY.md: 'Why bubblewrap fails'), or pass "
            "--isolation none to run unisolated code on purpose."
        )


def _probe(bwrap: str) -> str | None:
    """Run a tiny sandbox; return the reason it fails, or None when it works."""
    args = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    if os.geteuid() != 0:
        args.append("--unshare-user")
    try:
        done = subprocess.run(
            [*args, "true"], capture_output=True, timeout=20, check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        return f"{bwrap} cannot create a sandbox here: {message}"
    return None


@functools.cache
def _detect_bwrap() -> Isolation:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation("rlimits", "bwrap is not installed")
    failure = _probe(bwrap)
    if failure is not None:
        return Isolation("rlimits", failure)
    try:
        usage = subprocess.run(
            [bwrap, "--help"], capture_output=True, timeout=10, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        usage = ""
    found = Isolation("bwrap", "bubblewrap works", bwrap, supports_size="--size" in usage,
                      seccomp=filter_program() is not None)
    failure = _probe_python(found)
    if failure is not None:
        return Isolation("rlimits", failure)
    return found


def _probe_python(isolation: Isolation) -> str | None:
    """Start the sandbox exactly as for a kernel, importing zmq instead of serving."""
    program = filter_program() if isolation.seccomp else None
    fd = filter_fd(program) if program is not None else None
    try:
        with tempfile.TemporaryDirectory(prefix="qwen-ci-probe-") as run_dir:
            os.chmod(run_dir, 0o755)
            write_etc(run_dir, os.getuid())
            command = kernel_command(isolation, Limits(), connection_file="unused",
                                     run_dir=run_dir, work_dir=run_dir, etc_dir=run_dir,
                                     seccomp_fd=fd)
            argv = [*command.argv[:-4], "-c", "import zmq"]
            try:
                done = subprocess.run(argv, capture_output=True, timeout=60, check=False,
                                      stdin=subprocess.DEVNULL, env=command.env,
                                      cwd=command.cwd, pass_fds=command.pass_fds)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"the sandboxed Python could not run: {exc}"
    finally:
        if fd is not None:
            os.close(fd)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-500:]
        return f"the sandboxed Python does not start: {message or done.returncode}"
    return None


def detect_isolation(choice: IsolationChoice | str = "auto") -> Isolation:
    """Pick the isolation: ``auto`` (bubblewrap if it works), ``bwrap`` (required), ``none``.

    Raises ``RuntimeError`` when ``bwrap`` is required and does not work.
    """
    if choice == "none":
        return Isolation("rlimits", "isolation disabled (isolation='none')", explicit=True)
    if choice not in ("auto", "bwrap"):
        raise ValueError(f"isolation={choice!r}; use 'auto', 'bwrap' or 'none'.")
    found = _detect_bwrap()
    if choice == "bwrap" and found.mode != "bwrap":
        raise RuntimeError(f"bubblewrap isolation was required but {found.reason}.")
    return found


def python_roots() -> list[str]:
    """Directories the kernel's Python needs: installation, environment, site-packages."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
    }
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            candidates.add(path)
    for module in ("ipykernel", "jupyter_client", "zmq", "IPython"):
        spec_origin = _module_root(module)
        if spec_origin:
            candidates.add(spec_origin)
    return _minimal(p for p in candidates if p and os.path.isdir(p))


def _module_root(module: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None
    # .../site-packages/ipykernel/__init__.py -> .../site-packages
    return os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))


_SYSTEM = ("/usr",)
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf",
    "host.conf", "gai.conf", "os-release", "mime.types", "alternatives", "debian_version",
)
"""The host ``/etc`` entries the sandbox sees (read-only), besides the generated
``passwd``, ``group`` and ``hosts`` and Debian's ``/etc/python3*``: nothing secret, no
service configuration."""
GENERATED_ETC = ("passwd", "group", "hosts")


def write_etc(directory: str, uid: int) -> None:
    """The sandbox's ``passwd``, ``group`` and ``hosts``, written into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    files = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                  f"sandbox:x:{uid}:{uid}:sandbox:{WORKSPACE}:/usr/sbin/nologin\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost\n",
    }
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)


def _etc_entries() -> list[str]:
    names = [n for n in ETC_FILES if os.path.lexists(os.path.join("/etc", n))]
    with contextlib.suppress(OSError):
        names += sorted(n for n in os.listdir("/etc") if n.startswith("python3"))
    return [os.path.join("/etc", n) for n in names]
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _minimal(paths: Iterable[str]) -> list[str]:
    """Real paths, without those inside another one or inside the system binds."""
    real = sorted({os.path.realpath(p) for p in paths})
    kept: list[str] = []
    for path in real:
        covered = [*kept, *_SYSTEM]
        if any(path == root or path.startswith(root.rstrip("/") + "/") for root in covered):
            continue
        kept.append(path)
    return kept


def _ancestors(path: str) -> list[str]:
    parts = PurePosixPath(path).parents
    return [str(p) for p in reversed(parts) if str(p) != "/"]


class _Binds:
    """bwrap arguments for binds, creating missing parents as 0755 directories."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._made: set[str] = {"/"}

    def _parents(self, dest: str) -> None:
        for parent in _ancestors(dest):
            if parent not in self._made:
                self.args += ["--perms", "0755", "--dir", parent]
                self._made.add(parent)

    def add(self, flag: str, source: str, dest: str) -> None:
        self._parents(dest)
        self.args += [flag, source, dest]
        self._made.add(dest)

    def mount(self, *args: str) -> None:
        """A mount that creates its own directory (``--tmpfs``, ``--proc``, ...)."""
        self._parents(args[-1])
        self.args += list(args)
        self._made.add(args[-1])


def sandbox_env(home: str, extra_path: str = "") -> dict[str, str]:
    """The kernel's whole environment (nothing is inherited from the emulator)."""
    path = ":".join(p for p in (extra_path, "/usr/local/bin", "/usr/bin", "/bin") if p)
    return {
        "PATH": path,
        "HOME": home,
        "TMPDIR": "/tmp" if home == WORKSPACE else home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib" if home == WORKSPACE else f"{home}/.matplotlib",
        "IPYTHONDIR": f"{home}/.ipython",
        "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter",
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "TERM": "dumb",
    }


def rlimits(limits: Limits, *, count_existing: bool) -> dict[str, tuple[int, int]]:
    """``RLIMIT_*`` name -> (soft, hard) for the launcher.

    Without a user namespace the process limit counts every process of the user, so
    ``count_existing`` raises it by the number of threads the user already runs.
    """
    processes = limits.processes
    if count_existing:
        processes += _tasks_of(os.getuid())
    return {
        "RLIMIT_AS": (limits.memory, limits.memory),
        "RLIMIT_CPU": (limits.cpu, limits.cpu + 5),
        "RLIMIT_NOFILE": (limits.open_files, limits.open_files),
        "RLIMIT_FSIZE": (limits.file_size, limits.file_size),
        "RLIMIT_NPROC": (processes, processes),
        "RLIMIT_CORE": (0, 0),
    }


def _tasks_of(uid: int) -> int:
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return count


JOIN_CGROUP = (
    'p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 125; shift; done; '
    'shift; exec "$@"'
)
"""``sh -c`` script: write its own pid to each ``cgroup.procs`` given, then exec the rest."""


def in_cgroup(procs_files: Sequence[str], argv: list[str]) -> list[str]:
    """``argv`` started inside a cgroup: a shell joins it, then execs ``argv``.

    Example:
        >>> in_cgroup(["/cg/cgroup.procs"], ["bwrap", "true"])[-4:]
        ['/cg/cgroup.procs', '--', 'bwrap', 'true']
    """
    if not procs_files:
        return argv
    return ["/bin/sh", "-c", JOIN_CGROUP, "sh", *procs_files, "--", *argv]


@dataclass(frozen=True, slots=True)
class KernelCommand:
    """How to start one kernel: argv, environment, working directory, sandbox uid, and the
    file descriptors the child must inherit (the seccomp filter).

    Example:
        >>> from qwen_ci_server.sandbox import Limits, detect_isolation
        >>> from qwen_ci_server.sandbox.isolation import kernel_command
        >>> command = kernel_command(detect_isolation("none"), Limits(),
        ...                          connection_file="/tmp/k.json", run_dir="/tmp",
        ...                          work_dir="/tmp")
        >>> command.argv[-4:]
        ['-m', 'ipykernel_launcher', '-f', '/tmp/k.json']
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int | None
    pass_fds: tuple[int, ...] = ()


def kernel_command(
    isolation: Isolation,
    limits: Limits,
    *,
    connection_file: str,
    run_dir: str,
    work_dir: str,
    python: str | None = None,
    etc_dir: str | None = None,
    seccomp_fd: int | None = None,
    cgroup_procs: Sequence[str] = (),
) -> KernelCommand:
    """The command that starts an isolated ``ipykernel`` reading ``connection_file``.

    ``run_dir`` holds the connection file and the kernel's unix sockets; it is bound
    into the sandbox at the same path. ``work_dir`` is the host working directory used
    in rlimits-only mode. ``etc_dir`` holds the generated ``passwd``, ``group`` and
    ``hosts`` (:func:`write_etc`); ``seccomp_fd`` the filter for ``bwrap --seccomp``;
    ``cgroup_procs`` the ``cgroup.procs`` files of the sandbox's cgroup.
    """
    python = resolve_python(python or sys.executable)
    kernel = [python, "-m", "ipykernel_launcher", "-f", connection_file]
    venv_bin = os.path.dirname(python)
    if isolation.mode != "bwrap":
        spec: dict[str, Any] = {"rlimits": rlimits(limits, count_existing=True), "uid": None,
                                "pdeathsig": True}
        argv = [python, "-I", "-S", "-c", LAUNCHER, json.dumps(spec), *kernel]
        # no PID namespace here: the launcher asks for SIGKILL when the server dies (the
        # server's pid is not handed to the code: no JPY_PARENT_PID)
        env = sandbox_env(work_dir, venv_bin)
        return KernelCommand(in_cgroup(cgroup_procs, argv), env, work_dir, None)
    root = os.geteuid() == 0
    uid = _next_uid() if root else None
    spec = {"rlimits": rlimits(limits, count_existing=False), "uid": uid}
    assert isolation.bwrap is not None
    args, pass_fds = _bwrap_namespaces(isolation.bwrap, root, seccomp_fd)
    args += _bwrap_mounts(isolation, limits, etc_dir, run_dir, python)
    args += ["--chdir", WORKSPACE, "--clearenv"]
    for key, value in sandbox_env(WORKSPACE, venv_bin).items():
        args += ["--setenv", key, value]
    argv = [*args, "--", python, "-I", "-S", "-c", LAUNCHER, json.dumps(spec), *kernel]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return KernelCommand(in_cgroup(cgroup_procs, argv), env, run_dir, uid, pass_fds)


def resolve_python(python: str) -> str:
    """``python`` with its folder resolved (symlinks, ``..``): the sandbox binds only
    resolved folders, so an unresolved path would not exist inside it. The file name is
    kept, so a virtual environment's ``bin/python`` link still finds its ``pyvenv.cfg``.

    Example:
        >>> resolve_python("/usr/bin/../bin/python3")
        '/usr/bin/python3'
    """
    absolute = os.path.abspath(python)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def _bwrap_namespaces(bwrap: str, root: bool,
                      seccomp_fd: int | None) -> tuple[list[str], tuple[int, ...]]:
    """bubblewrap's namespaces, capabilities and seccomp filter; the fds to pass."""
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-ipc",
            "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox"]
    if root:
        # the launcher empties the bounding set (SETPCAP), then changes uid (SETUID,
        # SETGID): all three vanish with the uid change
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP"]
    else:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    if seccomp_fd is None:
        return args, ()
    return [*args, "--seccomp", str(seccomp_fd)], (seccomp_fd,)


def _bwrap_mounts(isolation: Isolation, limits: Limits, etc_dir: str | None,
                  run_dir: str, python: str | None = None) -> list[str]:
    """The sandbox's file system: the system read-only, private tmpfs mounts, the
    interpreter's folders and the run directory."""
    binds = _Binds()
    for path in _SYSTEM:
        if os.path.isdir(path):
            binds.add("--ro-bind", path, path)
    for link in _SYSTEM_LINKS:
        if os.path.islink(link):
            binds.args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            binds.add("--ro-bind", link, link)
    for entry in _etc_entries():
        binds.add("--ro-bind", entry, entry)
    if etc_dir is not None:
        for name in GENERATED_ETC:
            binds.add("--ro-bind", os.path.join(etc_dir, name), f"/etc/{name}")
    binds.mount("--proc", "/proc")
    binds.mount("--dev", "/dev")
    for mount in ("/tmp", WORKSPACE, "/dev/shm"):
        quota = limits.disk if mount != "/dev/shm" else min(limits.disk, 64 << 20)
        size = ["--size", str(quota)] if isolation.supports_size else []
        binds.mount("--perms", "1777", *size, "--tmpfs", mount)
    # after /tmp: an environment or a run directory under /tmp stays visible
    roots = python_roots()
    if python is not None:  # the interpreter asked for, and the one its link points to
        extra = {os.path.dirname(python), os.path.dirname(os.path.realpath(python))}
        venv = os.path.dirname(os.path.dirname(python))
        if os.path.exists(os.path.join(venv, "pyvenv.cfg")):
            extra.add(venv)
        roots = _minimal([*roots, *extra])
    for path in roots:
        binds.add("--ro-bind", path, path)
    binds.add("--bind", run_dir, run_dir)
    return binds.args
