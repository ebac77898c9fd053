"""Trace a streamed LlamaIndex chat with OpenTelemetry (OpenInference) and print the tree.

    python examples/tracing_llamaindex.py ["question"] [--otlp http://127.0.0.1:6006/v1/traces]

Without DASHSCOPE_API_KEY it starts the local emulator in-process (offline); with a key it
calls the hosted service. Every executed code block is a ``code_interpreter`` TOOL span
under the call's LLM span, its code as the input; the LLM span carries the thinking as
reasoning content, the token counts (reasoning included), and the run count and request
id in its metadata. With ``--otlp`` the spans also go to that collector (a local Arize
Phoenix: see docs/tracing.md).
Needs: pip install "qwen-code-interpreter[llamaindex-tracing,emulator]" (OpenTelemetry and
openinference-instrumentation-llama-index; and opentelemetry-exporter-otlp-proto-http for --otlp)
"""

from __future__ import annotations

import os
import sys

from _backend import backend, tracing_extra_missing
from llama_index.core.llms import ChatMessage

from llamaindex_qwen_ci import QwenCodeInterpreter

try:  # OpenTelemetry and OpenInference are not dependencies of the package
    from _trace import parse_args, provider, tree
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
except ImportError as missing:
    sys.exit(tracing_extra_missing(missing, "llamaindex-tracing"))


def main() -> int:
    args = parse_args("First compute 123 to the power of 23, then divide that by 5")
    tracer_provider, memory = provider(args.otlp, args.project)
    LlamaIndexInstrumentor().instrument(tracer_provider=tracer_provider)
    with backend(os.environ.get("DASHSCOPE_BASE_URL")) as settings:
        llm = QwenCodeInterpreter(**settings)
        answer = ""
        for chunk in llm.stream_chat([ChatMessage(role="user", content=args.question)]):
            answer += chunk.delta or ""
        print("answer:", answer)
    tracer_provider.force_flush()
    print(tree(memory.get_finished_spans()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
