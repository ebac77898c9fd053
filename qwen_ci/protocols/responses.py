"""The Responses protocol (``/compatible-mode/v1/responses``): events -> normalized events.

Each SSE event is one JSON object with a ``type``. Output items arrive through
``response.output_item.added`` (``status: "in_progress"``) and
``response.output_item.done`` (final); a ``code_interpreter_call`` item carries
``code``, ``outputs`` (``[{"type": "logs", "logs": ...}]``), ``container_id`` and a
status. A run **starts** (:class:`~qwen_ci.events.CodeStart`, once) as soon as its code
is known (the added item, the ``code_interpreter_call.*`` events, or OpenAI's
``code_interpreter_call_code`` events, which DashScope does not document) and is
**final** (:class:`~qwen_ci.events.CodeRun`, once) when its item is done, or at the end
of the response from the final output list. ``web_search_call`` and
``web_extractor_call`` items become :class:`~qwen_ci.events.ToolStart` /
:class:`~qwen_ci.events.ToolRun`. Thinking comes as
``response.reasoning_summary_text.delta`` or ``response.reasoning_text.delta`` (both
are accepted), the answer as ``response.output_text.delta``. ``response.completed`` is
the end (there is no ``[DONE]``); its ``usage.x_tools`` holds the per-tool counts.
"""

from __future__ import annotations

from typing import Any

from qwen_ci.errors import IncompleteStreamError, ProtocolError
from qwen_ci.events import (
    TOOL_NAME,
    WEB_EXTRACTOR,
    WEB_SEARCH,
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolRun,
    ToolStart,
    Usage,
)
from qwen_ci.protocols._common import (
    StreamState,
    frame_error,
    load_frame,
    usage_from,
)
from qwen_ci.protocols.sse import SSEEvent

_CODE_ITEM = "code_interpreter_call"
_TOOL_ITEMS = {"web_search_call": WEB_SEARCH, "web_extractor_call": WEB_EXTRACTOR}
_REASONING_DELTAS = frozenset({"response.reasoning_summary_text.delta",
                               "response.reasoning_text.delta"})
_REASONING_DONES = frozenset({"response.reasoning_summary_text.done",
                              "response.reasoning_text.done"})
_ENDS = frozenset({"response.completed", "response.incomplete"})
_FAILS = frozenset({"response.failed", "error"})


class _Run:
    """What is known of one ``code_interpreter_call`` item."""

    __slots__ = ("code", "done", "index", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.code = ""
        self.started = False
        self.done = False


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _tool_args(name: str, item: dict[str, Any]) -> dict[str, Any]:
    if name == WEB_SEARCH:
        action = item.get("action")
        query = action.get("query") if isinstance(action, dict) else None
        return {"query": query if isinstance(query, str) else item.get("query")}
    return {"urls": item.get("urls"), "goal": item.get("goal")}


def _tool_output(name: str, item: dict[str, Any]) -> Any:
    if name == WEB_SEARCH:
        action = item.get("action")
        sources = action.get("sources") if isinstance(action, dict) else None
        urls = [s.get("url") for s in sources or () if isinstance(s, dict)]
        return {"sources": [u for u in urls if isinstance(u, str)]}
    return item.get("output")


def _finish_reason(response: dict[str, Any], kind: str) -> str:
    """``stop`` for a completed response; ``length`` when it stopped at the token limit."""
    status = response.get("status")
    if kind == "response.completed" and status in (None, "completed"):
        return "stop"
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if reason in ("max_output_tokens", "max_tokens", "length"):
        return "length"
    return str(reason or status or "incomplete")


class ResponsesParser(StreamState):
    """Sans-I/O parser for one Responses stream.

    Example:
        >>> from qwen_ci.protocols.sse import SSEEvent
        >>> parser = ResponsesParser("qwen3.5-plus")
        >>> parser.feed(SSEEvent("message", b'{"type":"response.output_text.delta",'
        ...                                 b'"delta":"42","sequence_number":3}'))
        [TextDelta(text='42')]
    """

    __slots__ = ("_count", "_model", "_runs", "_streamed", "_tools")

    def __init__(self, model: str, request_id: str | None = None) -> None:
        super().__init__(request_id)
        self._model = model
        self._runs: dict[str, _Run] = {}  # by item id and by "#<output index>"
        self._count = 0  # runs seen
        self._tools: dict[str, bool] = {}  # other built-in tool items: id -> done
        self._streamed: set[str] = set()  # "text" / "reasoning": came as deltas

    def feed(self, sse: SSEEvent) -> list[Event]:
        """Events produced by one SSE event; raises the service's errors."""
        obj = load_frame(sse.data)
        kind = obj.get("type")
        response = obj.get("response")
        if isinstance(response, dict):
            self._note_response(response)
        if (sse.event == "error" or (sse.status is not None and sse.status >= 400)
                or kind in _FAILS or ("error" in obj and kind is None)
                or (kind is None and "code" in obj and ("message" in obj or "msg" in obj))):
            raise self._error(obj, sse.status)
        if not isinstance(kind, str):
            raise ProtocolError(
                "Event has no 'type': " + repr(bytes(sse.data[:200])),
                request_id=self._request_id,
            )
        if self._finished:
            return []
        self.started = True
        events: list[Event] = []
        if kind == "response.output_text.delta":
            delta = obj.get("delta")
            if isinstance(delta, str) and delta:
                self._streamed.add("text")
                events.append(TextDelta(delta))
        elif kind in _REASONING_DELTAS:
            delta = obj.get("delta")
            if isinstance(delta, str) and delta:
                self._streamed.add("reasoning")
                events.append(ReasoningDelta(delta))
        elif kind == "response.output_text.done" or kind in _REASONING_DONES:
            # the whole text again: only used when it never came as deltas
            text = obj.get("text")
            what = "text" if kind == "response.output_text.done" else "reasoning"
            if isinstance(text, str) and text and what not in self._streamed:
                self._streamed.add(what)
                events.append(TextDelta(text) if what == "text" else ReasoningDelta(text))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = obj.get("item")
            if isinstance(item, dict):
                self._item(item, obj, kind == "response.output_item.done", events)
        elif kind.startswith("response.code_interpreter_call"):
            self._code_event(kind, obj, events)
        elif kind in _ENDS:
            self._end(kind, response if isinstance(response, dict) else {}, obj, events)
        return events

    def end(self) -> None:
        """The connection closed: raise if ``response.completed`` never came."""
        if not self._finished:
            raise IncompleteStreamError(
                "The stream ended before 'response.completed'; the answer is incomplete.",
                request_id=self._request_id,
            )

    # ------------------------------------------------------------------ pieces

    def _note_response(self, response: dict[str, Any]) -> None:
        rid = response.get("id")
        if self._request_id is None and isinstance(rid, str) and rid:
            self._request_id = rid
        model = response.get("model")
        if isinstance(model, str) and model:
            self._model = model

    def _error(self, obj: dict[str, Any], status: int | None) -> Exception:
        payload: Any = obj
        response = obj.get("response")
        if isinstance(response, dict) and isinstance(response.get("error"), dict):
            payload = response["error"]  # response.failed
        elif obj.get("type") == "error":
            payload = {k: v for k, v in obj.items() if k not in ("type", "sequence_number")}
        rid = obj.get("request_id")
        if isinstance(rid, str):
            self._request_id = rid
        return frame_error(payload, status, self._request_id)

    def _run(self, obj: dict[str, Any], item: dict[str, Any] | None = None) -> _Run:
        """The run an item or event belongs to: by item id, else by output index (an
        event may carry either; both name the same run)."""
        key = _str((item or {}).get("id")) or _str(obj.get("item_id"))
        position = obj.get("output_index")
        by_position = f"#{position}" if isinstance(position, int) else ""
        run = self._runs.get(key) if key else None
        if run is None and by_position:
            run = self._runs.get(by_position)
        if run is None:
            run = _Run(self._count)
            self._count += 1
        for name in (key, by_position):
            if name:
                self._runs.setdefault(name, run)
        return run

    def _started(self, run: _Run, code: Any, events: list[Event]) -> None:
        if isinstance(code, str) and code:
            run.code = code
        if run.code and not run.started and not run.done:
            run.started = True
            events.append(CodeStart(run.index, run.code))

    def _item(self, item: dict[str, Any], obj: dict[str, Any], done: bool,
              events: list[Event], texts: bool = True) -> None:
        kind = item.get("type")
        if kind == _CODE_ITEM:
            run = self._run(obj, item)
            self._started(run, item.get("code"), events)
            if done:
                self._final(run, item, events)
        elif kind in _TOOL_ITEMS:
            self._tool(_TOOL_ITEMS[kind], item, obj, done, events)
        elif done and texts and kind in ("message", "reasoning"):
            self._item_text(kind, item, events)

    def _item_text(self, kind: str, item: dict[str, Any], events: list[Event]) -> None:
        """A message or reasoning item whose text never came as deltas."""
        what = "text" if kind == "message" else "reasoning"
        if what in self._streamed:
            return
        self._streamed.add(what)
        parts = item.get("content") if kind == "message" else item.get("summary")
        text = "".join(_str(p.get("text")) for p in parts or () if isinstance(p, dict))
        if text:
            events.append(TextDelta(text) if kind == "message" else ReasoningDelta(text))

    def _final(self, run: _Run, item: dict[str, Any], events: list[Event]) -> None:
        if run.done:
            return
        if not run.started:  # the code came only now: the start still comes first
            self._started(run, item.get("code"), events)
        run.done = True
        code = item.get("code")
        outputs = item.get("outputs")
        status = item.get("status")
        container = item.get("container_id")
        events.append(CodeRun(
            run.index,
            code if isinstance(code, str) and code else run.code,
            outputs=[o for o in outputs if isinstance(o, dict)]
            if isinstance(outputs, list) else [],
            status=status if isinstance(status, str) else "completed",
            container_id=container if isinstance(container, str) else None,
        ))

    def _code_event(self, kind: str, obj: dict[str, Any], events: list[Event]) -> None:
        run = self._run(obj)
        if run.done:
            return
        if kind == "response.code_interpreter_call_code.delta":  # OpenAI's; not DashScope's
            delta = obj.get("delta")
            if isinstance(delta, str):
                run.code += delta
            return
        if kind == "response.code_interpreter_call_code.done":
            self._started(run, obj.get("code"), events)
            return
        code = obj.get("code")
        item = obj.get("item")
        if isinstance(item, dict):
            code = item.get("code") or code
        # in_progress / interpreting / completed: the code is being executed now
        self._started(run, code, events)

    def _tool(self, name: str, item: dict[str, Any], obj: dict[str, Any], done: bool,
              events: list[Event]) -> None:
        key = _str(item.get("id")) or f"{name}#{obj.get('output_index')}"
        if self._tools.get(key):
            return
        args = _tool_args(name, item)
        if key not in self._tools:
            self._tools[key] = False
            events.append(ToolStart(key, name, args))
        if done:
            self._tools[key] = True
            status = item.get("status")
            events.append(ToolRun(key, name, args, _tool_output(name, item),
                                  status if isinstance(status, str) else "completed", item))

    def _end(self, kind: str, response: dict[str, Any], obj: dict[str, Any],
             events: list[Event]) -> None:
        # items never reported as done: final from the response's own output list
        output = response.get("output")
        for position, item in enumerate(output if isinstance(output, list) else ()):
            if isinstance(item, dict):
                self._item(item, {"output_index": position}, True, events, texts=False)
        for run in dict.fromkeys(self._runs.values()):
            if not run.done and run.code:
                self._final(run, {"status": "incomplete"}, events)
        self._finished = True
        usage = response.get("usage")
        events.append(_usage(usage if isinstance(usage, dict) else {}))
        events.append(Finish(_finish_reason(response, kind), self._request_id, self._model,
                             obj))


def _usage(raw: dict[str, Any]) -> Usage:
    """``response.usage``: tokens, and ``x_tools`` (absent when no built-in tool ran) as
    the plugin counts."""
    return usage_from(raw, "input_tokens", "output_tokens", "output_tokens_details",
                      raw.get("x_tools"),
                      cached_keys=("input_tokens_details", "prompt_tokens_details"))


__all__ = ["TOOL_NAME", "ResponsesParser"]
