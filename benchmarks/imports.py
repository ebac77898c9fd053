"""Start-up: how long importing each package takes, ours against the baselines.

Each import runs in a fresh interpreter (so nothing is cached in ``sys.modules``), timed
inside the child around the ``import`` statement only (CPU and wall). Rounds are
interleaved, every module once per round in rotated order, after one untimed warm-up
round (which also writes the ``.pyc`` files); a ratio is computed per round.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import time
from typing import Any

#: (ours, the baseline it is compared with)
PAIRS = [
    ("qwen_ci", "langchain_openai"),
    ("langchain_qwen_ci", "langchain_openai"),
    ("llamaindex_qwen_ci", "llama_index.llms.openai_like"),
]
#: the frameworks alone: what any integration of theirs pays at import
FLOORS = ["langchain_core.language_models.chat_models", "llama_index.core.llms.llm"]
MODULES = ["qwen_ci", "langchain_qwen_ci", "llamaindex_qwen_ci", "langchain_openai",
           "llama_index.llms.openai_like", *FLOORS]
_PROBE = (
    "import sys, time, json\n"
    "w, c = time.perf_counter(), time.process_time()\n"
    "__import__(sys.argv[1])\n"
    "print(json.dumps([time.process_time() - c, time.perf_counter() - w,"
    " 'openai' in sys.modules]))"
)


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _once(module: str) -> tuple[float, float, bool]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    cpu, wall, openai = json.loads(out.splitlines()[-1])
    return float(cpu), float(wall), bool(openai)


def _help_wall() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qwen_ci.cli", "--help"], capture_output=True,
                   check=True, timeout=60)
    return time.perf_counter() - started


def run(reps: int, warm: bool = True) -> dict[str, Any]:
    """Per module: CPU and wall samples, whether openai got imported; per pair: ratios.

    ``warm=False`` (the smoke run) skips the untimed warm-up round.
    """
    modules = [m for m in MODULES if available(m)]
    samples: dict[str, list[tuple[float, float]]] = {m: [] for m in modules}
    loads_openai: dict[str, bool] = {}
    help_walls: list[float] = []
    first = 0 if warm else 1
    for round_index in range(first, reps + 1):
        shift = round_index % len(modules)
        for module in modules[shift:] + modules[:shift]:
            cpu, wall, openai = _once(module)
            loads_openai[module] = openai
            if round_index:  # round 0 is the warm-up
                samples[module].append((cpu, wall))
        wall = _help_wall()
        if round_index:
            help_walls.append(wall)
    ratios: dict[str, list[float]] = {}
    for ours, base in PAIRS:
        if ours in samples and base in samples:
            ratios[f"{ours}/{base}"] = [
                a[0] / b[0] for a, b in zip(samples[ours], samples[base], strict=True)
            ]
    return {"samples": samples, "openai": loads_openai, "ratios": ratios,
            "help": help_walls, "reps": reps}


def median(values: list[float]) -> float:
    return statistics.median(values)
