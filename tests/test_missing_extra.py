"""Without the emulator extra, the emulator says which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HINT = "pip install 'qwen-code-interpreter[emulator]'"


def without_starlette(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run python with a ``starlette`` that cannot be imported (as when it is missing)."""
    fake = tmp_path / "starlette"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'starlette'\", name='starlette')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_importing_the_emulator_names_the_extra(tmp_path: Path) -> None:
    done = without_starlette(tmp_path, "-c", "from qwen_ci_server.emulator import Emulator")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: qwen_ci_server.emulator needs the emulator extra (starlette is "
        f"missing): {HINT}")


@pytest.mark.parametrize(
    "command", [["-m", "qwen_ci_server.emulator"], ["-m", "qwen_ci.cli", "emulator"]]
)
def test_running_the_emulator_names_the_extra_without_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    done = without_starlette(tmp_path, *command, "--port", "0")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and HINT in done.stderr


def test_the_scripted_model_needs_no_extra(tmp_path: Path) -> None:
    done = without_starlette(tmp_path, "-c", "from qwen_ci_server.emulator import ScriptedModel; "
                             "print(ScriptedModel.name)")
    assert done.returncode == 0 and done.stdout.strip() == "scripted"
