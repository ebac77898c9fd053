"""A local emulator of DashScope's code interpreter, with a real sandbox.

Same endpoints, framing and errors as the hosted service (native text and multimodal
generation, compatible-mode chat completions), backed by a pluggable model (default: a
deterministic scripted model) that runs real Python in :mod:`qwen_ci.sandbox`.
Needs the ``emulator`` extra; the core package never imports it. Names are imported on
first use, so a missing extra is reported with the install line, not a bare traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qwen_ci.emulator.app import EmulatorConfig, create_app
    from qwen_ci.emulator.engine import Engine, Frame, Generation, estimate_tokens
    from qwen_ci.emulator.model import (
        Answer,
        Message,
        Model,
        Piece,
        Run,
        RunCode,
        SearchResults,
        Thinking,
        Turn,
        TurnUsage,
    )
    from qwen_ci.emulator.script import ScenarioModel, ScriptError, load_script
    from qwen_ci.emulator.scripted import ScriptedModel
    from qwen_ci.emulator.server import Emulator

EXTRA_HINT = "pip install 'qwen-code-interpreter[emulator]'"
_EXTRA_MODULES = {"starlette", "uvicorn", "jupyter_client", "ipykernel", "yaml", "anyio", "zmq"}
_EXPORTS = {
    "EmulatorConfig": "app", "create_app": "app",
    "Engine": "engine", "Frame": "engine", "Generation": "engine", "estimate_tokens": "engine",
    "Answer": "model", "Message": "model", "Model": "model", "Piece": "model", "Run": "model",
    "RunCode": "model", "SearchResults": "model", "Thinking": "model", "Turn": "model",
    "TurnUsage": "model",
    "ScenarioModel": "script", "ScriptError": "script", "load_script": "script",
    "ScriptedModel": "scripted",
    "Emulator": "server",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qwen_ci.emulator' has no attribute {name!r}")
    try:
        loaded = importlib.import_module(f"qwen_ci.emulator.{module}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _EXTRA_MODULES:
            raise ModuleNotFoundError(
                f"qwen_ci.emulator needs the emulator extra ({exc.name} is missing): "
                f"{EXTRA_HINT}",
                name=exc.name,
            ) from exc
        raise
    value = getattr(loaded, name)
    globals()[name] = value
    return value


__all__ = [
    "Answer",
    "Emulator",
    "EmulatorConfig",
    "Engine",
    "Frame",
    "Generation",
    "Message",
    "Model",
    "Piece",
    "Run",
    "RunCode",
    "ScenarioModel",
    "ScriptError",
    "ScriptedModel",
    "SearchResults",
    "Thinking",
    "Turn",
    "TurnUsage",
    "create_app",
    "estimate_tokens",
    "load_script",
]
