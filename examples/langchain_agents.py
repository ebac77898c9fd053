"""LangChain: your own tools together with the code interpreter, two ways.

The interpreter cannot be combined with function calling, so it cannot be the model of a
tool-calling agent. What works:

1. The interpreter as a tool of a function-calling agent: ``create_agent(agent_model,
   tools=[exchange_rate, python])`` where ``python`` asks ChatQwenCodeInterpreter. The agent
   model is any chat model with tool calling, for example qwen-plus in DashScope's
   OpenAI-compatible mode through langchain-openai's ChatOpenAI.
2. A text ReAct agent: the interpreter model itself, with the tools described in the
   prompt; it answers "Action: ..." lines that this loop runs, and it can still run Python.

    python examples/langchain_agents.py                  # offline: recipe 2 on the emulator
    DASHSCOPE_API_KEY=sk-... python examples/langchain_agents.py --agent-model qwen-plus \\
        --agent-base-url https://dashscope.aliyuncs.com/compatible-mode/v1   # and recipe 1

Recipe 1 needs ``pip install langchain langchain-openai`` and a tool-calling model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

from _backend import backend
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, tool

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import QwenCIError

QUESTION = "How many euros are 1234.5 USD? Compute it exactly."


@tool
def exchange_rate(currency: str) -> str:
    """Today's price of one unit of `currency` in euros."""
    return {"USD": "0.92", "GBP": "1.17", "JPY": "0.0061"}.get(currency.upper(), "unknown")


# ---------------------------------------------------------------- 1. interpreter as a tool


def interpreter_tool(interpreter: ChatQwenCodeInterpreter) -> BaseTool:
    """A tool that hands a computation, in words, to the code interpreter."""

    @tool
    def python(task: str) -> str:
        """Compute something exactly: Qwen writes and runs Python for the task, given in
        words with all the numbers it needs, and returns the answer."""
        return interpreter.invoke(task).text

    return python


def function_calling_agent(agent_model: BaseChatModel, interpreter: ChatQwenCodeInterpreter,
                           tools: Sequence[BaseTool], question: str) -> str:
    """Run ``question`` through ``create_agent`` with the interpreter as one of the tools."""
    from langchain.agents import create_agent

    agent = create_agent(agent_model, tools=[*tools, interpreter_tool(interpreter)])
    state = agent.invoke({"messages": [HumanMessage(question)]})
    for message in state["messages"]:
        for call in getattr(message, "tool_calls", []):
            print(f"[tool call] {call['name']}({call['args']})")
    return str(state["messages"][-1].text)


# ---------------------------------------------------------------- 2. text ReAct agent

REACT_SYSTEM = """You answer questions with the help of tools and of Python.

## Tools

You have access to the following tools:
{tools}

## Output Format

To use a tool, answer exactly:

```
Thought: what you need and why
Action: the tool name (one of {names})
Action Input: the tool's arguments as a JSON object
```

The tool's result comes back as "Observation: ...". Once you can answer, reply:

```
Thought: I can answer without using any more tools.
Answer: the answer
```
"""
_ACTION = re.compile(r"Action:\s*(?P<tool>\S+)\s*\nAction Input:\s*(?P<input>\{.*\})", re.S)
_ANSWER = re.compile(r"Answer:\s*(?P<answer>.*)", re.S)


def react_prompt(tools: Sequence[BaseTool]) -> str:
    """The system prompt describing ``tools`` in text."""
    described = "\n".join(
        f"> Tool Name: {t.name}\nTool Description: {t.description}\n"
        f"Tool Args: {json.dumps(t.get_input_schema().model_json_schema())}\n"
        for t in tools
    )
    return REACT_SYSTEM.format(tools=described, names=", ".join(t.name for t in tools))


def react_agent(llm: ChatQwenCodeInterpreter, tools: Sequence[BaseTool], question: str,
                max_steps: int = 6) -> str:
    """Run a text ReAct loop: the model asks for tools in text, this loop runs them."""
    by_name = {t.name: t for t in tools}
    messages: list[BaseMessage] = [SystemMessage(react_prompt(tools)), HumanMessage(question)]
    for _ in range(max_steps):
        reply = llm.invoke(messages)
        messages.append(reply)
        for run in reply.additional_kwargs.get("tool_info", []):
            print(f"[code executed]\n{run['code_interpreter']['code']}")
        text = reply.text
        if action := _ACTION.search(text):
            name, args = action["tool"], json.loads(action["input"])
            observation = by_name[name].invoke(args) if name in by_name else f"no tool {name}"
            print(f"[tool] {name}({args}) -> {observation}")
            messages.append(HumanMessage(f"Observation: {observation}"))
            continue
        answer = _ANSWER.search(text)
        return answer["answer"].strip() if answer else text
    return "No answer after the maximum number of steps."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--base-url", default=None, help="the interpreter's service root")
    parser.add_argument("--agent-model", default=None,
                        help="a tool-calling model for recipe 1 (default: skip recipe 1)")
    parser.add_argument("--agent-base-url", default=None,
                        help="its OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    args = parser.parse_args()
    with backend(args.base_url, None) as settings:
        llm = ChatQwenCodeInterpreter(**settings)
        try:
            print("== text ReAct agent (the interpreter model, tools described in text)")
            print(react_agent(llm, [exchange_rate], args.question))
            if args.agent_model:
                from langchain_openai import ChatOpenAI

                print(f"== function-calling agent ({args.agent_model}) with the interpreter "
                      "as a tool")
                agent_model = ChatOpenAI(
                    model=args.agent_model, base_url=args.agent_base_url,
                    api_key=os.environ.get("OPENAI_API_KEY")
                    or os.environ.get("DASHSCOPE_API_KEY"),  # type: ignore[arg-type]
                )
                print(function_calling_agent(agent_model, llm, [exchange_rate], args.question))
            else:
                print("(recipe 1 skipped: pass --agent-model, a tool-calling model)")
        except QwenCIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

