"""Wire protocols: each turns SSE events into the core's normalized events."""

from qwen_ci.protocols.dashscope import DashScopeParser
from qwen_ci.protocols.openai_compat import OpenAICompatParser
from qwen_ci.protocols.responses import ResponsesParser
from qwen_ci.protocols.sse import SSEDecoder, SSEEvent

__all__ = ["DashScopeParser", "OpenAICompatParser", "ResponsesParser", "SSEDecoder", "SSEEvent"]
