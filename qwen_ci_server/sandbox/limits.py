"""Resource limits of a sandboxed kernel, output capping, and the result of one run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from qwen_ci.errors import InvalidRequestError

_ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|[@-Z\\-_])"  # two-byte escapes
)


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (IPython colours its tracebacks)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


POOL_SIZE = 2
"""Warm kernels a pool keeps ready by default."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits applied to every sandboxed kernel.

    Example:
        >>> from qwen_ci_server.sandbox import Limits
        >>> Limits(timeout=5, memory=512 * 2**20).timeout
        5
    """

    timeout: float = 30.0
    """Wall-clock seconds per run; then the run is interrupted, and the kernel is killed
    and replaced if the interrupt does not stop it within ``interrupt_grace``."""
    memory: int = 2 << 30
    """Bytes of memory of the whole sandbox: every process and its tmpfs mounts, when it
    has a cgroup; otherwise (no cgroup here) the address space of each process
    (``RLIMIT_AS``, also applied with a cgroup so that one process gets a MemoryError)."""
    cpu: int = 120
    """CPU seconds of the kernel over its whole life, one request (``RLIMIT_CPU``)."""
    open_files: int = 256
    """Open file descriptors per process (``RLIMIT_NOFILE``); at least
    :data:`MIN_OPEN_FILES`: the kernel itself holds about 60 (its ZeroMQ sockets)."""
    file_size: int = 64 << 20
    """Largest file a process may write, in bytes (``RLIMIT_FSIZE``)."""
    processes: int = 128
    """Processes and threads of the sandbox (its cgroup's ``pids.max``, and
    ``RLIMIT_NPROC`` of the sandbox user): stops fork bombs."""
    cpus: float = 1.0
    """CPUs the sandbox may use at once (its cgroup's CPU quota)."""
    disk: int = 256 << 20
    """Size of the private ``/workspace`` and ``/tmp`` each (bubblewrap only); their pages
    count against ``memory`` when the sandbox has a cgroup."""
    output: int = 20_000
    """Characters kept of stdout, of stderr and of the result each (head and tail)."""
    message_bytes: int = 8 << 20
    """Largest message the kernel may send (one flush of output, one result); a larger
    one disconnects the kernel, which is then replaced."""
    run_output_bytes: int = 32 << 20
    """Bytes of messages one run may send; beyond, the kernel is stopped and replaced."""
    request_output_bytes: int = 128 << 20
    """Bytes of messages the kernels of one request may send in all (also what is
    drained between runs); beyond, no more code runs for the request."""
    interrupt_grace: float = 2.0
    """Seconds an interrupted run gets to stop before the kernel is killed."""
    startup_timeout: float = 60.0
    """Seconds a kernel may take to start."""

    def __post_init__(self) -> None:
        for name in ("timeout", "interrupt_grace", "startup_timeout"):
            if not getattr(self, name) > 0:
                raise InvalidRequestError(f"Limits.{name} must be positive.")
        for name in ("memory", "cpu", "open_files", "file_size", "processes", "disk",
                     "message_bytes", "run_output_bytes", "request_output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidRequestError(f"Limits.{name} must be a positive integer.")
        if not 0.01 <= self.cpus <= 1024:
            raise InvalidRequestError("Limits.cpus must be between 0.01 and 1024.")
        if self.open_files < MIN_OPEN_FILES:
            raise InvalidRequestError(
                f"Limits.open_files must be at least {MIN_OPEN_FILES}: the kernel itself "
                "holds about 60 descriptors, and with fewer spare ones even formatting a "
                "traceback of the user's code fails (Too many open files).")
        if self.output < 200:
            raise InvalidRequestError("Limits.output must be at least 200 characters.")


MIN_OPEN_FILES = 128
"""The fewest open files :class:`Limits` accepts (twice what an idle kernel holds)."""


class CappedText:
    """Accumulates text, keeping the first and last ``limit // 2`` characters.

    Example:
        >>> from qwen_ci_server.sandbox.limits import CappedText
        >>> text = CappedText(20)
        >>> text.add("a" * 15 + "b" * 15)
        >>> text.value()
        'aaaaaaaaaa\\n... [10 characters omitted] ...\\nbbbbbbbbbb'
    """

    __slots__ = ("_head", "_head_limit", "_tail", "_tail_limit", "total")

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head: list[str] = []
        self._tail = ""
        self.total = 0

    def add(self, text: str) -> None:
        """Append ``text``."""
        if not text:
            return
        kept = self.total if self.total < self._head_limit else self._head_limit
        self.total += len(text)
        room = self._head_limit - kept
        if room > 0:
            self._head.append(text[:room])
            text = text[room:]
        if text:
            self._tail = (self._tail + text)[-self._tail_limit :]

    @property
    def omitted(self) -> int:
        """Characters dropped from the middle."""
        return max(0, self.total - self._head_limit - self._tail_limit)

    def value(self) -> str:
        """The text, with a marker where the middle was dropped."""
        head = "".join(self._head)
        if not self.omitted:
            return head + self._tail
        return f"{head}\n... [{self.omitted} characters omitted] ...\n{self._tail}"


def cap(text: str, limit: int) -> str:
    """``text`` capped like :class:`CappedText`."""
    capped = CappedText(limit)
    capped.add(text)
    return capped.value()


Status = Literal["ok", "error", "timeout", "crashed"]

RESET_NOTICE = (
    "The Python process was restarted: variables, imports and files from earlier runs "
    "are gone."
)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What one run produced.

    ``status`` is ``ok``, ``error`` (the code raised), ``timeout`` (interrupted or
    killed after the wall-clock limit) or ``crashed`` (the process died, e.g. on the CPU
    limit). ``reset`` is true when the kernel was replaced, losing the state.

    Example:
        >>> from qwen_ci_server.sandbox import ExecutionResult
        >>> ExecutionResult("ok", stdout="hi\\n", result="3").output
        'hi\\n3'
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    result: str = ""
    error: str = ""
    traceback: str = ""
    reset: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the code ran to the end without raising."""
        return self.status == "ok"

    @property
    def output(self) -> str:
        """Printed output followed by the value of the last expression, stripped."""
        parts = [p.strip("\n") for p in (self.stdout, self.result) if p.strip()]
        return "\n".join(parts)

    def feedback(self) -> str:
        """The run as the model reads it: output, errors and any reset notice."""
        parts: list[str] = []
        if self.stdout:
            parts.append(f"[stdout]\n{self.stdout.rstrip()}")
        if self.stderr:
            parts.append(f"[stderr]\n{self.stderr.rstrip()}")
        if self.result:
            parts.append(f"[result]\n{self.result}")
        if self.status != "ok":
            parts.append(f"[{self.status}]\n{self.traceback or self.error}".rstrip())
        if self.reset:
            parts.append(RESET_NOTICE)
        return "\n".join(parts) if parts else "(no output)"
