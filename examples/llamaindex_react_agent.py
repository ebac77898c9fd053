"""LlamaIndex ReActAgent: your own tools (described in text) plus the code interpreter.

    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_react_agent.py ["your question"]
    DASHSCOPE_API_KEY=sk-... python examples/llamaindex_react_agent.py --base-url http://...

Function calling cannot be combined with the interpreter, so FunctionAgent is refused;
ReActAgent describes tools in the prompt and parses the model's text, which works.
Without a key it says what to set and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from llama_index.core.agent.workflow import ReActAgent
from llama_index.core.tools import FunctionTool

from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import QwenCIError

NO_KEY = (
    "DASHSCOPE_API_KEY is not set: create a key in the Model Studio console of your region "
    "and export it (or pass --base-url to a compatible server) to run this example."
)


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
    if not os.environ.get("DASHSCOPE_API_KEY"):
        print(NO_KEY, file=sys.stderr)
        return 0
    llm = QwenCodeInterpreter(model=args.model, base_url=args.base_url)
    try:
        asyncio.run(ask(llm, args.question))
    except QwenCIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
