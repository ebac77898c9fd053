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

The suites run there (both at once) are the ones that exercise the declared dependencies:
the HTTP client (httpx), both adapters (each framework), their errors, pools and options,
and in ``ecosystem`` the check that ``openai``, installed there, is never imported. The
request building and the parsers use the standard library only, and httpx's floor is its
current release (0.28.1): they run in the main environment. The tracing suites (optional
OpenTelemetry/OpenInference tools) and the emulator/sandbox suites run there too.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ecosystem.venvs import ROOT, side_venv

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: the test tools of the dev extra, with the project's own version ranges
TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "pytest-benchmark", "hypothesis",
         "langchain-tests")
#: the suites that exercise the declared dependencies: the adapters (against each
#: framework version), the HTTP client (httpx), pools, options
SUITES = (
    "tests/core/test_client.py",
    "tests/langchain/test_chat_model.py",
    "tests/langchain/test_standard.py",
    "tests/langchain/test_errors.py",
    "tests/llamaindex/test_llm.py",
    "tests/reliability/test_pools.py",
    "tests/ecosystem/test_options.py",
)
#: the ecosystem environment has the openai SDK installed: check it is never imported
ECOSYSTEM_EXTRA = ("tests/ecosystem/test_imports.py::test_imports_do_not_load_openai",)
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


@dataclass
class Run:
    """A suite running in a side environment (both run at once: they wait on I/O and
    each takes one core)."""

    python: Path
    process: subprocess.Popen[bytes]
    log: Path

    def wait(self) -> tuple[int, str]:
        code = self.process.wait(timeout=900)
        return code, self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run | BaseException]]:
    """Build both side environments, then start their suites concurrently. An environment
    that cannot be built keeps its outcome (failure or skip) for its own test."""
    wanted = {
        "ecosystem": (["llama-index>=0.14", "langchain-openai", "langchain-community",
                       *tool_requirements()], (*SUITES, *ECOSYSTEM_EXTRA)),
        "floor": ([*floors(), *tool_requirements()], SUITES),
    }
    out: dict[str, Run | BaseException] = {}
    for name, (requirements, suites) in wanted.items():
        try:
            python = side_venv(name, requirements, with_project="all", must_resolve=True)
        except BaseException as outcome:  # pytest's fail/skip outcomes
            if not isinstance(outcome, pytest.fail.Exception | pytest.skip.Exception):
                raise
            out[name] = outcome
            continue
        log = tmp_path_factory.mktemp(name) / "pytest.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", DESELECT,
                 *suites],
                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            )
        out[name] = Run(python, process, log)
    yield out
    for run in out.values():
        if isinstance(run, Run) and run.process.poll() is None:
            run.process.kill()


def started(runs: dict[str, Run | BaseException], name: str) -> Run:
    run = runs[name]
    if isinstance(run, BaseException):
        raise run
    return run


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
def test_installs_beside_llama_index_and_langchain_and_the_suites_pass(
    runs: dict[str, Run | BaseException],
) -> None:
    run = started(runs, "ecosystem")
    found = versions(run.python, "llama-index", "llama-index-core", "llama-index-llms-openai",
                     "langchain-openai", "langchain-community", "openai")
    assert int(found["llama-index"].split(".")[1]) >= 14, found  # not a 2024 llama-index
    assert found["openai"] != "absent", found  # the SDK is there; the project must ignore it
    code, log = run.wait()
    assert code == 0, f"{found}\n{log[-6000:]}"


@pytest.mark.timeout(1500)
def test_suites_pass_at_the_declared_floors(runs: dict[str, Run | BaseException]) -> None:
    run = started(runs, "floor")
    pins = floors()
    found = versions(run.python, *(p.split("==")[0] for p in pins))
    for pin in pins:  # "1.6" is installed as "1.6.0"
        name, low = pin.split("==")
        assert found[name].startswith(low), (pin, found)
    code, log = run.wait()
    assert code == 0, f"{found}\n{log[-6000:]}"
