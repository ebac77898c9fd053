"""LlamaIndex ReActAgent: your own tools (described in text) plus the code interpreter.

    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_react_agent.py ["your question"]
    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_react_agent.py --base-url http://...

Function calling cannot be combined with the interpreter, so FunctionAgent is refused;
ReActAgent describes tools in the prompt and parses the model's text, which works.
Without a key (and without --base-url) it runs against the local emulator, offline.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _backend import backend
from llama_index.core.agent.workflow import ReActAgent
from llama_index.core.tools import FunctionTool

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import QwenCIError


def exchange_rate(currency: str) -> str:
    """Today's price of one unit of `currency` in euros."""
    return {"USD": "0.92", "GBP": "1.17", "JPY": "0.0061"}.get(currency.upper(), "unknown")


async def ask(llm: QwenCodeInterpreter, question: str) -> None:
    agent = ReActAgent(tools=[FunctionTool.from_defaults(exchange_rate)], llm=llm)
    result = await agent.run(question)
    for call in result.tool_calls:
        print(f"[tool] {call.tool_name}({call.tool_kwargs}) -> {call.tool_output.content}")
    for run in result.response.additional_kwargs.get("tool_info", []):
        print(f"[code executed]\n{run['code_interpreter']['code']}")
    print(f"answer: {result}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?",
                        default="How many euros are 1234.5 USD? Compute it exactly.")
    parser.add_argument("--base-url", default=None, help="service root (default: region host)")
    parser.add_argument("--model", default="qwen3-max-preview")
    args = parser.parse_args()
    with backend(args.base_url, None) as settings:
        llm = QwenCodeInterpreter(model=args.model, **settings)
        try:
            asyncio.run(ask(llm, args.question))
        except QwenCIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
