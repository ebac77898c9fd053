"""LangChain integration for Qwen's hosted code interpreter."""

from langchain_qwen_ci.chat_models import ChatQwenCodeInterpreter
from langchain_qwen_ci.content_blocks import PROVIDER
from qwen_ci.version import __version__

__all__ = ["PROVIDER", "ChatQwenCodeInterpreter", "__version__"]
