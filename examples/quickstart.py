"""Quickstart: ask Qwen a question it answers by running Python, and show every step.

    python examples/quickstart.py ["your question"]             # offline: local emulator
    DASHSCOPE_API_KEY=sk-... python examples/quickstart.py      # the hosted service
    python examples/quickstart.py --base-url http://127.0.0.1:8765 "2**100?"

Without a key it starts the local emulator in-process (a deterministic scripted model
that really runs its code in a sandbox); with a key it calls the hosted service (region
cn-beijing unless DASHSCOPE_BASE_URL or --base-url says otherwise). The thinking is
printed dimmed, each executed code block as it becomes final, then the answer and the
token usage. It says which backend it used.
"""

from __future__ import annotations

import argparse
import sys

from _backend import BOLD, DIM, RESET, StreamPrinter, backend
from langchain_core.messages import AIMessageChunk

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import QwenCIError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default="123的21次方是多少？")
    parser.add_argument("--base-url", default=None, help="service root (default: region host)")
    parser.add_argument("--region", default="cn-beijing")
    parser.add_argument("--model", default="qwen3-max-preview")
    args = parser.parse_args()
    with backend(args.base_url, args.region) as settings:
        llm = ChatQwenCodeInterpreter(model=args.model, **settings)  # type: ignore[arg-type]
        return ask(llm, args.question)


def ask(llm: ChatQwenCodeInterpreter, question: str) -> int:
    """Stream one answer, showing thinking, code and answer; then the usage."""
    print(f"{BOLD}Q:{RESET} {question}")
    total: AIMessageChunk | None = None
    printer = StreamPrinter()
    try:
        for chunk in llm.stream(question):
            total = chunk if total is None else total + chunk
            if thinking := chunk.additional_kwargs.get("reasoning_content"):
                printer.thinking(thinking)
            for run in chunk.additional_kwargs.get("tool_info", []):
                printer.code(run["code_interpreter"]["code"])
            if chunk.content:
                printer.answer(str(chunk.content))
    except QwenCIError as exc:
        printer.end()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    printer.end()
    if total is not None and total.usage_metadata:
        usage = total.usage_metadata
        runs = total.response_metadata.get("plugins", {}).get("code_interpreter", {})
        count = runs.get("count", 0)
        print(
            f"{DIM}tokens: in {usage['input_tokens']}, out {usage['output_tokens']} "
            f"(reasoning {usage.get('output_token_details', {}).get('reasoning', 0)}); "
            f"code runs: {'unknown (this protocol returns no code)' if count is None else count}"
            f"{RESET}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
