"""Concurrency: many ``astream`` calls on one model instance against one server.

The same number of calls run one after another, then all at once (``asyncio.gather``),
twice in a row, on one event loop; the frame server counts the TCP connections each
batch opened (a sequential batch lasts longer than httpx's 5 s keep-alive expiry, so
the first concurrent batch after it starts from one warm connection; the second one
shows how many connections the pool kept).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from cases import API_KEY
from frames import PROMPT
from server import FrameServer


def run(srv: FrameServer, protocol: str, frames: int, calls: int, reps: int) -> dict[str, Any]:
    """Wall time, CPU and connections of ``calls`` sequential vs concurrent ``astream``."""
    from langchain_qwen_ci import ChatQwenCodeInterpreter

    stream = "native" if protocol == "dashscope" else "compat"
    llm = ChatQwenCodeInterpreter(base_url=srv.url(stream, frames), api_key=API_KEY,
                                  protocol=protocol)
    loop = asyncio.new_event_loop()

    async def one() -> int:
        return sum([1 async for _ in llm.astream(PROMPT)])

    async def sequential() -> int:
        return sum([await one() for _ in range(calls)])

    async def concurrent() -> int:
        return sum(await asyncio.gather(*(one() for _ in range(calls))))

    def timed(batch: Any) -> dict[str, float]:
        gc.collect()
        before = srv.stats()["connections"]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        items = loop.run_until_complete(batch())
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if items <= 0:
            raise RuntimeError("the concurrency benchmark produced nothing")
        return {"wall": wall, "cpu": cpu, "connections": srv.stats()["connections"] - before}

    try:
        loop.run_until_complete(one())  # warm: imports, first connection
        seq: list[dict[str, float]] = []
        conc: list[dict[str, float]] = []
        again: list[dict[str, float]] = []
        for _ in range(reps):
            seq.append(timed(sequential))
            conc.append(timed(concurrent))
            again.append(timed(concurrent))  # right after: are the connections kept?
    finally:
        loop.close()
    total = calls * frames
    speedups = [s["wall"] / c["wall"] for s, c in zip(seq, conc, strict=True)]
    return {
        "protocol": protocol,
        "calls": calls,
        "frames": frames,
        "speedup": {"median": statistics.median(speedups), "min": min(speedups),
                    "max": max(speedups)},
        "seq_frames_per_s": statistics.median(total / s["wall"] for s in seq),
        "conc_frames_per_s": statistics.median(total / c["wall"] for c in conc),
        "seq_cpu_per_frame": statistics.median(s["cpu"] / total for s in seq),
        "conc_cpu_per_frame": statistics.median(c["cpu"] / total for c in conc),
        "seq_connections": [s["connections"] for s in seq],
        "conc_connections": [c["connections"] for c in conc],
        "again_connections": [c["connections"] for c in again],
    }
