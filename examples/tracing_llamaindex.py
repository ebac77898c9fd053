"""Trace LlamaIndex calls with OpenTelemetry (OpenInference) and print what the spans hold.

    python examples/tracing_llamaindex.py ["question"]

Without DASHSCOPE_API_KEY it starts the local emulator in-process (offline); with a key it
calls the hosted service. The LLM span carries the answer, the token counts and one
``code_interpreter`` span event per executed code block, in order.
Needs: pip install "qwen-code-interpreter[all]" opentelemetry-sdk
openinference-instrumentation-llama-index
"""

from __future__ import annotations

import os
import sys

from _backend import backend
from llama_index.core.llms import ChatMessage
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llamaindex_qwen_ci import QwenCodeInterpreter
from llamaindex_qwen_ci.tracing import SPAN_EVENT


def render(span: ReadableSpan) -> str:
    """A readable account of one LLM span."""
    attrs = dict(span.attributes or {})
    lines = [f"span {span.name!r} (model {attrs.get('llm.model_name')})"]
    for event in span.events:
        if event.name == SPAN_EVENT:
            event_attrs = dict(event.attributes or {})
            code = str(event_attrs["code_interpreter.code"]).replace("\n", "\n      ")
            lines.append(f"  code #{event_attrs['code_interpreter.index']}:\n      {code}")
    lines.append(f"  answer: {attrs.get('output.value')}")
    lines.append(
        f"  tokens: prompt {attrs.get('llm.token_count.prompt')}, completion "
        f"{attrs.get('llm.token_count.completion')}, total {attrs.get('llm.token_count.total')}"
    )
    return "\n".join(lines)


def main() -> int:
    question = sys.argv[1] if len(sys.argv) > 1 else "What is 123 to the power of 21?"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    LlamaIndexInstrumentor().instrument(tracer_provider=provider)
    with backend(os.environ.get("DASHSCOPE_BASE_URL")) as settings:
        llm = QwenCodeInterpreter(**settings)
        response = llm.chat([ChatMessage(role="user", content=question)])
        thinking = " ".join(response.message.additional_kwargs["reasoning_content"].split())
        print("thinking:", thinking[:300])
        for _chunk in llm.stream_chat([ChatMessage(role="user", content=question)]):
            pass  # a streamed call is traced the same way
    for span in exporter.get_finished_spans():
        if (span.attributes or {}).get("openinference.span.kind") == "LLM":
            print(render(span))
    return 0


if __name__ == "__main__":
    sys.exit(main())
