"""A local emulator of DashScope's code interpreter, with a real sandbox.

Same endpoints, framing and errors as the hosted service (native text and multimodal
generation, compatible-mode chat completions), backed by a pluggable model (default: a
deterministic scripted model) that runs real Python in :mod:`qwen_ci_server.sandbox`.
Needs the ``emulator`` extra. Names are imported on first use, so a missing extra is
reported with the install line, not a bare traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen_ci_server._lazy import lazy_exports

if TYPE_CHECKING:
    from qwen_ci_server.emulator.app import create_app
    from qwen_ci_server.emulator.config import EmulatorConfig
    from qwen_ci_server.emulator.engine import Engine, Frame, Generation, estimate_tokens
    from qwen_ci_server.emulator.model import (
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
    from qwen_ci_server.emulator.script import ScenarioModel, ScriptError, load_script
    from qwen_ci_server.emulator.scripted import ScriptedModel
    from qwen_ci_server.emulator.server import Emulator

_EXPORTS = {
    "EmulatorConfig": "config", "create_app": "app",
    "Engine": "engine", "Frame": "engine", "Generation": "engine", "estimate_tokens": "engine",
    "Answer": "model", "Message": "model", "Model": "model", "Piece": "model", "Run": "model",
    "RunCode": "model", "SearchResults": "model", "Thinking": "model", "Turn": "model",
    "TurnUsage": "model",
    "ScenarioModel": "script", "ScriptError": "script", "load_script": "script",
    "ScriptedModel": "scripted",
    "Emulator": "server",
}

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

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
