"""A short run of the benchmark code (``benchmarks/run.py --quick``), so that it does not
rot: every figure is produced and is a positive number. Timing targets are not checked
here (``make bench`` measures them)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"

pytest.importorskip("ipykernel", reason="the sandbox section needs the emulator extra")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_quick_run_produces_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("\t")
        figures[key] = float(value)

    expected = [
        "ratio.core.dashscope/floor.native",
        "ratio.core.dashscope.async/floor.native.async",
        "ratio.core.openai/floor.compat",
        "ratio.core.openai.async/floor.compat.async",
        "cpu_per_frame.lc.dashscope.stream",
        "cpu_per_frame.lc.openai.invoke",
        "cpu_per_frame.li.dashscope.stream_chat",
        "cpu_per_frame.li.openai.chat",
        "scaling.core.dashscope.400",
        "scaling.li.dashscope.chat.100",
        "memory.lc.dashscope.invoke.ratio",
        "concurrency.dashscope.speedup",
        "concurrency.openai.conc_connections",
        "sandbox.cold_start.p50",
        "sandbox.warm_run.p95",
        "sandbox.e2e.p50",
        "sandbox.concurrent.wall",
        "imports.qwen_ci.cpu",
        "imports.langchain_qwen_ci.cpu",
        "imports.llamaindex_qwen_ci.cpu",
        "imports.cli_help.wall",
    ]
    if _installed("openai"):
        expected.append("cpu_per_frame.sdk.loop")
    if _installed("langchain_openai"):
        expected += ["ratio.lc.dashscope.stream/chatopenai.stream",
                     "ratio.lc.openai.invoke/chatopenai.invoke",
                     "ratio.import.langchain_qwen_ci/langchain_openai"]
    missing = [key for key in expected if key not in figures]
    assert not missing, f"figures not produced: {missing}\n{proc.stderr[-2000:]}"
    bad = {key: value for key, value in figures.items() if not value > 0}
    assert not bad, f"figures that are not positive numbers: {bad}"

    report = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## Targets", "## 1–2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.",
                    "## 8."):
        assert heading in report
    if _installed("matplotlib"):
        assert (tmp_path / "results.png").stat().st_size > 0
