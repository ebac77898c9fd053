"""A warm pool of sandboxed kernels, and the per-request session that uses one.

A kernel serves the runs of one request and is then killed: kernels are never reused
across requests. The pool keeps ``size`` kernels started ahead of time so a request
does not wait for a kernel to boot (about half a second to a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging

from qwen_ci_server.sandbox.cgroups import cgroup_support
from qwen_ci_server.sandbox.isolation import Isolation, IsolationChoice, detect_isolation
from qwen_ci_server.sandbox.kernel import Kernel, SandboxError
from qwen_ci_server.sandbox.limits import POOL_SIZE, ExecutionResult, Limits

logger = logging.getLogger("qwen_ci_server.sandbox")


class KernelPool:
    """Hands out fresh sandboxed kernels, keeping ``size`` of them warm.

    All methods must be called on one event loop (the one :meth:`start` ran on).

    Example:
        >>> import asyncio
        >>> from qwen_ci_server.sandbox import KernelPool, Limits
        >>> async def main() -> str:
        ...     async with KernelPool(size=1, limits=Limits(timeout=5)) as pool:
        ...         async with pool.session() as session:
        ...             await session.run("x = 21")
        ...             return (await session.run("x * 2")).result
        >>> asyncio.run(main())  # doctest: +SKIP
        '42'
    """

    def __init__(
        self,
        size: int = POOL_SIZE,
        limits: Limits | None = None,
        isolation: IsolationChoice | Isolation = "auto",
        *,
        max_kernels: int = 16,
        python: str | None = None,
        fail_closed: bool = False,
    ) -> None:
        if size < 0 or max_kernels < 1:
            raise ValueError("size must be >= 0 and max_kernels >= 1.")
        self.size = size
        self.limits = limits or Limits()
        self.max_kernels = max_kernels
        self.fail_closed = fail_closed
        """Refuse to start without working bubblewrap unless isolation='none' was asked."""
        self._choice = isolation
        self._python = python
        self.isolation: Isolation | None = isolation if isinstance(isolation, Isolation) else None
        self._ready: asyncio.Queue[Kernel | BaseException] | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._booting: set[Kernel] = set()
        self._warm: set[Kernel] = set()
        self._in_use: set[Kernel] = set()
        self._waiters = 0
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self._failures = 0

    async def start(self) -> KernelPool:
        """Detect the isolation (warning if it is rlimits only) and warm the pool."""
        if self._ready is not None:
            return self
        if importlib.util.find_spec("ipykernel") is None:
            raise SandboxError(
                "ipykernel is not installed: pip install 'qwen-code-interpreter[emulator]'."
            )
        if self.isolation is None:
            choice = self._choice if isinstance(self._choice, str) else "auto"
            self.isolation = await asyncio.to_thread(detect_isolation, choice)
        refusal = self.isolation.refusal("The sandbox") if self.fail_closed else None
        if refusal is not None:
            raise SandboxError(refusal)
        if self.isolation.warning:
            logger.warning(self.isolation.warning)
        support = await asyncio.to_thread(cgroup_support)
        if not support.available:
            logger.warning(
                "qwen-ci sandbox: no cgroup per sandbox (%s): memory is limited per process "
                "(RLIMIT_AS), so a request's processes together and its tmpfs files can use "
                "more than Limits.memory; see docs/SECURITY.md.", support.reason)
        self._ready = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.max_kernels)
        self._refill()
        return self

    def guarantees(self) -> dict[str, str | None]:
        """What the sandbox here does and does not bound (for banners and ``/health``):
        the isolation and why, the cgroup (or why none), the socket buffers."""
        support = cgroup_support()
        isolation = self.isolation
        return {
            "isolation": isolation.mode if isolation else None,
            "isolation_reason": isolation.reason if isolation else None,
            "resources": ("a cgroup per sandbox (" + support.reason + ")" if support.available
                          else f"rlimits per process only: no cgroup ({support.reason})"),
            "socket_memory": support.sockets,
        }

    @property
    def warm(self) -> int:
        """Kernels started and waiting for a request."""
        return len(self._warm)

    def pids(self) -> set[int]:
        """Host pids of every process of every kernel the pool manages."""
        kernels = [*self._booting, *self._warm, *self._in_use]
        found: set[int] = set()
        for kernel in kernels:
            found |= kernel.pids()
        return found

    async def wait_warm(self, within: float = 60.0) -> None:
        """Wait until ``size`` kernels are warm (for tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.warm < self.size:
            if loop.time() > deadline:
                raise SandboxError(f"The pool did not warm {self.size} kernels in {within} s.")
            await asyncio.sleep(0.05)

    def _refill(self) -> None:
        if self._closed or self._ready is None:
            return
        wanted = max(self.size, self._waiters)
        # a finished boot stays in _starting until its done-callback runs on a later loop
        # iteration: counting it would leave the pool short after a burst
        starting = sum(1 for task in self._starting if not task.done())
        while self._ready.qsize() + starting < wanted:
            task = asyncio.get_running_loop().create_task(self._boot())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
            starting += 1

    async def _boot(self) -> None:
        assert self._ready is not None and self.isolation is not None
        kernel = Kernel(self.limits, self.isolation, python=self._python)
        self._booting.add(kernel)
        try:
            await kernel.start()
        except asyncio.CancelledError:
            kernel.kill()
            raise
        except Exception as exc:  # reported to a waiting request, logged otherwise
            self._failures += 1
            logger.error("qwen-ci sandbox: a kernel failed to start: %s", exc)
            if self._waiters:
                self._ready.put_nowait(exc)
            return
        finally:
            self._booting.discard(kernel)
        self._failures = 0
        if self._closed:
            kernel.kill()
            return
        self._warm.add(kernel)
        self._ready.put_nowait(kernel)

    async def acquire(self) -> Kernel:
        """A fresh, started kernel (waits while ``max_kernels`` are in use)."""
        if self._ready is None or self._slots is None:
            await self.start()
        assert self._ready is not None and self._slots is not None
        if self._closed:
            raise SandboxError("The kernel pool is closed.")
        await self._slots.acquire()
        try:
            while True:
                self._waiters += 1
                try:
                    self._refill()
                    item = await self._ready.get()
                finally:
                    self._waiters -= 1
                if isinstance(item, BaseException):
                    raise SandboxError(f"No sandboxed kernel could be started: {item}")
                self._warm.discard(item)
                if item.alive:
                    break
                item.kill()
        except BaseException:
            self._slots.release()
            raise
        self._in_use.add(item)
        self._refill()
        return item

    def release(self, kernel: Kernel) -> None:
        """Kill a kernel handed out by :meth:`acquire` (synchronous, idempotent)."""
        kernel.kill()
        if kernel in self._in_use:
            self._in_use.discard(kernel)
            if self._slots is not None:
                self._slots.release()

    def session(self) -> SandboxSession:
        """A session for one request; its kernel is acquired on the first run."""
        return SandboxSession(self)

    async def close(self) -> None:
        """Stop warming, kill every kernel."""
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        for task in list(self._starting):
            with contextlib.suppress(BaseException):
                await task
        for kernel in list(self._booting) + list(self._in_use):
            kernel.kill()
        if self._ready is not None:
            while not self._ready.empty():
                item = self._ready.get_nowait()
                if isinstance(item, Kernel):
                    item.kill()
        self._warm.clear()

    async def __aenter__(self) -> KernelPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SandboxSession:
    """The interpreter of one request: state is kept across its runs.

    After a crash or a kill (``result.reset``) the next run gets a fresh kernel.

    Example:
        >>> import asyncio
        >>> from qwen_ci_server.sandbox import KernelPool
        >>> async def main() -> None:
        ...     async with KernelPool(size=0) as pool, pool.session() as session:
        ...         print((await session.run("print('hi')")).stdout)
        >>> asyncio.run(main())  # doctest: +SKIP
        hi
    """

    def __init__(self, pool: KernelPool) -> None:
        self._pool = pool
        self._kernel: Kernel | None = None
        self._spent = 0  # output bytes of this session's earlier kernels
        self.runs = 0

    @property
    def output_bytes(self) -> int:
        """Bytes the kernels of this request sent so far (runs and in between)."""
        return self._spent + (self._kernel.received if self._kernel is not None else 0)

    @property
    def kernel(self) -> Kernel | None:
        """The current kernel, if one was acquired."""
        return self._kernel

    async def run(self, code: str, time_limit: float | None = None) -> ExecutionResult:
        """Execute ``code`` in this request's kernel (refused once the request's kernels
        sent ``limits.request_output_bytes``)."""
        budget = self._pool.limits.request_output_bytes
        if self.output_bytes > budget:
            self.close()
            return ExecutionResult(
                "error", error=f"OutputLimitError: this request's code already sent more "
                f"than {budget >> 20} MiB of output; no more code runs for it.")
        if self._kernel is None:
            self._kernel = await self._pool.acquire()
        self.runs += 1
        result = await self._kernel.execute(code, time_limit)
        if result.reset or not self._kernel.alive:
            self._pool.release(self._kernel)
            self._spent += self._kernel.received
            self._kernel = None
        return result

    def close(self) -> None:
        """Kill the kernel (synchronous: safe in ``finally`` of a cancelled task)."""
        if self._kernel is not None:
            self._pool.release(self._kernel)
            self._spent += self._kernel.received
            self._kernel = None

    async def __aenter__(self) -> SandboxSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
