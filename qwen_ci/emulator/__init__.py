"""A local emulator of DashScope's code interpreter, with a real sandbox.

Same endpoints, framing and errors as the hosted service (native text and multimodal
generation, compatible-mode chat completions), backed by a pluggable model (default: a
deterministic scripted model) that runs real Python in :mod:`qwen_ci.sandbox`.
Needs the ``emulator`` extra; the core package never imports it.
"""

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
