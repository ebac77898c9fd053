"""Side virtual environments for test-only tools whose pins clash with the project's.

``side_venv("phoenix", ["arize-phoenix==..."])`` creates ``.venvs/phoenix`` once (cached
by a hash of its inputs), installs the requirements with ``uv`` (from the dev extra) or
pip, and returns the environment's python. Where the packages cannot be installed (no
registry, no wheel for this platform) the calling test is skipped with pip's own reason,
so a skip always says why; a failure of the tools once installed is a test failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venvs"


def _uv() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return str(find_uv_bin())


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


#: what installers print when the registry cannot be reached (as opposed to a conflict)
_NETWORK_ERRORS = ("failed to fetch", "error sending request", "dns error", "connection refused",
                   "network is unreachable", "failed to lookup address", "tcp connect error",
                   "temporary failure in name resolution", "max retries exceeded",
                   "could not fetch", "operation timed out", "connecterror")


def _unreachable(output: str) -> bool:
    lowered = output.lower()
    return any(marker in lowered for marker in _NETWORK_ERRORS)


def side_venv(
    name: str,
    requirements: Sequence[str],
    *,
    with_project: str | None = None,
    timeout: float = 900,
    must_resolve: bool = False,
) -> Path:
    """Return the python of ``.venvs/<name>`` holding ``requirements``; skip if uninstallable.

    ``with_project`` installs this repository too, with those extras (``"langchain"``,
    ``"all"``, or ``""`` for the core alone), non-editable, so the side environment sees
    the project as a user's pip would. With ``must_resolve`` the installation itself is
    under test: a failure fails the test, and only an unreachable registry skips it.
    """
    spec = {"requirements": list(requirements), "project": with_project, "py": sys.version}
    if with_project is not None:
        # the project's own metadata decides what it pulls in; a change re-creates the venv
        spec["pyproject"] = (ROOT / "pyproject.toml").read_text()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".stamp"
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    reqs = list(requirements)
    if with_project is not None:
        reqs.append(f"{ROOT}[{with_project}]" if with_project else str(ROOT))
    if uv:
        made = _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], timeout)
        install = [uv, "pip", "install", "-q", "--python", str(python), *reqs]
    else:
        made = _run([sys.executable, "-m", "venv", str(venv)], timeout)
        install = [str(python), "-m", "pip", "install", "-q", *reqs]
    if made.returncode != 0:
        pytest.fail(f"could not create the side venv {venv}: {made.stderr.strip()}")
    done = _run(install, timeout)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        if must_resolve and not _unreachable(output):
            pytest.fail(f"side venv {name!r}: {' '.join(reqs)} cannot be installed together:"
                        f"\n{output}", pytrace=False)
        reason = output.splitlines()[-5:]
        pytest.skip(f"side venv {name!r}: {' '.join(reqs)} could not be installed: {reason}")
    stamp.write_text(digest)
    return python
