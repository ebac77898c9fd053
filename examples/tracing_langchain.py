"""Trace a LangChain chain with OpenTelemetry (OpenInference) and print what the spans hold.

    python examples/tracing_langchain.py ["question"]

Without DASHSCOPE_API_KEY it starts the local emulator in-process (offline); with a key it
calls the hosted service. The LLM span carries the answer, the token counts (reasoning
included) and, in its output value, the thinking and every executed code block.
Needs: pip install "qwen-code-interpreter[all]" opentelemetry-sdk
openinference-instrumentation-langchain
"""

from __future__ import annotations

import json
import os
import sys

from _backend import backend
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langchain_qwen_ci import ChatQwenCodeInterpreter


def render(span: ReadableSpan) -> str:
    """A readable account of one LLM span."""
    attrs = dict(span.attributes or {})
    lines = [f"span {span.name!r} ({attrs.get('llm.provider')}/{attrs.get('llm.model_name')})"]
    output = json.loads(str(attrs.get("output.value", "{}")))
    message = output["generations"][0][0]["message"]["kwargs"]
    extra = message.get("additional_kwargs", {})
    lines.append("  thinking: " + " ".join(extra.get("reasoning_content", "").split())[:300])
    for index, run in enumerate(extra.get("tool_info", [])):
        code = run["code_interpreter"]["code"].replace("\n", "\n      ")
        lines.append(f"  code #{index}:\n      {code}")
    lines.append(f"  answer: {attrs.get('llm.output_messages.0.message.content')}")
    lines.append(
        f"  tokens: prompt {attrs.get('llm.token_count.prompt')}, completion "
        f"{attrs.get('llm.token_count.completion')} (reasoning "
        f"{attrs.get('llm.token_count.completion_details.reasoning')})"
    )
    return "\n".join(lines)


def main() -> int:
    question = sys.argv[1] if len(sys.argv) > 1 else "What is 123 to the power of 21?"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    LangChainInstrumentor().instrument(tracer_provider=provider)
    with backend(os.environ.get("DASHSCOPE_BASE_URL")) as settings:
        llm = ChatQwenCodeInterpreter(**settings)
        prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
        chain = prompt | llm | StrOutputParser()
        print("answer:", chain.invoke({"question": question}))
    for span in exporter.get_finished_spans():
        if (span.attributes or {}).get("openinference.span.kind") == "LLM":
            print(render(span))
    return 0


if __name__ == "__main__":
    sys.exit(main())
