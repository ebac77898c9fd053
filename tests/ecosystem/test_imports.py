"""Start-up: importing the packages loads no ``openai`` and, for the core and the
command, no HTTP stack; the public surfaces are pinned; one version everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest

import langchain_qwen_ci
import llamaindex_qwen_ci
import qwen_ci


def loaded_after(code: str) -> set[str]:
    """Top-level module names in ``sys.modules`` after running ``code`` in a fresh python."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize(
    "code",
    ["import qwen_ci", "import langchain_qwen_ci", "import llamaindex_qwen_ci",
     "from qwen_ci import Client, Options, build, collect"],
)
def test_imports_do_not_load_openai(code: str) -> None:
    assert "openai" not in loaded_after(code)


def test_core_and_command_start_without_the_http_stack() -> None:
    # `qwen-ci --help` parses arguments only: no httpx (and no rich behind it), no emulator
    loaded = loaded_after("import qwen_ci, qwen_ci.cli\n"
                          "try:\n    qwen_ci.cli.main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & {"httpx", "httpcore", "openai", "rich", "starlette", "uvicorn",
                         "jupyter_client"}


def test_help_answers() -> None:
    done = subprocess.run([sys.executable, "-m", "qwen_ci.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "emulator" in done.stdout


def test_public_surfaces_are_pinned() -> None:
    assert sorted(qwen_ci.__all__) == sorted([
        "AsyncClient", "Client", "Options", "Result", "acollect", "build", "collect",
        "CodeRun", "CodeStart", "Event", "Finish", "ReasoningDelta", "SearchInfo",
        "TextDelta", "ToolRun", "ToolStart", "Usage",
        "APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError",
        "BadRequestError", "IncompleteStreamError", "InvalidRequestError", "NotFoundError",
        "PermissionDeniedError", "ProtocolError", "QuotaExceededError", "QwenCIError",
        "RateLimitError", "ServerError", "ServiceUnavailableError", "StreamError",
        "__version__",
    ])
    assert langchain_qwen_ci.__all__ == ["PROVIDER", "ChatQwenCodeInterpreter", "__version__"]
    assert llamaindex_qwen_ci.__all__ == ["CodeRunCollector", "CodeRunRecord",
                                          "QwenCodeInterpreter", "__version__", "code_runs"]
    for package in (qwen_ci, langchain_qwen_ci, llamaindex_qwen_ci):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)


def test_plumbing_stays_in_its_submodules() -> None:
    for name in ("Accumulator", "WireRequest", "resolve_base_url", "model_info", "Session"):
        assert not hasattr(qwen_ci, name), name
    from qwen_ci.config import model_info, resolve_base_url  # noqa: F401
    from qwen_ci.request import WireRequest  # noqa: F401
    from qwen_ci.result import Accumulator  # noqa: F401
    from qwen_ci.session import Session  # noqa: F401


def test_one_version() -> None:
    assert qwen_ci.__version__ == langchain_qwen_ci.__version__ == llamaindex_qwen_ci.__version__
    assert version("qwen-code-interpreter") == qwen_ci.__version__
    from qwen_ci.client import _USER_AGENT

    assert _USER_AGENT.endswith("/" + qwen_ci.__version__)
