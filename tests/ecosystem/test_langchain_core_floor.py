"""The LangChain tracing tests against the lowest langchain-core pyproject.toml declares, in
a side virtual environment (the main one has the newest)."""

from __future__ import annotations

import subprocess

import pytest

from tests.ecosystem.test_install import floors
from tests.ecosystem.venvs import ROOT, side_venv

FLOOR = next(pin for pin in floors() if pin.startswith("langchain-core=="))


@pytest.mark.timeout(900)
def test_tracing_tests_pass_on_the_lowest_langchain_core() -> None:
    python = side_venv("langchain-core-floor", [
        FLOOR, "langgraph>=1.0,<2",
        "pytest", "pytest-asyncio", "pytest-timeout", "opentelemetry-sdk",
        "openinference-instrumentation-langchain",
    ], with_project="langchain")
    version = subprocess.run([str(python), "-c", "import langchain_core; "
                              "print(langchain_core.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    floor = FLOOR.split("==")[1].split(".")
    assert version.split(".")[: len(floor)] == floor, (version, FLOOR)
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "tests/langchain/test_tracing.py"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
