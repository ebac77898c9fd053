"""LangChain integration for Qwen's hosted code interpreter."""

from langchain_qwen_ci.chat_models import ChatQwenCodeInterpreter
from langchain_qwen_ci.content_blocks import PROVIDER

__all__ = ["PROVIDER", "ChatQwenCodeInterpreter"]
