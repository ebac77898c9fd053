"""Emulator and sandbox latency: cold kernel start, warm runs, the seed prompt end to end,
concurrent requests.

Everything here is wall time (the kernels are other processes). How long each request
waited for a kernel is measured by wrapping :meth:`KernelPool.acquire` with a timer (an
observation only: the wrapper calls the real method).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from qwen_ci import AsyncClient, Client, Options, build, collect
from qwen_ci.result import acollect
from qwen_ci_server.sandbox import Kernel, KernelPool, Limits, detect_isolation

SEED_PROMPT = "123的21次方是多少？"
SEED_ANSWER = str(123**21)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), nearest rank on sorted values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Latencies:
    """Seconds, one value per observation."""

    values: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        v = self.values
        return {"p50": statistics.median(v), "p95": pct(v, 0.95), "min": min(v), "max": max(v),
                "n": float(len(v))}


@contextmanager
def acquire_waits() -> Iterator[list[float]]:
    """Record how long each ``KernelPool.acquire`` call waited (seconds)."""
    waits: list[float] = []
    original = KernelPool.acquire

    async def timed(self: KernelPool) -> Kernel:
        start = time.perf_counter()
        try:
            return await original(self)
        finally:
            waits.append(time.perf_counter() - start)

    KernelPool.acquire = timed  # type: ignore[method-assign]
    try:
        yield waits
    finally:
        KernelPool.acquire = original  # type: ignore[method-assign]


async def _cold_and_warm(cold_reps: int, warm_runs: int, pool_reps: int) -> dict[str, Any]:
    limits = Limits(timeout=30)
    isolation = await asyncio.to_thread(detect_isolation, "auto")
    cold = Latencies()
    for _ in range(cold_reps):
        kernel = Kernel(limits, isolation)
        start = time.perf_counter()
        await kernel.start()
        cold.values.append(time.perf_counter() - start)
        kernel.kill()
    # warm: print(1) again and again on one started kernel
    warm = Latencies()
    kernel = Kernel(limits, isolation)
    await kernel.start()
    try:
        await kernel.execute("print(1)")
        for _ in range(warm_runs):
            start = time.perf_counter()
            result = await kernel.execute("print(1)")
            warm.values.append(time.perf_counter() - start)
            if result.stdout.strip() != "1":
                raise RuntimeError(f"print(1) gave {result!r}")
    finally:
        kernel.kill()
    # first run of a request: a kernel taken from a warm pool, then print(1)
    first = Latencies()
    async with KernelPool(size=1, limits=limits, isolation=isolation) as pool:
        for _ in range(pool_reps):
            await pool.wait_warm(60)
            start = time.perf_counter()
            async with pool.session() as session:
                await session.run("print(1)")
                first.values.append(time.perf_counter() - start)
    return {"isolation": isolation.mode, "cold": cold.summary(), "warm": warm.summary(),
            "first": first.summary()}


def _seed(base_url: str) -> Any:
    return build([{"role": "user", "content": SEED_PROMPT}], Options(), "dashscope")


def _e2e(emulator: Any, reps: int) -> dict[str, Any]:
    client = Client(api_key="sk-local", base_url=emulator.base_url)
    latencies = Latencies()
    with acquire_waits() as waits:
        for _ in range(reps):
            emulator.wait_warm()
            start = time.perf_counter()
            result = collect(client.stream(_seed(emulator.base_url)))
            latencies.values.append(time.perf_counter() - start)
            if SEED_ANSWER not in result.text or not result.code_runs:
                raise RuntimeError(f"unexpected seed answer: {result.text!r}")
    client.close()
    return {"latency": latencies.summary(), "max_wait": max(waits), "waits": waits}


def _warm(emulator: Any) -> int:
    async def count() -> int:
        return int(emulator.pool.warm)

    return int(emulator.call(count()))


def _settle(emulator: Any, within: float) -> int:
    """Wait (at most ``within`` s) for the pool to be full again; the warm kernel count."""
    deadline = time.monotonic() + within
    size = emulator.pool.size
    while (warm := _warm(emulator)) < size and time.monotonic() < deadline:
        time.sleep(0.1)
    return warm


def _concurrent(emulator: Any, requests: int, batches: int) -> dict[str, Any]:
    walls: list[float] = []
    latencies = Latencies()
    warm_before: list[int] = []
    refilled: list[int] = []

    async def one(client: AsyncClient) -> float:
        start = time.perf_counter()
        result = await acollect(client.stream(_seed(emulator.base_url)))
        if SEED_ANSWER not in result.text:
            raise RuntimeError(f"unexpected seed answer: {result.text!r}")
        return time.perf_counter() - start

    async def batch() -> None:
        client = AsyncClient(api_key="sk-local", base_url=emulator.base_url)
        try:
            start = time.perf_counter()
            latencies.values.extend(await asyncio.gather(*(one(client) for _ in range(requests))))
            walls.append(time.perf_counter() - start)
        finally:
            await client.aclose()

    with acquire_waits() as waits:
        for _ in range(batches):
            warm_before.append(_settle(emulator, 30))
            asyncio.run(batch())
            # after the burst the pool should boot back to its size by itself
            refilled.append(_settle(emulator, 15))
    waited = sum(1 for w in waits if w > 0.05)
    return {"wall": statistics.median(walls), "walls": walls, "latency": latencies.summary(),
            "max_wait": max(waits), "waited": waited, "requests": requests * batches,
            "size": emulator.pool.size, "warm_before": warm_before, "refilled": refilled}


def run(quick: bool = False) -> dict[str, Any]:
    """All emulator and sandbox figures (seconds)."""
    from qwen_ci_server.emulator import Emulator

    out: dict[str, Any] = asyncio.run(
        _cold_and_warm(cold_reps=1 if quick else 5, warm_runs=5 if quick else 200,
                       pool_reps=1 if quick else 5)
    )
    concurrency = 2 if quick else 8
    with Emulator(pool_size=2) as emulator:
        emulator.wait_warm()
        out["e2e"] = _e2e(emulator, reps=1 if quick else 10)
        out["concurrent_pool2"] = _concurrent(emulator, concurrency, 1 if quick else 3)
    if not quick:
        with Emulator(pool_size=concurrency) as emulator:
            emulator.wait_warm(120)
            out["concurrent_pool8"] = _concurrent(emulator, concurrency, 3)
    out["concurrency"] = concurrency
    return out
