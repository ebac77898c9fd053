"""Standard content blocks for messages of :class:`ChatQwenCodeInterpreter`.

Registered with langchain-core under :data:`PROVIDER` (the key ``dashscope`` belongs to
another package). A message becomes: the reasoning block, one ``server_tool_call`` per
executed run (name ``code_interpreter``, args ``{"code": ...}``), each followed by its
``server_tool_result`` (its ``tool_call_id`` the call's id, status ``success``/``error``,
output the execution log) wherever the protocol returned the run's ``outputs``
(Responses), then a call/result pair per other built-in tool call (``web_search``:
args ``{"query"}``, output ``{"sources"}``; ``web_extractor``: args ``{"urls", "goal"}``,
output the extracted text), then the text.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages import content as types
from langchain_core.messages.block_translators import register_translator

from qwen_ci.events import FAILED, TOOL_NAME, logs_of

PROVIDER = "qwen_code_interpreter"


def run_id(message_id: str | None, code: str, occurrence: int = 0) -> str:
    """Stable id of a run: derived from the message id and the code, never random.

    A chunk and the aggregated message give a run the same id (a repeated identical
    code in one message gets a ``_N`` suffix in the aggregated view).
    """
    digest = hashlib.sha256(f"{message_id or ''}\x00{code}".encode()).hexdigest()[:16]
    return f"ci_{digest}" + (f"_{occurrence}" if occurrence else "")


def _blocks(message: AIMessage | AIMessageChunk) -> list[types.ContentBlock]:
    blocks: list[types.ContentBlock] = []
    reasoning = message.additional_kwargs.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        blocks.append({"type": "reasoning", "reasoning": reasoning})
    seen: dict[str, int] = {}
    for entry in message.additional_kwargs.get("tool_info") or []:
        code = _code_of(entry)
        if code is None:
            continue
        occurrence = seen.get(code, 0)
        seen[code] = occurrence + 1
        call_id = run_id(message.id, code, occurrence)
        blocks.append(
            {"type": "server_tool_call", "id": call_id, "name": TOOL_NAME, "args": {"code": code}}
        )
        inner = entry[TOOL_NAME]
        output = logs_of(inner.get("outputs")) if isinstance(inner.get("outputs"), list) else None
        if output is not None:
            result: types.ServerToolResult = {
                "type": "server_tool_result",
                "tool_call_id": call_id,
                "status": "error" if inner.get("status") in FAILED else "success",
                "output": output,
            }
            if inner.get("container_id"):
                result["extras"] = {"container_id": inner["container_id"]}
            blocks.append(result)
    for entry in message.additional_kwargs.get("builtin_tools") or []:
        blocks.extend(_builtin_blocks(entry))
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content:
            if isinstance(part, str) and part:
                blocks.append({"type": "text", "text": part})
            elif isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _builtin_blocks(entry: Any) -> list[types.ContentBlock]:
    """The call/result pair of a ``web_search`` / ``web_extractor`` entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return []
    name = entry.get("type")
    inner = entry.get(name) if isinstance(name, str) else None
    if not isinstance(inner, dict):
        return []
    if name == "web_search":
        args = {"query": inner.get("query")}
        output: Any = {"sources": inner.get("sources") or []}
    else:
        args = {"urls": inner.get("urls"), "goal": inner.get("goal")}
        output = inner.get("output")
    return [
        {"type": "server_tool_call", "id": entry["id"], "name": str(name), "args": args},
        {"type": "server_tool_result", "tool_call_id": entry["id"],
         "status": "error" if entry.get("status") in FAILED else "success", "output": output},
    ]


def _code_of(entry: Any) -> str | None:
    if isinstance(entry, dict) and entry.get("type") == TOOL_NAME:
        inner = entry.get(TOOL_NAME)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
    return None


def translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """Blocks of a whole message."""
    return _blocks(message)


def translate_content_chunk(chunk: AIMessageChunk) -> list[types.ContentBlock]:
    """Blocks of one streamed chunk."""
    return _blocks(chunk)


register_translator(PROVIDER, translate_content, translate_content_chunk)
