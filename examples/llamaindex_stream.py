"""LlamaIndex streaming: thinking, each executed code block as soon as it is final, answer.

    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_stream.py ["your question"]
    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_stream.py --base-url http://127.0.0.1:8765

Without a key (and without --base-url) it runs against the local emulator, offline.
"""

from __future__ import annotations

import argparse
import os
import sys

from _backend import backend
from llama_index.core.llms import ChatMessage

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import QwenCIError

NO_KEY = (
    "DASHSCOPE_API_KEY is not set: create a key in the Model Studio console of your region "
    "and export it (or pass --base-url to a compatible server) to run this example."
)
COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
DIM, BOLD, RESET = ("\033[2m", "\033[1m", "\033[0m") if COLOR else ("", "", "")


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
        try:
            for chunk in llm.stream_chat([ChatMessage(role="user", content=args.question)]):
                last = chunk
                if thinking := chunk.additional_kwargs.get("thinking_delta"):
                    print(f"{DIM}{thinking}{RESET}", end="", flush=True)
                for run in chunk.additional_kwargs.get("tool_info_delta", []):
                    print(f"\n{BOLD}[code executed]{RESET}\n{run['code_interpreter']['code']}\n")
                print(chunk.delta or "", end="", flush=True)
        except QwenCIError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        print()
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
