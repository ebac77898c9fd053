"""The native DashScope protocol: frames -> normalized events.

``output.tool_info`` is a snapshot of every run so far, repeated on every frame.
Position in the list is the identity of a run; an entry can appear with empty code and
be filled in later. A run **starts** (:class:`~qwen_ci.events.CodeStart`, once) when its
code first appears non-empty: the service executes it then, and the stream is silent for
as long as the code takes. A run is **final** (:class:`~qwen_ci.events.CodeRun`, once)
when a later run appears, when the model produces output again while the run is in the
snapshot (it cannot resume before the run's result was fed back), or when the stream
ends; its code is the latest the snapshots showed, which wins over what the start carried.
"""

from __future__ import annotations

from typing import Any

from qwen_ci.errors import IncompleteStreamError, ProtocolError
from qwen_ci.events import (
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    SearchInfo,
    TextDelta,
)
from qwen_ci.protocols._common import StreamState, frame_error, load_frame, usage_from
from qwen_ci.protocols.sse import SSEEvent


def _text_of(content: Any) -> str:
    """``content`` is a string, or a list of ``{"text": ...}`` parts (multimodal)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


class DashScopeParser(StreamState):
    """Sans-I/O parser for one native stream (its request id comes in the frames)."""

    __slots__ = ("_codes", "_done", "_model", "_search_sent", "_usage")

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        self._codes: list[str] = []  # latest code of each run
        self._done = 0  # runs [0, _done) are final
        self._usage: dict[str, Any] | None = None
        self._search_sent = False

    def feed(self, sse: SSEEvent) -> list[Event]:
        """Events produced by one SSE event; raises the service's error frames."""
        obj = load_frame(sse.data)
        output = self._output_of(obj, sse)
        if self._finished:
            return []
        self.started = True
        events: list[Event] = []
        usage = obj.get("usage")
        if isinstance(usage, dict) and usage:
            self._usage = usage
        if not self._search_sent:
            search = output.get("search_info")
            if isinstance(search, dict) and search.get("search_results"):
                self._search_sent = True
                events.append(SearchInfo(search))
        tool_info = output.get("tool_info")
        if tool_info:
            self._snapshot(tool_info, events)
        finish_reason = self._message(output, events)
        if finish_reason is not None and finish_reason != "null":
            self._finalize(len(self._codes), events)
            self._finished = True
            events.append(self._final_usage())
            events.append(Finish(str(finish_reason), self._request_id, self._model, obj))
        return events

    def _output_of(self, obj: dict[str, Any], sse: SSEEvent) -> dict[str, Any]:
        """The frame's ``output`` object; raises the error a frame carries instead."""
        rid = obj.get("request_id")
        if isinstance(rid, str):
            self._request_id = rid
        if sse.event == "error" or (sse.status is not None and sse.status >= 400):
            raise frame_error(obj, sse.status, self._request_id)
        output = obj.get("output")
        if isinstance(output, dict):
            return output
        if "code" in obj and ("message" in obj or "msg" in obj):
            raise frame_error(obj, sse.status, self._request_id)
        raise ProtocolError(
            "Frame has no 'output' object: " + repr(bytes(sse.data[:200])),
            request_id=self._request_id,
        )

    def _message(self, output: dict[str, Any], events: list[Event]) -> Any:
        """The thinking and answer deltas of the first choice; its ``finish_reason``."""
        choices = output.get("choices")
        if not (choices and isinstance(choices, list) and isinstance(choices[0], dict)):
            return None
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            reasoning = message.get("reasoning_content")
            text = _text_of(message.get("content"))
            if reasoning or text:
                self._resumed(events)
                if reasoning and isinstance(reasoning, str):
                    events.append(ReasoningDelta(reasoning))
                if text:
                    events.append(TextDelta(text))
        return choice.get("finish_reason")

    def end(self) -> None:
        """The connection closed: raise if the final frame never came."""
        if not self._finished:
            raise IncompleteStreamError(
                "The stream ended before the final frame (finish_reason never left "
                "'null'); the answer is incomplete.",
                request_id=self._request_id,
            )

    def _snapshot(self, tool_info: Any, events: list[Event]) -> None:
        if not isinstance(tool_info, list):
            return
        codes = self._codes
        for index, entry in enumerate(tool_info):
            code = ""
            if isinstance(entry, dict):
                inner = entry.get("code_interpreter")
                if isinstance(inner, dict) and isinstance(inner.get("code"), str):
                    code = inner["code"]
            if index < len(codes):
                if index >= self._done and code:
                    if not codes[index]:
                        events.append(CodeStart(index, code))
                    codes[index] = code
            else:
                # a later run exists: every earlier run is final (before this one starts)
                self._finalize(index, events)
                codes.append(code)
                if code:
                    events.append(CodeStart(index, code))

    def _resumed(self, events: list[Event]) -> None:
        codes = self._codes
        if codes:
            self._finalize(len(codes) if codes[-1] else len(codes) - 1, events)

    def _finalize(self, upto: int, events: list[Event]) -> None:
        codes = self._codes
        for index in range(self._done, upto):
            if codes[index]:
                events.append(CodeRun(index, codes[index]))
        if upto > self._done:
            self._done = upto

    def _final_usage(self) -> Event:
        raw = self._usage or {}
        return usage_from(
            raw, "input_tokens", "output_tokens", "output_tokens_details", raw.get("plugins")
        )
