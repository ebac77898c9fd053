"""One sandboxed IPython kernel, driven over Jupyter's messaging protocol.

The kernel listens on unix sockets (Jupyter's ``ipc`` transport) in a private run
directory, so it needs no network at all. The server connects through hard links it
makes, in a directory of its own, to the socket files the kernel created (each checked to
be a socket, not a symlink): a path the sandbox replaces later is never followed, even on
a reconnect. As root, the run directory is then taken back from the sandbox's user so the
code cannot fill it or plant anything there. What the kernel sends is bounded: each
message (``Limits.message_bytes``, a
larger one disconnects the kernel), the messages queued (a small high-water mark), the
bytes of one run and of one request; between runs the kernel is frozen (its cgroup) or
its output drained and dropped. A run's status, ``ename`` and ``evalue`` come from the
shell's ``execute_reply`` (IOPub may lack the error when IPython cannot format it).
Everything here runs on one asyncio event loop; :meth:`Kernel.kill` is synchronous so
that it can run in ``finally`` blocks of cancelled tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file
from zmq.utils.monitor import parse_monitor_message

from qwen_ci_server.sandbox.cgroups import Cgroup, CgroupSupport, cgroup_support
from qwen_ci_server.sandbox.isolation import (
    Isolation,
    KernelCommand,
    detect_isolation,
    kernel_command,
    write_etc,
)
from qwen_ci_server.sandbox.limits import (
    CappedText,
    ExecutionResult,
    Limits,
    Status,
    cap,
    strip_ansi,
)
from qwen_ci_server.sandbox.procs import process_tree
from qwen_ci_server.sandbox.reaper import run_dir_prefix
from qwen_ci_server.sandbox.seccomp import filter_fd, filter_program

_POLL = 0.2  # seconds between liveness checks while waiting for output
_CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
_QUEUED_MESSAGES = 8  # per socket: what a kernel can make the server hold is bounded


def _context(message_bytes: int) -> zmq.asyncio.Context:
    """The ZeroMQ context of a kernel's client: every socket it makes refuses messages
    over ``message_bytes`` (disconnecting the kernel) and queues few."""
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, message_bytes)
    context.setsockopt(zmq.RCVHWM, _QUEUED_MESSAGES)
    return context


def _size(value: Any) -> int:
    """Approximate bytes of a message's content (its strings)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    return 8


class _Disconnected(Exception):
    """The kernel's connection dropped (it sent a message over the size limit)."""


class SandboxError(RuntimeError):
    """A kernel could not be started (the message says why).

    Example:
        >>> str(SandboxError("ipykernel is not installed"))
        'ipykernel is not installed'
    """


def _describe_exit(code: int | None, limits: Limits) -> str:
    """Why a kernel process ended, in words the model can use."""
    if code is None:
        return "The Python process stopped responding and was killed."
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum == signal.SIGXCPU:
        return f"The Python process was killed: CPU time limit of {limits.cpu} s exceeded."
    if signum == signal.SIGKILL:
        return "The Python process was killed (SIGKILL)."
    if signum is not None and signum > 0:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"The Python process was killed by {name}."
    return f"The Python process exited with status {code}."


class Kernel:
    """A Python kernel in a sandbox, for the runs of one request.

    Example:
        >>> import asyncio
        >>> from qwen_ci_server.sandbox import Kernel, Limits
        >>> async def main() -> str:
        ...     kernel = Kernel(Limits(timeout=5))
        ...     await kernel.start()
        ...     try:
        ...         return (await kernel.execute("6 * 7")).result
        ...     finally:
        ...         kernel.kill()
        >>> asyncio.run(main())  # doctest: +SKIP
        '42'
    """

    def __init__(
        self,
        limits: Limits | None = None,
        isolation: Isolation | None = None,
        *,
        python: str | None = None,
        cgroups: CgroupSupport | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.isolation = isolation or detect_isolation("auto")
        self._python = python
        self._cgroups = cgroups if cgroups is not None else cgroup_support()
        self._dir: str | None = None
        self._run_dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: AsyncKernelClient | None = None
        self._monitors: list[zmq.Socket[Any]] = []
        self._context: zmq.asyncio.Context | None = None
        self._stderr: int | None = None  # the read end of the kernel's output pipe
        self._log = CappedText(4000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None
        self._oom_before = 0
        self.cgroup: Cgroup | None = None
        """The sandbox's cgroup (None where none can be made: rlimits per process only)."""
        self.received = 0
        """Bytes of messages received from the kernel so far (runs and in between)."""
        self.uid: int | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        """Host pid of the kernel's outermost process (bwrap or the kernel itself)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """True while the kernel process runs and has not been killed."""
        return not self._closed and self._proc is not None and self._proc.poll() is None

    def pids(self) -> set[int]:
        """Host pids of every process of this kernel (empty once killed)."""
        if self._proc is None or self._closed:
            return set()
        found = process_tree(self._proc.pid)
        if self.cgroup is not None:
            found |= self.cgroup.pids()
        return found

    async def start(self) -> None:
        """Start the kernel and wait until it answers; raises :class:`SandboxError`."""
        if self._proc is not None:
            raise SandboxError("Kernel.start() was already called.")
        try:
            self._launch()
            await self._connect(self.limits.startup_timeout)
            await self._wait_ready(self.limits.startup_timeout)
            self._lock_run_dir()
            self._pause()
        except BaseException:
            self.kill()
            raise

    def _launch(self) -> None:
        base = tempfile.mkdtemp(prefix=run_dir_prefix())  # named by owner: reaped if it dies
        self._dir = base
        run_dir, work_dir = os.path.join(base, "run"), os.path.join(base, "work")
        os.mkdir(run_dir, 0o700)
        os.mkdir(work_dir, 0o700)
        connection_file = os.path.join(run_dir, "kernel.json")
        write_connection_file(
            connection_file,
            transport="ipc",
            ip=os.path.join(run_dir, "kernel"),
            key=secrets.token_hex(16).encode(),
        )
        self._run_dir = run_dir
        bwrap = self.isolation.mode == "bwrap"
        etc_dir = os.path.join(base, "etc")
        if bwrap:
            write_etc(etc_dir, os.getuid())
        if self._cgroups.available:
            try:
                self.cgroup = Cgroup.create(self._cgroups, self.limits)
            except OSError as exc:
                raise SandboxError(f"The sandbox's cgroup could not be created: {exc}") from exc
        program = filter_program() if bwrap and self.isolation.seccomp else None
        seccomp = filter_fd(program) if program is not None else None
        try:
            command = kernel_command(
                self.isolation,
                self.limits,
                connection_file=connection_file,
                run_dir=run_dir,
                work_dir=work_dir,
                python=self._python,
                etc_dir=etc_dir if bwrap else None,
                seccomp_fd=seccomp,
                cgroup_procs=self.cgroup.procs_files if self.cgroup is not None else (),
            )
            self.uid = command.uid
            if command.uid is not None:
                self._hand_over(command.uid, base, (run_dir, work_dir, connection_file),
                                etc_dir if bwrap else None)
            self._start(command)
        finally:
            if seccomp is not None:
                os.close(seccomp)
        self._context = _context(self.limits.message_bytes)
        client = AsyncKernelClient(connection_file=connection_file, context=self._context)
        client.load_connection_file()
        self._client = client

    @staticmethod
    def _hand_over(uid: int, base: str, paths: tuple[str, ...], etc_dir: str | None) -> None:
        """Give the sandbox user its run files (root only: the code runs as ``uid``)."""
        os.chmod(base, 0o711)
        for path in paths:
            os.chown(path, uid, uid)
        if etc_dir is not None:
            write_etc(etc_dir, uid)

    def _start(self, command: KernelCommand) -> None:
        # the kernel's own output goes to a pipe the server drains, keeping a capped head
        # and tail for error messages: no host file the code could fill
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=write,
                stderr=write,
                env=command.env,
                cwd=command.cwd,
                start_new_session=True,
                pass_fds=command.pass_fds,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        os.set_blocking(read, False)
        self._stderr = read
        self._log = CappedText(4000)
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(read, self._read_log)

    def _read_log(self) -> None:
        """Drain the kernel's output pipe (a bounded read at a time)."""
        fd = self._stderr
        if fd is None:
            return
        for _ in range(16):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_log()
                return
            self._log.add(chunk.decode(errors="replace"))

    def _close_log(self) -> None:
        fd, self._stderr = self._stderr, None
        if fd is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    async def _connect(self, limit: float) -> None:
        """Connect once the kernel created its sockets, through hard links in a directory
        the sandbox cannot see: each must be a socket, never a symlink."""
        client = self._require_client()
        assert self._dir is not None
        links = os.path.join(self._dir, "links")
        os.mkdir(links, 0o700)
        deadline = time.monotonic() + limit
        for name in _CHANNELS:
            port = getattr(client, f"{name}_port")
            source = f"{client.ip}-{port}"
            while not _is_socket(source):
                self._check_alive(deadline, limit)
                await asyncio.sleep(0.01)
            target = os.path.join(links, f"kernel-{port}")
            os.link(source, target, follow_symlinks=False)
            if not _is_socket(target):
                raise SandboxError(f"The kernel's socket {source} is not a socket.")
        client.ip = os.path.join(links, "kernel")
        client.start_channels(hb=False)
        for channel in (client.shell_channel, client.iopub_channel):
            # a name of its own: pyzmq's default names by file descriptor, which a socket
            # of an earlier kernel may still hold in the shared context
            address = f"inproc://qwen-ci-monitor-{secrets.token_hex(8)}"
            self._monitors.append(
                channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED, address))

    def _check_alive(self, deadline: float, limit: float) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise SandboxError(
                f"The sandboxed kernel exited during start-up "
                f"(status {self._proc.returncode}): {self._log_tail() or 'no output'}"
            )
        if time.monotonic() > deadline:
            raise SandboxError(
                f"The sandboxed kernel did not start within {limit:.0f} s: "
                f"{self._log_tail() or 'no output'}"
            )

    def _disconnected(self) -> bool:
        """True once the kernel's shell or IOPub connection dropped."""
        for monitor in self._monitors:
            shadow: zmq.Socket[bytes] = zmq.Socket.shadow(monitor.underlying)
            with contextlib.suppress(zmq.ZMQError):
                while shadow.poll(0):
                    event = parse_monitor_message(shadow.recv_multipart(zmq.NOBLOCK))
                    if event["event"] == zmq.EVENT_DISCONNECTED:
                        return True
        return False

    def _lock_run_dir(self) -> None:
        """As root, take the run directory back from the sandbox's user once the kernel's
        sockets exist: the code can then neither fill it nor replace a socket."""
        if self.uid is None or self._run_dir is None:
            return
        os.chown(self._run_dir, 0, 0, follow_symlinks=False)
        os.chmod(self._run_dir, 0o755, follow_symlinks=False)

    def _log_tail(self) -> str:
        self._read_log()
        return cap(self._log.value(), 2000).strip()

    async def _wait_ready(self, limit: float) -> None:
        client = self._require_client()
        deadline = time.monotonic() + limit
        while True:
            self._check_alive(deadline, limit)
            msg_id = client.kernel_info()
            # the kernel is ready once its idle status for our request reaches IOPub
            # (this also proves the IOPub subscription is connected)
            until = time.monotonic() + 0.5
            while (left := until - time.monotonic()) > 0:
                try:
                    msg = await client.get_iopub_msg(timeout=left)
                except Empty:
                    break
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"
                ):
                    await self._drain_shell()
                    return

    async def _drain_shell(self) -> None:
        client = self._require_client()
        while True:
            try:
                await client.get_shell_msg(timeout=0.01)
            except Empty:
                return
            except Exception:  # a malformed message from the sandbox: dropped
                continue

    async def _next(self, channel: str, wait: float) -> dict[str, Any] | None:
        """The next well-formed message on ``channel`` (None after ``wait`` s); counts
        its bytes; raises :class:`_Disconnected` when the connection dropped."""
        client = self._require_client()
        get = client.get_iopub_msg if channel == "iopub" else client.get_shell_msg
        try:
            msg: dict[str, Any] = await get(timeout=wait)
        except Empty:
            if self._disconnected():
                raise _Disconnected from None
            return None
        except (zmq.ZMQError, asyncio.CancelledError):
            raise
        except Exception:  # a malformed or badly signed message from the sandbox: dropped
            return None
        self.received += _size(msg.get("content"))
        return msg

    def _pause(self) -> None:
        """Between runs: freeze the sandbox (no CPU, no output), or drain and drop what it
        prints when it cannot be frozen."""
        if self.cgroup is not None and self.cgroup.can_freeze:
            self.cgroup.freeze()
            return
        if self._drainer is None and not self._closed:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _resume(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(BaseException):
                await self._drainer
            self._drainer = None
        if self.cgroup is not None:
            self.cgroup.thaw()
        # whatever arrived since the last run (before the freeze) is not this run's
        with contextlib.suppress(_Disconnected):
            while await self._next("iopub", 0.001) is not None:
                pass
        await self._drain_shell()

    async def _drain(self) -> None:
        """Read and drop the kernel's output while no code runs; stop the kernel once it
        sent more than a request may."""
        while not self._closed:
            try:
                await self._next("iopub", _POLL)
            except _Disconnected:
                self.kill()
                return
            if self.received > self.limits.request_output_bytes:
                self.kill()
                return

    def _require_client(self) -> AsyncKernelClient:
        if self._client is None or self._closed:
            raise SandboxError("The kernel is not running.")
        return self._client

    def kill(self) -> None:
        """Kill every process of the kernel and delete its directories (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._drainer is not None and self._drainer is not _current_task():
            self._drainer.cancel()
        if self.cgroup is not None:
            self.cgroup.kill()
        proc = self._proc
        if proc is not None:
            tree = process_tree(proc.pid) if proc.poll() is None else set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for monitor in self._monitors:
            with contextlib.suppress(Exception):
                monitor.close(linger=0)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop_channels()
        if self._context is not None:
            with contextlib.suppress(Exception):
                self._context.destroy(linger=0)
        if self.cgroup is not None:
            self.cgroup.remove()
        self._close_log()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ execution

    async def execute(self, code: str, time_limit: float | None = None) -> ExecutionResult:
        """Run ``code``; never raises for problems of the code itself.

        After the wall-clock ``time_limit`` (default ``limits.timeout``) the run is
        interrupted; if it does not stop within the grace period, the kernel is killed
        and the result has ``reset=True`` (the kernel is then unusable: replace it).
        """
        if self._busy:
            raise SandboxError("The kernel is already running code.")
        if not self.alive:
            return ExecutionResult(
                "crashed", error="The Python process is not running.", reset=True
            )
        self._busy = True
        try:
            await self._resume()
            if self.cgroup is not None:
                self._oom_before = self.cgroup.oom_kills()
            result = await self._execute(code, time_limit or self.limits.timeout)
            if self.alive:
                self._pause()
            return result
        finally:
            self._busy = False

    def _stopped(self, run: _Run, status: Status, error: str) -> ExecutionResult:
        self.kill()
        return run.result(status, error=error, reset=True)

    def _exit_reason(self) -> str:
        code = self._proc.returncode if self._proc is not None else None
        if self.cgroup is not None and self.cgroup.oom_kills() > self._oom_before:
            return ("The Python process was killed: the sandbox ran out of memory (its "
                    f"budget is {self.limits.memory >> 20} MiB for all its processes and "
                    "files in /tmp and /workspace).")
        return _describe_exit(code, self.limits)

    async def _execute(self, code: str, time_limit: float) -> ExecutionResult:
        client = self._require_client()
        run = _Run(self.limits.output)
        deadline = run.started + time_limit
        interrupted_at: float | None = None
        received_before = self.received
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                self._interrupt()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + self.limits.interrupt_grace:
                return self._stopped(
                    run, "timeout", f"TimeoutError: the code ran longer than {time_limit:g} s "
                    "and was stopped by killing the Python process.")
            wait = min(_POLL, max(0.01, (interrupted_at or deadline) - now + 0.01))
            try:
                msg = await self._next("iopub", wait)
            except _Disconnected:
                if await self._exited(0.5):  # the process died: a crash, not a big message
                    return self._stopped(run, "crashed", self._exit_reason())
                return self._stopped(run, "error", self._too_large())
            if self.received - received_before > self.limits.run_output_bytes:
                return self._stopped(
                    run, "error", f"OutputLimitError: the code sent more than "
                    f"{self.limits.run_output_bytes >> 20} MiB of output in one run; the "
                    "Python process was stopped.")
            if msg is None:
                if self._proc is not None and self._proc.poll() is not None:
                    return self._stopped(run, "crashed", self._exit_reason())
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if run.add(msg["msg_type"], msg["content"]):
                break
        await self._reply(msg_id, run, max(deadline, time.monotonic()) + 1.0)
        if interrupted_at is not None:
            run.status = "timeout"
            run.error = (
                f"TimeoutError: the code ran longer than {time_limit:g} s and was interrupted "
                "(the interpreter state is kept)."
            )
        return run.result(run.status, error=run.error)

    async def _reply(self, msg_id: str, run: _Run, until: float) -> None:
        """The run's ``execute_reply`` (after IOPub went idle): its status, ename and
        evalue are authoritative."""
        while (left := until - time.monotonic()) > 0:
            try:
                msg = await self._next("shell", min(left, _POLL))
            except _Disconnected:
                return
            if msg is None:
                if not self.alive or (self._proc is not None and self._proc.poll() is not None):
                    return
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            if not isinstance(content, dict):
                return
            status = content.get("status")
            if status in ("error", "aborted") and run.status == "ok":
                run.status = "error"
                name = str(content.get("ename") or ("Aborted" if status == "aborted" else "Error"))
                run.error = f"{name}: {content.get('evalue', '')}"
                if not run.traceback and isinstance(content.get("traceback"), list):
                    run.traceback = strip_ansi("\n".join(map(str, content["traceback"])))
            return

    async def _exited(self, within: float) -> bool:
        until = time.monotonic() + within
        while self._proc is not None and self._proc.poll() is None:
            if time.monotonic() > until:
                return False
            await asyncio.sleep(0.02)
        return True

    def _too_large(self) -> str:
        return (f"OutputLimitError: the code sent a message larger than "
                f"{self.limits.message_bytes >> 20} MiB (one output or result); the Python "
                "process was stopped. Print less at once.")

    def _interrupt(self) -> None:
        """Ask the kernel to interrupt itself (SIGINT inside the sandbox)."""
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.control_channel.send(client.session.msg("interrupt_request", {}))

    async def __aenter__(self) -> Kernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()


class _Run:
    """What one run printed and returned, capped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stdout, self.stderr = CappedText(limit), CappedText(limit)
        self.value = CappedText(limit)
        self.status: Status = "ok"
        self.error = ""
        self.traceback = ""
        self.started = time.monotonic()

    def add(self, kind: str, content: Any) -> bool:
        """Take one IOPub message of the run; True once the kernel is idle again."""
        if not isinstance(content, dict):
            return False
        if kind == "stream":
            target = self.stderr if content.get("name") == "stderr" else self.stdout
            target.add(strip_ansi(str(content.get("text", ""))))
        elif kind in ("execute_result", "display_data"):
            self.value.add(_display_text(content.get("data", {}), bool(self.value.total)))
        elif kind == "error":
            self.status = "error"
            self.error = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            lines = content.get("traceback", [])
            self.traceback = strip_ansi("\n".join(map(str, lines if isinstance(lines, list)
                                                       else [])))
        elif kind == "status" and content.get("execution_state") == "idle":
            return True
        return False

    def result(self, status: Status, *, error: str = "", reset: bool = False) -> ExecutionResult:
        return ExecutionResult(
            status,
            stdout=self.stdout.value(),
            stderr=self.stderr.value(),
            result=self.value.value(),
            error=cap(error, self.limit),
            traceback=cap(self.traceback, self.limit),
            reset=reset,
            duration=time.monotonic() - self.started,
        )


def _is_socket(path: str) -> bool:
    """True when ``path`` itself (not a symlink's target) is a unix socket."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _display_text(data: Any, separate: bool) -> str:
    """``text/plain`` of a result or display, or a note for non-text outputs."""
    if not isinstance(data, dict):
        return ""
    text = data.get("text/plain")
    if isinstance(text, str):
        body = strip_ansi(text)
    else:
        kinds = ", ".join(sorted(k for k in data if isinstance(k, str)))
        body = f"<{kinds or 'output'}>"
    return ("\n" if separate else "") + body


__all__ = ["Kernel", "SandboxError"]
