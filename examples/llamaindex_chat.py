"""LlamaIndex: ask Qwen a question it answers by running Python; show the code it ran.

    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_chat.py ["your question"]
    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_chat.py --base-url http://127.0.0.1:8765

Without a key (and without --base-url) it runs against the local emulator, offline.
"""

from __future__ import annotations

import argparse
import sys

from _backend import backend
from llama_index.core.llms import ChatMessage

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import QwenCIError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default="123的21次方是多少？")
    parser.add_argument("--base-url", default=None, help="service root (default: region host)")
    parser.add_argument("--region", default="cn-beijing")
    parser.add_argument("--model", default="qwen3-max-preview")
    args = parser.parse_args()
    with backend(args.base_url, args.region) as settings:
        llm = QwenCodeInterpreter(model=args.model, **settings)
        try:
            response = llm.chat([ChatMessage(role="user", content=args.question)])
        except QwenCIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        extra = response.message.additional_kwargs
        print(f"thinking: {extra['reasoning_content']}\n")
        for number, run in enumerate(extra["tool_info"], start=1):
            print(f"[code run {number}]\n{run['code_interpreter']['code']}\n")
        print(f"answer: {response.message.content}")
        usage = response.additional_kwargs
        runs = usage.get("plugins", {}).get("code_interpreter", {}).get("count", 0)
        print(
            f"tokens: prompt {usage.get('prompt_tokens')}, "
            f"completion {usage.get('completion_tokens')}"
            f" (reasoning {usage.get('reasoning_tokens')}); code runs: {runs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
