"""LlamaIndex streaming: thinking, each executed code block as soon as it is final, answer.

    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_stream.py ["your question"]
    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_stream.py --base-url http://127.0.0.1:8765

Without a key (and without --base-url) it runs against the local emulator, offline.
"""

from __future__ import annotations

import argparse
import sys

from _backend import DIM, RESET, StreamPrinter, backend
from llama_index.core.llms import ChatMessage

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import QwenCIError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default="What is the 30th Fibonacci number?")
    parser.add_argument("--base-url", default=None, help="service root (default: region host)")
    parser.add_argument("--region", default="cn-beijing")
    parser.add_argument("--model", default="qwen3-max-preview")
    args = parser.parse_args()
    with backend(args.base_url, args.region) as settings:
        llm = QwenCodeInterpreter(model=args.model, **settings)
        last = None
        printer = StreamPrinter()
        try:
            for chunk in llm.stream_chat([ChatMessage(role="user", content=args.question)]):
                last = chunk
                if thinking := chunk.additional_kwargs.get("thinking_delta"):
                    printer.thinking(thinking)
                for run in chunk.additional_kwargs.get("tool_info_delta", []):
                    printer.code(run["code_interpreter"]["code"])
                if chunk.delta:
                    printer.answer(chunk.delta)
        except QwenCIError as exc:
            printer.end()
            print(f"error: {exc}", file=sys.stderr)
            return 1
        printer.end()
        if last is not None:  # the last chunk is the complete response, usage included
            usage = last.additional_kwargs
            print(
                f"{DIM}tokens: total {usage.get('total_tokens')}, reasoning "
                f"{usage.get('reasoning_tokens')}; code runs: "
                f"{len(last.message.additional_kwargs['tool_info'])}{RESET}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
