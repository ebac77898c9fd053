"""One sandboxed IPython kernel, driven over Jupyter's messaging protocol.

The kernel listens on unix sockets (Jupyter's ``ipc`` transport) in a private run
directory, so it needs no network at all. Everything here runs on one asyncio event
loop; :meth:`Kernel.kill` is synchronous so that it can run in ``finally`` blocks of
cancelled tasks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from qwen_ci.sandbox.isolation import Isolation, detect_isolation, kernel_command
from qwen_ci.sandbox.limits import (
    CappedText,
    ExecutionResult,
    Limits,
    Status,
    cap,
    strip_ansi,
)
from qwen_ci.sandbox.procs import process_tree

_POLL = 0.2  # seconds between liveness checks while waiting for output


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
        >>> from qwen_ci.sandbox import Kernel, Limits
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
    ) -> None:
        self.limits = limits or Limits()
        self.isolation = isolation or detect_isolation("auto")
        self._python = python
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: AsyncKernelClient | None = None
        self._stderr: Any = None
        self._closed = False
        self._busy = False
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
        return process_tree(self._proc.pid)

    async def start(self) -> None:
        """Start the kernel and wait until it answers; raises :class:`SandboxError`."""
        if self._proc is not None:
            raise SandboxError("Kernel.start() was already called.")
        try:
            self._launch()
            await self._wait_ready(self.limits.startup_timeout)
        except BaseException:
            self.kill()
            raise

    def _launch(self) -> None:
        base = tempfile.mkdtemp(prefix="qwen-ci-sandbox-")
        self._dir = base
        run_dir = os.path.join(base, "run")
        work_dir = os.path.join(base, "work")
        os.mkdir(run_dir, 0o700)
        os.mkdir(work_dir, 0o700)
        connection_file = os.path.join(run_dir, "kernel.json")
        write_connection_file(
            connection_file,
            transport="ipc",
            ip=os.path.join(run_dir, "kernel"),
            key=secrets.token_hex(16).encode(),
        )
        command = kernel_command(
            self.isolation,
            self.limits,
            connection_file=connection_file,
            run_dir=run_dir,
            work_dir=work_dir,
            python=self._python,
        )
        self.uid = command.uid
        if command.uid is not None:
            os.chmod(base, 0o711)
            for path in (run_dir, work_dir, connection_file):
                os.chown(path, command.uid, command.uid)
        self._stderr = open(os.path.join(base, "kernel.log"), "w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=command.env,
            cwd=command.cwd,
            start_new_session=True,
        )
        client = AsyncKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels(hb=False)
        self._client = client

    def _log_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.flush()
            self._stderr.seek(0)
            return cap(self._stderr.read().decode(errors="replace"), 2000).strip()
        return ""

    async def _wait_ready(self, limit: float) -> None:
        client = self._require_client()
        deadline = time.monotonic() + limit
        while True:
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

    def _require_client(self) -> AsyncKernelClient:
        if self._client is None or self._closed:
            raise SandboxError("The kernel is not running.")
        return self._client

    def kill(self) -> None:
        """Kill every process of the kernel and delete its directories (idempotent)."""
        if self._closed:
            return
        self._closed = True
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
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop_channels()
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.close()
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
            return await self._execute(code, time_limit or self.limits.timeout)
        finally:
            self._busy = False

    async def _execute(self, code: str, time_limit: float) -> ExecutionResult:
        client = self._require_client()
        limit = self.limits.output
        stdout, stderr, result = CappedText(limit), CappedText(limit), CappedText(limit)
        error = traceback = ""
        status: Status = "ok"
        started = time.monotonic()
        deadline = started + time_limit
        interrupted_at: float | None = None
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                self._interrupt()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + self.limits.interrupt_grace:
                self.kill()
                return self._result(
                    "timeout", stdout, stderr, result, started, reset=True,
                    error=f"TimeoutError: the code ran longer than {time_limit:g} s and was "
                    "stopped by killing the Python process.",
                )
            wait = min(_POLL, max(0.01, (interrupted_at or deadline) - now + 0.01))
            try:
                msg = await client.get_iopub_msg(timeout=wait)
            except Empty:
                if self._proc is not None and self._proc.poll() is not None:
                    description = _describe_exit(self._proc.returncode, self.limits)
                    self.kill()
                    return self._result(
                        "crashed", stdout, stderr, result, started, reset=True,
                        error=description,
                    )
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "stream":
                target = stderr if content.get("name") == "stderr" else stdout
                target.add(strip_ansi(str(content.get("text", ""))))
            elif kind in ("execute_result", "display_data"):
                result.add(_display_text(content.get("data", {}), bool(result.total)))
            elif kind == "error":
                status = "error"
                error = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
                traceback = strip_ansi("\n".join(content.get("traceback", [])))
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        await self._drain_shell()
        if interrupted_at is not None:
            status = "timeout"
            error = (
                f"TimeoutError: the code ran longer than {time_limit:g} s and was interrupted "
                "(the interpreter state is kept)."
            )
        return self._result(
            status, stdout, stderr, result, started, error=error,
            traceback=cap(traceback, limit),
        )

    def _interrupt(self) -> None:
        """Ask the kernel to interrupt itself (SIGINT inside the sandbox)."""
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.control_channel.send(client.session.msg("interrupt_request", {}))

    @staticmethod
    def _result(
        status: Status,
        stdout: CappedText,
        stderr: CappedText,
        result: CappedText,
        started: float,
        *,
        error: str = "",
        traceback: str = "",
        reset: bool = False,
    ) -> ExecutionResult:
        return ExecutionResult(
            status,
            stdout=stdout.value(),
            stderr=stderr.value(),
            result=result.value(),
            error=error,
            traceback=traceback,
            reset=reset,
            duration=time.monotonic() - started,
        )

    async def __aenter__(self) -> Kernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()


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
