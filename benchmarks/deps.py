"""The LlamaIndex baseline (``OpenAILike``) without downgrading the openai SDK.

``llama-index-llms-openai`` (under ``llama-index-llms-openai-like``) declares
``openai<3``, while this project needs ``openai>=3``: a plain ``pip install`` would
downgrade the SDK under the project, so these two pure-Python packages cannot sit in
``requirements.txt``. They are installed with ``--no-deps`` into ``benchmarks/.deps``
(outside the virtualenv, which stays consistent for ``pip check`` and the tests) and
put on ``sys.path`` for the benchmark only. Their code runs unchanged on openai 3; every
other dependency they need (``llama-index-core``) is already installed by the project.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

DEPS = Path(__file__).resolve().parent / ".deps"
PINNED = ("llama-index-llms-openai==0.8.3", "llama-index-llms-openai-like==0.8.1")


def _on_path() -> None:
    if DEPS.is_dir() and str(DEPS) not in sys.path:
        sys.path.append(str(DEPS))
        # ``llama_index`` is a namespace package: let it see the new portion
        import llama_index

        path = getattr(llama_index, "__path__", None)
        portion = str(DEPS / "llama_index")
        if path is not None and portion not in list(path):
            path.append(portion)


def openai_like_available() -> bool:
    """True when ``llama_index.llms.openai_like`` imports (from the venv or ``.deps``)."""
    _on_path()
    try:
        importlib.import_module("llama_index.llms.openai_like")
    except ImportError:
        return False
    return True


def ensure_openai_like(install: bool = True) -> bool:
    """Make ``OpenAILike`` importable, installing it into ``.deps`` when allowed."""
    if openai_like_available():
        return True
    if not install:
        return False
    print(f"installing {', '.join(PINNED)} into {DEPS} (--no-deps, see benchmarks/deps.py)")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade",
         "--target", str(DEPS), *PINNED],
        check=True,
    )
    importlib.invalidate_caches()
    return openai_like_available()
