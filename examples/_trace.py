"""Tracing for the examples: OpenTelemetry into memory (printed as a tree) and, with
``--otlp URL``, also to an OTLP/HTTP collector such as a local Arize Phoenix
(``http://127.0.0.1:6006/v1/traces``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PROJECT = "qwen-code-interpreter"


def parse_args(default_question: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("question", nargs="?", default=default_question)
    parser.add_argument("--otlp", metavar="URL",
                        help="also export the spans over OTLP/HTTP, e.g. to Phoenix: "
                             "http://127.0.0.1:6006/v1/traces")
    parser.add_argument("--project", default=PROJECT, help="Phoenix project name")
    return parser.parse_args()


def provider(otlp: str | None, project: str = PROJECT) -> tuple[TracerProvider,
                                                                 InMemorySpanExporter]:
    """A tracer provider exporting to memory, and to ``otlp`` when given."""
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(
        resource=Resource.create({"openinference.project.name": project}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    if otlp:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SystemExit(
                "--otlp needs: pip install opentelemetry-exporter-otlp-proto-http") from None
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp)))
    return tracer_provider, memory


def _describe(span: ReadableSpan) -> list[str]:
    attrs = dict(span.attributes or {})
    kind = str(attrs.get("openinference.span.kind", "?"))
    line = f"{kind} {span.name}"
    if kind == "LLM":
        line += (f"  (tokens: prompt {attrs.get('llm.token_count.prompt')}, completion "
                 f"{attrs.get('llm.token_count.completion')}, reasoning "
                 f"{attrs.get('llm.token_count.completion_details.reasoning')})")
    lines = [line]
    if kind == "LLM":
        thinking = attrs.get("llm.output_messages.0.message.contents.0.message_content.text")
        if thinking:
            lines.append("  thinking: " + " ".join(str(thinking).split())[:200])
        metadata = attrs.get("metadata")
        if metadata:
            shown = {k: v for k, v in json.loads(str(metadata)).items()
                     if k in ("code_interpreter_count", "request_id")}
            if shown:
                lines.append(f"  metadata: {shown}")
    if kind == "TOOL" and span.name == "code_interpreter":
        lines += ["  " + code for code in str(attrs.get("input.value", "")).splitlines()]
    return lines


def tree(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an indented tree per trace: kind, name, and each run's code."""
    ids = {span.context.span_id for span in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    out: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        out.extend("  " * depth + line for line in _describe(span))
        for child in children.get(span.context.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(out)
