"""Trace a streamed LangChain chain with OpenTelemetry (OpenInference) and print the tree.

    python examples/tracing_langchain.py ["question"] [--otlp http://127.0.0.1:6006/v1/traces]

Without DASHSCOPE_API_KEY it starts the local emulator in-process (offline); with a key it
calls the hosted service. Every executed code block is a ``code_interpreter`` TOOL span
under the model's LLM span, its code as the input; the LLM span carries the answer, the
token counts (reasoning included) and the thinking as reasoning content. With ``--otlp``
the spans also go to that collector (a local Arize Phoenix: see docs/tracing.md).
Needs: pip install "qwen-code-interpreter[langchain-tracing,emulator]" (OpenTelemetry and
openinference-instrumentation-langchain; and opentelemetry-exporter-otlp-proto-http for --otlp)
"""

from __future__ import annotations

import os
import sys

from _backend import backend, tracing_extra_missing
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_qwen_ci import ChatQwenCodeInterpreter

try:  # OpenTelemetry and OpenInference are not dependencies of the package
    from _trace import parse_args, provider, tree
    from openinference.instrumentation.langchain import LangChainInstrumentor
except ImportError as missing:
    sys.exit(tracing_extra_missing(missing, "langchain-tracing"))


def main() -> int:
    args = parse_args("First compute 123 to the power of 23, then divide that by 5")
    tracer_provider, memory = provider(args.otlp, args.project)
    LangChainInstrumentor().instrument(tracer_provider=tracer_provider)
    with backend(os.environ.get("DASHSCOPE_BASE_URL")) as settings:
        llm = ChatQwenCodeInterpreter(**settings)
        prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
        chain = prompt | llm | StrOutputParser()
        print("answer:", "".join(chain.stream({"question": args.question})))
    tracer_provider.force_flush()
    print(tree(memory.get_finished_spans()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
