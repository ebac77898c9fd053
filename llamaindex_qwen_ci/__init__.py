"""LlamaIndex integration for Qwen's hosted code interpreter."""

from llamaindex_qwen_ci.base import QwenCodeInterpreter

__all__ = ["QwenCodeInterpreter"]
