"""Timing: CPU of this (client) process and wall time, interleaved repetitions, ratios.

The frame server runs in another process, so ``time.process_time()`` here is the
client's CPU only. Cases of one group run interleaved (every repetition runs each case
once, in a rotated order), so a ratio of two cases compares samples taken seconds apart
on the same loaded machine; each figure is the median over repetitions, with the spread
(min–max).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cases import Runner


@dataclass
class Sample:
    cpu: float  # seconds of client CPU
    wall: float  # seconds
    items: int  # what the runner returned


@dataclass
class Stat:
    """Median and spread of per-repetition values."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        m, lo, hi = self.median * scale, self.lo * scale, self.hi * scale
        return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "values": self.values}


COLLECT = True
"""Collect garbage before each call (off in the smoke run, where it dominates)."""


def run_once(runner: Runner, loop: asyncio.AbstractEventLoop | None) -> Sample:
    """One call, timed; garbage from earlier calls is collected first."""
    if COLLECT:
        gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = runner()
    if inspect.isawaitable(result):
        assert loop is not None
        items = loop.run_until_complete(cast(Awaitable[int], result))
    else:
        items = cast(int, result)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    if items <= 0:
        raise RuntimeError("a benchmark call produced nothing")
    return Sample(cpu1 - cpu0, wall1 - wall0, items)


def interleaved(
    runners: dict[str, Runner],
    reps: int,
    loop: asyncio.AbstractEventLoop | None,
    progress: Callable[[str], None] | None = None,
    warm: bool = True,
) -> dict[str, list[Sample]]:
    """Warm each runner once, then ``reps`` rounds of every runner (order rotated)."""
    keys = list(runners)
    if warm:
        for key in keys:
            run_once(runners[key], loop)
    samples: dict[str, list[Sample]] = {key: [] for key in keys}
    for rep in range(reps):
        shift = rep % len(keys)
        for key in keys[shift:] + keys[:shift]:
            samples[key].append(run_once(runners[key], loop))
        if progress:
            progress(f"  round {rep + 1}/{reps}")
    return samples


def per_frame(samples: Sequence[Sample], frames: int, attr: str = "cpu") -> Stat:
    return Stat([getattr(s, attr) / frames for s in samples])


def ratio(a: Sequence[Sample], b: Sequence[Sample], attr: str = "cpu") -> Stat:
    """Per-round ratio a/b (rounds are paired: the samples were taken side by side)."""
    return Stat([getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True)])
