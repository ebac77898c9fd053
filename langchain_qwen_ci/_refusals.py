"""Refusals that fit what the user called: an agent constructor, or the model itself.

The code interpreter cannot be combined with function calling, so ``bind_tools`` is
refused; agent constructors call it for the user, and the message then names the
constructor the user wrote and the ways that work instead.
"""

from __future__ import annotations

import sys
from types import FrameType

from qwen_ci.request import NO_FUNCTION_CALLING, TOOLS_ERROR

RECIPES = (
    "What works: make the interpreter a tool of an agent whose model does function "
    "calling (docs/langchain.md, 'Your tools and the interpreter'; "
    "examples/langchain_agents.py), or a text ReAct agent that describes the tools in the "
    "prompt (same example)."
)
LANGGRAPH = (
    "LangGraph's create_react_agent(model, tools) gives the tools to the model through "
    f"function calling, and {NO_FUNCTION_CALLING} {RECIPES} "
    "(create_react_agent(model, []) without tools works.)"
)
CREATE_AGENT = (
    "create_agent(model, tools=[...]) calls the tools through function calling, and "
    f"{NO_FUNCTION_CALLING} {RECIPES} (create_agent(model, tools=[]) without tools works.)"
)
RESPONSE_FORMAT = (
    "create_agent(..., response_format=...) needs structured output, which this model "
    "cannot give: the code interpreter needs thinking mode, and DashScope allows neither "
    "JSON mode nor tool calls with it. Drop response_format and ask for JSON in the prompt "
    "(parse it with a LangChain output parser such as JsonOutputParser), or let another "
    "model produce the structured output."
)
STRUCTURED = (
    "with_structured_output(...) is not available: it needs function calling or JSON "
    "mode, and the code interpreter allows neither (it needs thinking mode, with which "
    "DashScope rejects JSON mode, and it cannot be combined with tools). Ask for JSON in "
    "the prompt and parse the answer with a LangChain output parser (JsonOutputParser, "
    "PydanticOutputParser)."
)


def _agent_caller() -> str | None:
    """Which agent constructor is calling ``bind_tools``, if any (by the call stack)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(30):
        if frame is None:
            return None
        module = frame.f_globals.get("__name__", "")
        if module.startswith("langgraph.prebuilt") and frame.f_code.co_name == (
            "create_react_agent"
        ):
            return "langgraph"
        if module.startswith("langchain.agents"):
            local = frame.f_locals
            if local.get("effective_response_format") or local.get("response_format"):
                return "response_format"
            return "create_agent"
        frame = frame.f_back
    return None


def bind_tools_refusal() -> str:
    """The message for a ``bind_tools`` call, fitting who made it."""
    caller = _agent_caller()
    if caller == "langgraph":
        return LANGGRAPH
    if caller == "create_agent":
        return CREATE_AGENT
    if caller == "response_format":
        return RESPONSE_FORMAT
    return TOOLS_ERROR.format(what="bind_tools(...)") + " " + RECIPES


__all__ = ["STRUCTURED", "bind_tools_refusal"]
