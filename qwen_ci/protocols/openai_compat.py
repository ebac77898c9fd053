"""The OpenAI-compatible protocol: ``chat.completion.chunk`` frames -> normalized events.

This protocol never returns the executed code (no ``tool_info``): only thinking,
answer and usage. The stream is complete at ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

from qwen_ci.errors import IncompleteStreamError, ProtocolError
from qwen_ci.events import Event, Finish, ReasoningDelta, TextDelta
from qwen_ci.protocols._common import StreamState, frame_error, load_frame, usage_from
from qwen_ci.protocols.sse import SSEEvent

_DONE = b"[DONE]"
UNKNOWN_RUNS: dict[str, Any] = {"code_interpreter": {"count": None}}
"""``Usage.plugins`` of this protocol: it reports no runs, so their count is unknown (None,
not 0)."""


class OpenAICompatParser(StreamState):
    """Sans-I/O parser for one compatible-mode stream (complete at ``[DONE]``)."""

    __slots__ = ("_finish_reason", "_last", "_model", "_usage")

    def __init__(self, model: str, request_id: str | None = None) -> None:
        super().__init__(request_id)
        self._model = model
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None

    def feed(self, sse: SSEEvent) -> list[Event]:
        """Events produced by one SSE event; raises error payloads."""
        data = sse.data
        if data.strip() == _DONE:
            return self._done()
        obj = load_frame(data)
        if self._request_id is None:
            rid = obj.get("request_id") or obj.get("id")
            if isinstance(rid, str):
                self._request_id = rid
        error = obj.get("error")
        if error is not None or sse.event == "error":
            raise frame_error(obj, sse.status, self._request_id)
        if self._finished:
            return []
        choices = obj.get("choices")
        if choices is None and "usage" not in obj:
            raise ProtocolError(
                "Chunk has neither 'choices' nor 'usage': " + repr(bytes(data[:200])),
                request_id=self._request_id,
            )
        self.started = True
        self._last = obj
        model = obj.get("model")
        if isinstance(model, str) and model:
            self._model = model
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        events: list[Event] = []
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                reasoning = delta.get("reasoning_content")
                if reasoning and isinstance(reasoning, str):
                    events.append(ReasoningDelta(reasoning))
                content = delta.get("content")
                if content and isinstance(content, str):
                    events.append(TextDelta(content))
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self._finish_reason = reason
        return events

    def end(self) -> None:
        """The connection closed: raise if ``[DONE]`` never came."""
        if not self._finished:
            raise IncompleteStreamError(
                "The stream ended before 'data: [DONE]'; the answer is incomplete.",
                request_id=self._request_id,
            )

    def _done(self) -> list[Event]:
        if self._finished:
            return []
        self._finished = True
        self.started = True
        raw = self._usage or {}
        usage = usage_from(
            raw, "prompt_tokens", "completion_tokens", "completion_tokens_details",
            {"code_interpreter": {"count": None}},
        )
        return [
            usage,
            Finish(self._finish_reason or "unknown", self._request_id, self._model, self._last),
        ]
