"""The warm pool: fast hand-out, kernels never reused, cleanup, rlimits-only mode."""

from __future__ import annotations

import asyncio
import logging

import pytest

from qwen_ci_server.sandbox import KernelPool, Limits, SandboxError
from tests.sandbox.conftest import wait_no_descendants

LIMITS = Limits(timeout=5)


async def test_warm_pool_hands_out_kernels_without_waiting() -> None:
    async with KernelPool(size=2, limits=LIMITS) as pool:
        await pool.wait_warm()
        assert pool.warm == 2
        warm = {id(kernel) for kernel in pool._warm}
        async with pool.session() as session:
            result = await session.run("21 * 2")
            # no kernel start on the request path: the request got a kernel started
            # before it (checked by identity, not by a timing that a busy host breaks)
            assert id(session.kernel) in warm
        assert result.result == "42"
        await pool.wait_warm()  # refilled
    assert wait_no_descendants() == set()


async def test_state_is_kept_within_a_request_and_never_shared() -> None:
    async with KernelPool(size=1, limits=LIMITS) as pool:
        async with pool.session() as first:
            await first.run("secret = 'first request'\nopen('note.txt', 'w').write('x')")
            assert (await first.run("secret")).result == "'first request'"
            first_pid = first.kernel.pid if first.kernel else None
        async with pool.session() as second:
            leaked = await second.run("secret")
            assert leaked.status == "error" and "NameError" in leaked.error
            files = await second.run("import os\nos.path.exists('note.txt')")
            assert files.result == "False"
            assert second.kernel is not None and second.kernel.pid != first_pid


async def test_crash_gets_a_fresh_kernel_in_the_same_session() -> None:
    limits = Limits(timeout=1, interrupt_grace=0.5)
    async with KernelPool(size=1, limits=limits) as pool, pool.session() as session:
        await session.run("z = 1")
        crashed = await session.run("import os\nos._exit(1)")
        assert crashed.reset and session.kernel is None
        after = await session.run("'z' in dir()")
        assert after.status == "ok" and after.result == "False"


async def test_close_kills_every_kernel() -> None:
    pool = KernelPool(size=2, limits=LIMITS)
    await pool.start()
    await pool.wait_warm()
    session = pool.session()
    await session.run("1")
    assert len(pool.pids()) >= 3
    await pool.close()
    assert wait_no_descendants() == set()
    with pytest.raises(SandboxError):
        await pool.acquire()


async def test_rlimits_only_mode_warns_and_still_limits(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="qwen_ci_server.sandbox")
    limits = Limits(timeout=5, memory=1 << 30)
    async with KernelPool(size=0, limits=limits, isolation="none") as pool:
        assert pool.isolation is not None and pool.isolation.mode == "rlimits"
        assert any("rlimits only" in record.getMessage() for record in caplog.records)
        async with pool.session() as session:
            result = await session.run("block = bytearray(2 << 30)")
            assert result.status == "error" and "MemoryError" in result.error
            assert (await session.run("print(6 * 7)")).stdout == "42\n"
    assert wait_no_descendants() == set()


async def test_pool_boots_back_to_its_size_after_a_burst() -> None:
    """A burst larger than the pool must not leave it short afterwards (a finished boot
    was once counted as still booting)."""
    async with KernelPool(size=2, limits=LIMITS) as pool:
        await pool.wait_warm()
        for _ in range(2):

            async def one() -> None:
                async with pool.session() as session:
                    await session.run("1")

            await asyncio.gather(*(one() for _ in range(5)))
            await pool.wait_warm(within=30)
            assert pool.warm == 2
