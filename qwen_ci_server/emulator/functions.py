"""The emulator's function-calling text model: compatible-mode chat completions with
``tools``, for a model without the code interpreter (``qwen-plus``, ``qwen-max``...).

Deterministic and scripted, not a language model, and labelled as the emulator's own
(``system_fingerprint`` is :data:`FINGERPRINT`; its plain answers say so). It drives the
docs' agent recipes offline: your tools plus one that hands a computation to the
interpreter model. Its policy, read from the conversation (the last user message and the
tool results after it):

- "How many euros are 1234.5 USD?" with a rate tool (one argument, "euro" in its
  description) and a compute tool (one argument, a name or description about Python,
  code, computing): call the rate tool with the currency, then the compute tool with the
  product to compute, then answer with the computed value;
- a computation the scripted model understands
  (:func:`~qwen_ci_server.emulator.understanding.find_task`) with a compute tool: call it
  (with the code when its argument is ``code``, as ``qwen-ci serve``'s
  ``code_interpreter(code)``, else with the question in words), then answer with the
  result;
- anything else: a plain answer saying it does not understand, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from qwen_ci_server.emulator.engine import estimate_tokens
from qwen_ci_server.emulator.service import served
from qwen_ci_server.emulator.understanding import NUM, Task, find_task, only_filler
from qwen_ci_server.emulator.wire import dumps, invalid_parameter

FINGERPRINT = "qwen-ci-emulator-function-calling"
"""``system_fingerprint`` of every answer of this model: it is the emulator's script."""
NOT_UNDERSTOOD = (
    "I am the scripted function-calling model of the qwen-ci emulator (not a language "
    "model). I do not understand this request well enough to choose a tool, so I will not "
    "guess an answer."
)

_CONVERSION = re.compile(
    rf"how many (?:euros?|eur) (?:are|is|do i get for|for)\s+(?P<amount>{NUM})\s*"
    r"(?P<currency>[A-Za-z]{3})\b",
    re.IGNORECASE,
)
_COMPUTE = re.compile(r"python|interpreter|\bcode\b|comput|calculat", re.IGNORECASE)
_RATE = re.compile(r"\brate\b|price|exchange", re.IGNORECASE)
_WORDS_ARGS = ("task", "question", "query", "request", "problem", "input", "prompt")


@dataclass(frozen=True, slots=True)
class Tool:
    """A function tool of the request: its name, description and argument names."""

    name: str
    description: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model answers: text, or one tool call (``call``: name and arguments),
    with the thinking streamed first when ``enable_thinking`` is on."""

    content: str | None = None
    call: tuple[str, dict[str, str]] | None = None
    thinking: str = ""


def wants_functions(body: Mapping[str, Any]) -> bool:
    """True for a request this model answers: ``tools`` given, a model without the
    interpreter, the interpreter not asked for (that combination is refused elsewhere).

    Example:
        >>> wants_functions({"model": "qwen-plus", "tools": [{"type": "function"}]})
        True
        >>> wants_functions({"model": "qwen3-max", "tools": [{"type": "function"}]})
        False
    """
    if not body.get("tools") or body.get("enable_code_interpreter") is True:
        return False
    entry = served(body["model"]) if isinstance(body.get("model"), str) else None
    return entry is not None and not entry.code_interpreter


def tools_of(body: Mapping[str, Any]) -> list[Tool]:
    """The request's function tools (malformed ones are a 400)."""
    tools = []
    for item in body.get("tools") or []:
        function = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise invalid_parameter("tools must be a list of {\"type\": \"function\", "
                                    "\"function\": {\"name\": ..., \"parameters\": ...}}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        tools.append(Tool(function["name"], str(function.get("description") or ""),
                          tuple(properties) if isinstance(properties, Mapping) else ()))
    return tools


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    return ""


def _conversation(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The last user question and the tool results after it, in order."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, Mapping) and m.get("role") in ("system", "user", "assistant", "tool")
        for m in messages
    ):
        raise invalid_parameter("Role must be user or assistant and Content length must be "
                                "greater than 0")
    asks = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not asks:
        raise invalid_parameter("Role must be user or assistant and Content length must be "
                                "greater than 0")
    results = [_text(m.get("content")) for m in messages[asks[-1] + 1:] if m["role"] == "tool"]
    return _text(messages[asks[-1]].get("content")), results


def _compute_tool(tools: Sequence[Tool]) -> Tool | None:
    return next((t for t in tools if len(t.args) == 1
                 and (_COMPUTE.search(t.name) or _COMPUTE.search(t.description))), None)


def _rate_tool(tools: Sequence[Tool]) -> Tool | None:
    return next((t for t in tools if len(t.args) == 1 and "euro" in t.description.lower()
                 and (_RATE.search(t.name) or _RATE.search(t.description))), None)


def _value(result: str) -> str:
    """What a tool result says: the value of ``qwen-ci serve``-style ``[result]`` /
    ``[stdout]`` sections, or the text itself."""
    for section in ("[result]\n", "[stdout]\n"):
        if section in result:
            return result.split(section, 1)[1].split("\n[", 1)[0].strip()
    return result.strip()


_FAILED = re.compile(r"^\[(?:error|timeout|crashed)\]$", re.M)
_LAST_NUMBER = re.compile(rf"({NUM})\W*$")


def decide(body: Mapping[str, Any]) -> Reply:
    """The model's answer to a chat completions request with ``tools``.

    Example:
        >>> tool = {"type": "function", "function": {"name": "python", "description":
        ...         "Run Python code", "parameters": {"properties": {"code": {}}}}}
        >>> decide({"messages": [{"role": "user", "content": "What is 2**100?"}],
        ...         "tools": [tool]}).call
        ('python', {'code': '2**100'})
    """
    tools = tools_of(body)
    question, results = _conversation(body)
    compute = _compute_tool(tools)
    if body.get("tool_choice") == "none":
        compute = None
    conversion = _CONVERSION.search(question)
    rate = _rate_tool(tools)
    if conversion and rate and compute and only_filler(
        question[: conversion.start()] + " " + question[conversion.end():]
    ):
        return _convert(conversion["amount"], conversion["currency"].upper(), rate, compute,
                        results)
    task = find_task(question)
    if task is None or compute is None:
        return Reply(NOT_UNDERSTOOD, thinking="I do not understand this request well enough "
                     "to use one of the tools, so I will not guess.")
    return _compute(task, question, compute, results)


def _argument(tool: Tool, code: str, words: str) -> dict[str, str]:
    arg = tool.args[0]
    return {arg: words if arg.lower() in _WORDS_ARGS else code}


def _compute(task: Task, question: str, tool: Tool, results: list[str]) -> Reply:
    if not results:
        return Reply(call=(tool.name, _argument(tool, task.code, question)),
                     thinking=f"The user asks for {task.en}. I will use the {tool.name} tool "
                     "to compute it exactly.")
    result = results[-1]
    if _FAILED.search(result):
        return Reply(f"I could not compute this: the {tool.name} tool reported an error.\n\n"
                     f"```\n{result.strip()}\n```",
                     thinking=f"The {tool.name} tool failed; I will report the error.")
    value = _value(result)
    thinking = f"The {tool.name} tool returned the result; I will answer with it."
    if tool.args[0].lower() in _WORDS_ARGS:
        return Reply(value, thinking=thinking)  # the interpreter model's own answer
    return Reply(f"{task.en[0].upper()}{task.en[1:]} is:\n\n{value}", thinking=thinking)


def _convert(amount: str, currency: str, rate_tool: Tool, compute: Tool,
             results: list[str]) -> Reply:
    if not results:
        return Reply(call=(rate_tool.name, {rate_tool.args[0]: currency}),
                     thinking=f"The user wants {amount} {currency} in euros. I need today's "
                     f"rate: the {rate_tool.name} tool gives it.")
    rate = results[0].strip()
    if not re.fullmatch(NUM, rate):
        return Reply(f"{rate_tool.name} returned no rate for {currency} ({rate!r}), so I "
                     f"cannot convert {amount} {currency}.")
    if len(results) == 1:
        words = f"What is {amount} * {rate}, to 2 decimal places? Use code."
        task = find_task(words)
        assert task is not None, words  # the scripted model understands its own wording
        return Reply(call=(compute.name, _argument(compute, task.code, words)),
                     thinking=f"The rate is {rate}. I will let the {compute.name} tool compute "
                     f"{amount} × {rate}.")
    value = _LAST_NUMBER.search(_value(results[1]))
    if value is None or _FAILED.search(results[1]):
        return Reply(f"The {compute.name} tool did not return the amount: "
                     f"{results[1].strip()!r}.")
    return Reply(f"{amount} {currency} is {value[1]} EUR ({amount} × {rate}, the rate "
                 f"{rate_tool.name} returned; computed by {compute.name}).",
                 thinking=f"{compute.name} computed {value[1]}; I will answer with it.")


# ---------------------------------------------------------------------- the wire


def _call_id(body: Mapping[str, Any], name: str) -> str:
    """A deterministic id: the same conversation gives the same call id."""
    digest = hashlib.sha256(dumps(body.get("messages")).encode() + name.encode()).hexdigest()
    return f"call_{digest[:24]}"


def _usage(body: Mapping[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(4 + estimate_tokens(_text(m.get("content")))
                 for m in body.get("messages") or [] if isinstance(m, Mapping))
    out = estimate_tokens(reply.content or json.dumps(reply.call))
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


def _tool_calls(body: Mapping[str, Any], reply: Reply) -> list[dict[str, Any]]:
    assert reply.call is not None
    name, args = reply.call
    return [{"id": _call_id(body, name), "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}]


def completion(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` for ``reply``."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.call is not None:
        message["tool_calls"] = _tool_calls(body, reply)
    return {
        "choices": [{"message": message, "finish_reason": "tool_calls" if reply.call else "stop",
                     "index": 0, "logprobs": None}],
        "object": "chat.completion",
        "usage": _usage(body, reply),
        "created": int(time.time()),
        "system_fingerprint": FINGERPRINT,
        "model": body["model"],
        "id": f"chatcmpl-{_call_id(body, 'completion')[5:]}",
    }


def chunks(body: Mapping[str, Any], reply: Reply) -> Iterator[bytes]:
    """The ``chat.completion.chunk`` stream for ``reply`` (usage when asked), then
    ``[DONE]``."""
    base = {"object": "chat.completion.chunk", "created": int(time.time()),
            "system_fingerprint": FINGERPRINT, "model": body["model"],
            "id": f"chatcmpl-{_call_id(body, 'completion')[5:]}"}

    def chunk(delta: dict[str, Any] | None, finish: str | None = None,
              usage: Any = None) -> bytes:
        choices = [] if delta is None else [
            {"delta": delta, "finish_reason": finish, "index": 0, "logprobs": None}]
        return f"data: {dumps({'choices': choices, **base, 'usage': usage})}\n\n".encode()

    thinking = body.get("enable_thinking") is True
    extra: dict[str, Any] = {"reasoning_content": None} if thinking else {}
    if thinking:
        yield chunk({"content": None, "role": "assistant", "reasoning_content": ""})
        yield chunk({"content": None, "reasoning_content": reply.thinking})
    if reply.call is not None:
        call = _tool_calls(body, reply)[0]
        arguments = call["function"]["arguments"]
        yield chunk({"content": None, "role": "assistant", **extra, "tool_calls": [
            {"index": 0, "id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"], "arguments": ""}}]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
        yield chunk({"content": "", **extra}, "tool_calls")
    else:
        if not thinking:
            yield chunk({"content": "", "role": "assistant"})
        yield chunk({"content": reply.content, **extra})
        yield chunk({"content": "", **extra}, "stop")
    options = body.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") is True:
        yield chunk(None, usage=_usage(body, reply))
    yield b"data: [DONE]\n\n"


def response(body: Mapping[str, Any], request_id: str) -> Response:
    """The HTTP response to a request :func:`wants_functions` accepted (a non-streaming
    ``chat.completion`` or an event stream)."""
    reply = decide(body)
    headers = {"x-request-id": request_id}
    if body.get("stream") is True:
        return StreamingResponse(iter(list(chunks(body, reply))), headers=headers,
                                 media_type="text/event-stream;charset=UTF-8")
    return JSONResponse(completion(body, reply), headers=headers)


__all__ = ["FINGERPRINT", "NOT_UNDERSTOOD", "Reply", "Tool", "chunks", "completion",
           "decide", "response", "tools_of", "wants_functions"]
