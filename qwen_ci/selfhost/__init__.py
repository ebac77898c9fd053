"""Self-hosted code interpreter: any OpenAI-compatible model, a local sandbox, DashScope's
wire format.

``qwen-ci serve`` (or :func:`create_serve_app` / :class:`SelfHost`) serves the emulator's
endpoints with :class:`UpstreamModel` as the model: the upstream (vLLM, Ollama, llama.cpp,
LM Studio, DashScope's compatible mode...) gets one ``code_interpreter`` function tool,
the code runs in the request's sandbox, and clients see thinking, ``tool_info`` and the
answer exactly as from the hosted service. Needs the ``emulator`` extra.
"""

from qwen_ci.selfhost.app import SelfHost, ServeConfig, create_serve_app, serve
from qwen_ci.selfhost.gate import Gate
from qwen_ci.selfhost.logs import JsonFormatter, RequestStats, configure_logging
from qwen_ci.selfhost.think import ThinkSplitter
from qwen_ci.selfhost.upstream import INSTRUCTIONS, TOOL, UpstreamConfig, UpstreamModel

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
