"""LlamaIndex integration for Qwen's hosted code interpreter."""

from llamaindex_qwen_ci.base import QwenCodeInterpreter
from llamaindex_qwen_ci.runs import CodeRunCollector, CodeRunRecord, code_runs
from qwen_ci.version import __version__

__all__ = ["CodeRunCollector", "CodeRunRecord", "QwenCodeInterpreter", "__version__",
           "code_runs"]
