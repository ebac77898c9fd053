"""Prepared streams for the benchmarks: ``n`` delta frames of one answer, in each protocol.

Every protocol carries the same thinking and the same answer, cut into the same pieces
(half the frames thinking, half the answer), built with the test suite's frame builders
(:mod:`tests.replay`) and compact JSON, byte for byte as the service frames them. The
native stream also carries one code run: its ``tool_info`` entry appears (empty, then
filled in) a quarter of the way in and is repeated on every later frame, as the service
does. The Responses stream carries the same run a quarter of the way in, as a
``code_interpreter_call`` item (added with its code, the ``code_interpreter_call.*``
events, done with its execution log), between two reasoning items, then the message.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import json  # noqa: E402
from typing import Any  # noqa: E402

from tests.replay import COMPAT_ID, native_stream, responses_stream  # noqa: E402

PROMPT = "123的21次方是多少？"
CODE = "print(123**21)"
MODEL = "qwen3-max-preview"
RESPONSES_MODEL = "qwen3.5-plus"
"""A model the Responses protocol serves (the default model is native only)."""
LOGS = "77269364466549865653073473388030061522211723\n"

# token-sized pieces, a few of them not ASCII (the service sends UTF-8 unescaped)
_WORDS = (
    "The", " user", " asks", " for", " 123", "**", "21", ",", " which", " is", " a",
    " large", " number", ";", " 计算", "结果", " I", " will", " run", " code", ".", "\n",
)


def pieces(count: int, offset: int = 0) -> list[str]:
    """``count`` token-sized text pieces."""
    return [_WORDS[(offset + i) % len(_WORDS)] for i in range(count)]


def split(n: int) -> tuple[list[str], list[str]]:
    """The thinking and answer pieces of an ``n``-frame stream."""
    half = n // 2
    return pieces(half), pieces(n - half, offset=7)


def answer_size(n: int) -> int:
    """Characters of thinking plus answer of an ``n``-frame stream."""
    thinking, answer = split(n)
    return sum(map(len, thinking)) + sum(map(len, answer))


def native_frames(n: int) -> list[bytes]:
    """``n`` native SSE events; the last one has ``finish_reason: "stop"``."""
    thinking, answer = split(n)
    run_at = len(thinking) // 2
    steps: list[dict[str, object]] = []
    codes: list[str] | None = None
    for index, piece in enumerate(thinking):
        if index == run_at:
            codes = [""]  # the entry first appears with empty code...
        elif index == run_at + 1:
            codes = [CODE]  # ...and is filled in on a later frame
        step: dict[str, object] = {"reasoning": piece}
        if codes is not None:
            step["tool_info"] = list(codes)
        if index == run_at + 1:
            step["input_tokens"] = 723  # the run's result was fed back
        steps.append(step)
    for piece in answer:
        step = {"content": piece}
        if codes is not None:
            step["tool_info"] = list(codes)
        steps.append(step)
    steps[-1]["finish"] = "stop"
    return native_stream(steps, input_tokens=281)


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    payload = {
        "choices": choices, "object": "chat.completion.chunk", "usage": usage,
        "created": 1761899724, "system_fingerprint": None, "model": "qwen3-max-2026-01-23",
        "id": COMPAT_ID,
    }
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


def _delta(content: str | None, reasoning: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content, "reasoning_content": reasoning}
    return _chunk([{"delta": delta, "finish_reason": finish, "index": 0, "logprobs": None}])


def compat_frames(n: int) -> list[bytes]:
    """``n`` delta chunks, plus the role chunk, the finish chunk, usage and ``[DONE]``
    (the shapes of the recorded compatible-mode stream)."""
    thinking, answer = split(n)
    out = [_chunk([{"delta": {"content": None, "role": "assistant", "reasoning_content": ""},
                    "index": 0, "logprobs": None, "finish_reason": None}])]
    out += [_delta(None, piece) for piece in thinking]
    out += [_delta(piece, None) for piece in answer]
    out.append(_delta("", None, "stop"))
    usage = {"prompt_tokens": 723, "completion_tokens": n, "total_tokens": 723 + n,
             "completion_tokens_details": {"reasoning_tokens": len(thinking)}}
    out.append(_chunk([], usage))
    out.append(b"data: [DONE]\n\n")
    return out


def responses_frames(n: int) -> list[bytes]:
    """``n`` delta events (reasoning and answer), plus the item and lifecycle events around
    them and the ``response.completed`` event (with ``usage.x_tools``)."""
    thinking, answer = split(n)
    run_at = len(thinking) // 2
    return responses_stream([
        ("reasoning", thinking[:run_at]),
        ("code", CODE, LOGS),
        ("reasoning", thinking[run_at:]),
        ("text", answer),
    ], model=RESPONSES_MODEL, input_tokens=723)


PROTOCOLS = ("native", "compat", "responses")


def frames(protocol: str, n: int) -> list[bytes]:
    """The frames of ``protocol`` (``native``, ``compat`` or ``responses``)."""
    if protocol == "native":
        return native_frames(n)
    if protocol == "compat":
        return compat_frames(n)
    if protocol == "responses":
        return responses_frames(n)
    raise ValueError(f"unknown protocol {protocol!r}")
