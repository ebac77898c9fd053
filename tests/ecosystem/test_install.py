"""The project installs beside the ecosystem, and works at the lowest versions it declares.

Two side environments (``tests/ecosystem/venvs.py``, built with uv, cached under
``.venvs/``), each running the core's and both adapters' suites:

- ``ecosystem``: ``qwen-code-interpreter[all]`` with the current ``llama-index`` meta-package
  (which pins ``openai<3`` through ``llama-index-llms-openai``), ``langchain-openai`` and
  ``langchain-community``, in one environment. This is the resolution check: a conflict
  fails the test; only an unreachable registry skips it.
- ``floor``: the lowest version of every framework dependency ``pyproject.toml`` declares
  (``httpx``, ``langchain-core``, ``llama-index-core``, ``llama-index-instrumentation``),
  read from it, so that raising a floor there moves this test with it.

The suites run there are the ones that exercise the declared dependencies (the core, the
adapters, errors, pools, options, imports); the tracing suites (#12, optional
OpenTelemetry/OpenInference extras) and the emulator/sandbox suites run in the main
environment only.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.ecosystem.venvs import ROOT, side_venv

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: the test tools of the dev extra, with the project's own version ranges
TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "pytest-benchmark", "hypothesis",
         "langchain-tests")
SUITES = (
    "tests/core",
    "tests/langchain/test_chat_model.py",
    "tests/langchain/test_standard.py",
    "tests/langchain/test_errors.py",
    "tests/llamaindex/test_llm.py",
    "tests/reliability/test_pools.py",
    "tests/ecosystem/test_options.py",
    "tests/ecosystem/test_imports.py",
)
#: langgraph is a dev tool of the main environment, not a dependency under test
DESELECT = "not langgraph"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def tool_requirements() -> list[str]:
    return [r for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
            if _name(r) in TOOLS]


def floors() -> list[str]:
    """``name==lowest`` for the core's and the adapters' dependencies."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = [*PYPROJECT["project"]["dependencies"], *extras["langchain"],
                *extras["llamaindex"]]
    pins = []
    for requirement in declared:
        match = re.search(r">=\s*([\w.]+)", requirement)
        assert match, f"{requirement!r} in pyproject.toml has no lower bound"
        pins.append(f"{_name(requirement)}=={match.group(1)}")
    return pins


def run_suites(python: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-k", DESELECT,
         *SUITES],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )


def versions(python: Path, *names: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = 'absent'\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True,
                          check=True, timeout=60)
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(1500)
def test_installs_beside_llama_index_and_langchain_and_the_suites_pass() -> None:
    python = side_venv(
        "ecosystem",
        ["llama-index>=0.14", "langchain-openai", "langchain-community", *tool_requirements()],
        with_project="all",
        must_resolve=True,
    )
    found = versions(python, "llama-index", "llama-index-core", "llama-index-llms-openai",
                     "langchain-openai", "langchain-community", "openai")
    assert int(found["llama-index"].split(".")[1]) >= 14, found  # not a 2024 llama-index
    assert found["openai"] != "absent", found  # the SDK is there; the project must ignore it
    done = run_suites(python)
    assert done.returncode == 0, f"{found}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"


@pytest.mark.timeout(1500)
def test_suites_pass_at_the_declared_floors() -> None:
    pins = floors()
    python = side_venv("floor", [*pins, *tool_requirements()], with_project="all",
                       must_resolve=True)
    found = versions(python, *(p.split("==")[0] for p in pins))
    for pin in pins:  # "1.6" is installed as "1.6.0"
        name, low = pin.split("==")
        assert found[name].startswith(low), (pin, found)
    done = run_suites(python)
    assert done.returncode == 0, f"{found}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
