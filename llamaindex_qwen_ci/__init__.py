"""LlamaIndex integration for Qwen's hosted code interpreter."""

from llamaindex_qwen_ci.base import QwenCodeInterpreter
from qwen_ci.version import __version__

__all__ = ["QwenCodeInterpreter", "__version__"]
