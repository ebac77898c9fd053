"""A fake OpenAI-compatible upstream on 127.0.0.1: streams chat completions with tool calls
split across chunks (as vLLM, Ollama and llama.cpp send them), scripted per test, and
records every request it receives.

Built on :class:`tests.replay.ReplayServer` (real HTTP, chunked transfer encoding).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from tests.replay import Recorded, ReplayServer, Reply

MODEL = "fake-model"
Script = Callable[[dict[str, Any], int], Reply]
"""(request body, index of the request since the last reset) -> the reply."""


def event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
           usage: dict[str, Any] | None = None, chunk_id: str = "chatcmpl-fake") -> bytes:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    payload: dict[str, Any] = {"id": chunk_id, "object": "chat.completion.chunk",
                               "created": 1761899724, "model": MODEL, "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    return event(payload)


def split(text: str, parts: int) -> list[str]:
    """``text`` cut into ``parts`` pieces (some maybe empty-free), order kept."""
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def stream(
    *,
    reasoning: Sequence[str] = (),
    content: Sequence[str] = (),
    codes: Sequence[str] = (),
    usage: tuple[int, int, int] | None = None,
    field: str = "reasoning_content",
    finish: str | None = None,
    done: bool = True,
    fragments: int = 3,
    delay: float = 0.0,
    cut_after: int | None = None,
    piece_size: int | None = None,
) -> Reply:
    """One streamed reply: reasoning deltas, content deltas, then each code as a
    ``code_interpreter`` tool call whose JSON arguments arrive in ``fragments`` pieces,
    the finish chunk, a usage chunk (``usage``: prompt, completion, reasoning tokens) and
    ``[DONE]``. ``piece_size`` re-cuts the bytes into pieces of that size (events split
    across network reads)."""
    chunks = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({field: piece}) for piece in reasoning]
    chunks += [_chunk({"content": piece}) for piece in content]
    for index, code in enumerate(codes):
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        chunks.append(_chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                              "function": {"name": "code_interpreter",
                                                           "arguments": ""}}]}))
        for fragment in split(json.dumps({"code": code}), fragments):
            chunks.append(_chunk({"tool_calls": [{"index": index,
                                                  "function": {"arguments": fragment}}]}))
    chunks.append(_chunk({}, finish or ("tool_calls" if codes else "stop")))
    if usage is not None:
        prompt, completion, thinking = usage
        chunks.append(_chunk(None, usage={
            "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": thinking}}))
    if done:
        chunks.append(b"data: [DONE]\n\n")
    if piece_size:
        raw = b"".join(chunks)
        chunks = [raw[i:i + piece_size] for i in range(0, len(raw), piece_size)]
    return Reply(chunks, headers={"Content-Type": "text/event-stream"}, delay=delay,
                 cut_after=cut_after)


def failure(status: int, message: str, *, shape: str = "openai") -> Reply:
    """An HTTP error reply in the usual shapes (``openai``, ``ollama``, ``text``)."""
    if shape == "openai":
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                     "param": None, "code": None}}).encode()
    elif shape == "ollama":
        body = json.dumps({"error": message}).encode()
    else:
        body = message.encode()
    kind = "text/plain" if shape == "text" else "application/json"
    return Reply([body], status=status, headers={"Content-Type": kind})


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The contents of the tool messages of a request body, in order."""
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def stdout_of(output: str) -> str:
    """The printed text of a tool result (``[stdout]\\n...``)."""
    assert output.startswith("[stdout]\n"), output
    return output[len("[stdout]\n"):].split("\n[", 1)[0].strip()


class FakeUpstream:
    """The fake upstream; set :attr:`script` per test, read :attr:`bodies` after."""

    def __init__(self) -> None:
        self.server = ReplayServer()
        self.server.chooser = self._choose
        self.script: Script | None = None
        self._offset = 0

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (with ``/v1``)."""
        return self.server.base_url + "/v1"

    @property
    def received(self) -> list[Recorded]:
        return self.server.requests[self._offset:]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.received]

    def reset(self, script: Script | None = None) -> None:
        self._offset = len(self.server.requests)
        self.server.disconnects = 0
        self.script = script

    def _choose(self, recorded: Recorded) -> Reply:
        if self.script is None:
            return failure(500, "the fake upstream has no script")
        return self.script(recorded.json, len(self.server.requests) - 1 - self._offset)

    def __enter__(self) -> FakeUpstream:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
