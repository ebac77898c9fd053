"""Self-hosted code interpreter: any OpenAI-compatible model, a local sandbox, DashScope's
wire format.

``qwen-ci serve`` (or :func:`create_serve_app` / :class:`SelfHost`) serves the emulator's
endpoints with :class:`UpstreamModel` as the model: the upstream (vLLM, Ollama, llama.cpp,
LM Studio, DashScope's compatible mode...) gets one ``code_interpreter`` function tool,
the code runs in the request's sandbox, and clients see thinking, ``tool_info`` and the
answer exactly as from the hosted service. Needs the ``emulator`` extra; names are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen_ci_server._lazy import lazy_exports

if TYPE_CHECKING:
    from qwen_ci_server.selfhost.app import SelfHost, create_serve_app, serve
    from qwen_ci_server.selfhost.config import (
        INSTRUCTIONS,
        TOOL,
        ServeConfig,
        UpstreamConfig,
    )
    from qwen_ci_server.selfhost.gate import Gate
    from qwen_ci_server.selfhost.logs import JsonFormatter, RequestStats, configure_logging
    from qwen_ci_server.selfhost.think import ThinkSplitter
    from qwen_ci_server.selfhost.upstream import UpstreamModel

_EXPORTS = {
    "SelfHost": "app", "create_serve_app": "app", "serve": "app",
    "INSTRUCTIONS": "config", "TOOL": "config", "ServeConfig": "config",
    "UpstreamConfig": "config",
    "Gate": "gate",
    "JsonFormatter": "logs", "RequestStats": "logs", "configure_logging": "logs",
    "ThinkSplitter": "think",
    "UpstreamModel": "upstream",
}

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "INSTRUCTIONS",
    "TOOL",
    "Gate",
    "JsonFormatter",
    "RequestStats",
    "SelfHost",
    "ServeConfig",
    "ThinkSplitter",
    "UpstreamConfig",
    "UpstreamModel",
    "configure_logging",
    "create_serve_app",
    "serve",
]
