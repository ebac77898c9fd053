"""The Responses API: request validation and the event stream (PROTOCOL.md section 6).

A request (``model``, ``input``, ``instructions``, ``tools``, ``enable_thinking``, ...)
becomes a :class:`~qwen_ci_server.emulator.engine.Generation`; the engine's frames become
the documented events: reasoning items, one ``code_interpreter_call`` per run whose
``outputs[0].logs`` holds what the sandbox really printed, a ``web_search_call`` for the
emulator's labelled search data, the message, and ``response.completed`` with ``usage``
(``x_tools`` only when a built-in tool ran). A non-streaming call gets the response object
that ``response.completed`` carries.

What the documentation leaves open is the emulator's own choice, and says so in
``docs/emulator.md``: the layout of the execution log, the ``container_id`` format, the
reasoning summary part events, the response fields OpenAI defines that DashScope's pages
do not list, the error texts marked ``qwen-ci emulator:`` and the mid-stream error event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from qwen_ci_server.emulator.engine import Frame, Generation
from qwen_ci_server.emulator.model import Message, Role
from qwen_ci_server.emulator.validation import MAX_MESSAGES, _model, _thinking
from qwen_ci_server.emulator.wire import ServiceError, dumps, emulator_invalid
from qwen_ci_server.sandbox.limits import RESET_NOTICE, ExecutionResult

BUILT_IN = ("code_interpreter", "web_search", "web_extractor")
"""Built-in tools the emulator serves."""
NOT_EMULATED = ("web_search_image", "image_search", "file_search", "mcp")
"""Built-in tools the service documents and the emulator does not emulate (a 400)."""
_TEXT_PARTS = ("input_text", "output_text", "text")
_IMAGE_PARTS = ("input_image", "image_url")
_HISTORY_ITEMS = ("reasoning", "code_interpreter_call", "web_search_call", "web_extractor_call")
"""Output items of an earlier response sent back in ``input`` (as langchain-openai does):
accepted; the model reads the conversation's messages only."""
_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system",
                           "developer": "system"}
_PASSED = ("temperature", "top_p")


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A valid Responses request.

    Example:
        >>> request = parse_responses({"model": "qwen3-max", "input": "2**10?",
        ...     "tools": [{"type": "code_interpreter"}], "enable_thinking": True})
        >>> request.generation.code_interpreter, request.stream
        (True, False)
    """

    generation: Generation
    stream: bool
    web_search: bool = False
    echo: dict[str, Any] = field(default_factory=dict)
    """Request fields the response object repeats (instructions, tools, tool_choice,
    temperature, top_p)."""


def _invalid(message: str) -> ServiceError:
    return emulator_invalid(message)


def _content(where: str, content: Any) -> str:
    """The text of one input message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of parts such as "
                       '{"type": "input_text", "text": "..."}.')
    texts: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in _IMAGE_PARTS:
            texts.append("[image]")
        else:
            raise _invalid(
                f"{where}.content[{index}] is not a text or image part (type {kind!r}); "
                "use {\"type\": \"input_text\", \"text\": \"...\"}.")
    return "".join(texts)


def _input(raw: Any, instructions: Any) -> tuple[Message, ...]:
    """``instructions`` and ``input`` as the conversation's messages."""
    messages: list[Message] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("instructions must be a string.")
        if instructions.strip():
            messages.append(Message("system", instructions))
    if isinstance(raw, str):
        if not raw.strip():
            raise _invalid("input is empty; send the question as a string or a message list.")
        return (*messages, Message("user", raw))
    if not isinstance(raw, list) or not raw:
        raise _invalid("input must be a non-empty string or a non-empty list of messages "
                       'such as {"role": "user", "content": "..."}.')
    if len(raw) > MAX_MESSAGES:
        raise _invalid(f"input has {len(raw)} items, more than the limit of {MAX_MESSAGES}.")
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise _invalid(f"{where} must be an object such as "
                           '{"role": "user", "content": "..."}.')
        kind = item.get("type", "message")
        if kind in _HISTORY_ITEMS:
            continue
        if kind != "message":
            raise _invalid(f"{where} has type {kind!r}, which the emulator does not accept; "
                           "send messages (and earlier output items).")
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise _invalid(f"{where}.role must be user, assistant, system or developer "
                           f"(got {item.get('role')!r}).")
        messages.append(Message(role, _content(where, item.get("content"))))
    if not any(m.role == "user" and m.text.strip() for m in messages):
        raise _invalid("input has no user message with text; add "
                       '{"role": "user", "content": "..."}.')
    return tuple(messages)


def _tools(raw: Any) -> tuple[set[str], list[dict[str, Any]]]:
    """The built-in tools asked for, and the tools as sent (for the echo)."""
    if raw is None:
        return set(), []
    if not isinstance(raw, list):
        raise _invalid('tools must be a list such as [{"type": "code_interpreter"}].')
    kinds: set[str] = set()
    for index, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str):
            raise _invalid(f'tools[{index}] needs a "type", such as "code_interpreter".')
        if kind in NOT_EMULATED:
            raise _invalid(f"the {kind} tool is not emulated; use code_interpreter, web_search "
                           "or web_extractor.")
        if kind not in (*BUILT_IN, "function"):
            raise _invalid(f"tools[{index}] has the unknown type {kind!r}; the built-in tools "
                           "are code_interpreter, web_search, web_extractor, web_search_image, "
                           "image_search, file_search, mcp, and function.")
        kinds.add(kind)
    if "function" in kinds:
        if "code_interpreter" in kinds:
            raise _invalid("function tools cannot be combined with code_interpreter (function "
                           "calling); the real service rejects this too, with a message the "
                           "emulator does not know.")
        raise _invalid("function tools are not served by the emulator (its model does not "
                       "call functions); use the built-in tools.")
    if "web_extractor" in kinds and "web_search" not in kinds:
        raise _invalid("web_extractor needs web_search in tools too.")
    return kinds, [dict(tool) for tool in raw]


def parse_responses(
    body: Mapping[str, Any], extra_models: Collection[str] = ()
) -> ResponsesRequest:
    """Validate a Responses request; a :class:`ServiceError` (400) names what is wrong.

    ``extra_models`` are the self-hosted upstream's names (``qwen-ci serve``): a server
    that has them sends every request to its upstream, which cannot search the web."""
    model, entry = _model(body, extra_models)
    if body.get("background") not in (None, False):
        raise _invalid("background is not supported by the service's Responses API; leave it "
                       "out and use stream=true for long answers.")
    if body.get("previous_response_id") is not None:
        raise _invalid("previous_response_id: the emulator keeps no earlier responses; send "
                       "the whole conversation in input.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid(f"stream must be true or false (got {stream!r}).")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, Mapping):
        raise _invalid('reasoning must be an object such as {"effort": "medium"}.')
    messages = _input(body.get("input"), body.get("instructions"))
    kinds, tools = _tools(body.get("tools"))
    tool_choice = body.get("tool_choice", "auto")
    if tool_choice not in ("auto", "none"):
        raise _invalid(f"tool_choice {tool_choice!r} would force a tool, which thinking mode "
                       "rejects; use \"auto\" or \"none\".")
    if tool_choice == "none":
        kinds = set()
    thinking = _thinking(model, entry, body.get("enable_thinking"))
    code_interpreter = "code_interpreter" in kinds
    if code_interpreter:
        if not entry.code_interpreter:
            raise _invalid(f"the model {model} does not support the code_interpreter tool; use "
                           "qwen3-max, qwen3-max-2026-01-23 or qwen3.5-plus.")
        if "responses" not in entry.interpreter_apis:
            raise _invalid(f"the model {model} has the code interpreter only through the "
                           "native and chat-completions APIs.")
        if not thinking:
            raise _invalid("the code_interpreter tool needs enable_thinking=true (the real "
                           "service requires thinking mode; its exact message is unknown).")
    if kinds & {"web_search", "web_extractor"} and extra_models:
        raise _invalid("this self-hosted server has no web search; leave out the web_search "
                       "and web_extractor tools.")
    options: dict[str, object] = {k: body[k] for k in _PASSED if k in body}
    if "web_search" in kinds:
        options["enable_search"] = True
    generation = Generation(model=model, messages=messages, code_interpreter=code_interpreter,
                            thinking=thinking, options=options)
    echo = {"instructions": body.get("instructions"), "tools": tools,
            "tool_choice": tool_choice, "temperature": body.get("temperature"),
            "top_p": body.get("top_p")}
    return ResponsesRequest(generation, stream, "web_search" in kinds, echo)


# ---------------------------------------------------------------------- output


def execution_log(result: ExecutionResult) -> str:
    """What a run printed, as ``outputs[0].logs``: stdout, stderr, the last expression's
    value, the traceback when the code raised, and the sandbox's message when the run was
    stopped (time limit, crash), with the notice when the interpreter was restarted (the
    emulator's layout: the service's is not documented).

    Example:
        >>> execution_log(ExecutionResult("ok", stdout="hi\\n", result="3"))
        'hi\\n3'
    """
    parts = [result.stdout, result.stderr, result.result]
    if result.status == "error":
        parts.append(result.traceback or result.error)
    elif not result.ok:  # stopped by the sandbox: its message, not the interrupt's traceback
        parts.append(result.error or result.status)
    if result.reset:
        parts.append(RESET_NOTICE)
    return "\n".join(part.rstrip("\n") for part in parts if part.strip())


def error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
    """An error before any output: the compatible-mode body ``{"error": {...},
    "request_id"}`` (without the ``chatcmpl-`` id of chat completions)."""
    body = error.compat_body(request_id)
    body.pop("id", None)
    return body


def late_error(error: ServiceError) -> bytes:
    """An ``error`` event for a server that does not know the stream's sequence (the
    self-hosted gate's deadline): the emulator's choice, as :meth:`ResponsesStream.error`."""
    event = {"type": "error", "code": error.compat_code,
             "message": error.compat_message or error.message, "param": None}
    return f"event:error\ndata:{dumps(event)}\n\n".encode()


def new_item_id() -> str:
    """An output item id as the service writes them: ``msg_<uuid>`` for every type."""
    return f"msg_{uuid.uuid4()}"


def event_bytes(event: dict[str, Any]) -> bytes:
    """One SSE event: ``id:``, ``event:``, the native ``:HTTP_STATUS/200`` comment line
    (the service sends it sometimes; SSE parsers skip it) and ``data:``."""
    return (f"id:{event['sequence_number']}\nevent:{event['type']}\n:HTTP_STATUS/200\n"
            f"data:{dumps(event)}\n\n").encode()


@dataclass(slots=True)
class _Open:
    """The reasoning or message item being streamed."""

    kind: str
    index: int
    item_id: str
    text: str = ""


class ResponsesStream:
    """Turns the engine's frames into Responses events, and keeps the response object.

    Example:
        >>> from qwen_ci_server.emulator.engine import Frame
        >>> request = parse_responses({"model": "qwen3-max", "input": "hi"})
        >>> stream = ResponsesStream(request)
        >>> [e["type"] for e in stream.start()]
        ['response.created', 'response.in_progress']
        >>> events = stream.feed(Frame(content="Hello", input_tokens=9, output_tokens=1))
        >>> events += stream.feed(Frame(finish="stop", input_tokens=9, output_tokens=1))
        >>> events[-1]["response"]["output"][0]["content"][0]["text"]
        'Hello'
    """

    def __init__(self, request: ResponsesRequest) -> None:
        self.request = request
        self.response_id = str(uuid.uuid4())
        self.created_at = round(time.time(), 3)
        self.container_id = f"cntr_{uuid.uuid4().hex}"
        """One per request: every run of a request shares its sandbox session."""
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self.usage: dict[str, Any] | None = None
        self._seq = 0
        self._open: _Open | None = None
        self._runs: list[int] = []  # output index of each announced run
        self._finished_runs = 0
        self._searched = False

    # ------------------------------------------------------------------ helpers

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def response(self) -> dict[str, Any]:
        """The response object as it stands (``response.created`` ... ``completed``)."""
        echo = self.request.echo
        incomplete = {"reason": "max_output_tokens"} if self.status == "incomplete" else None
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "model": self.request.generation.model,
            "output": [dict(item) for item in self.output],
            "usage": self.usage,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": echo.get("instructions"),
            "metadata": {},
            "parallel_tool_calls": False,
            "temperature": echo.get("temperature"),
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": echo.get("tools", []),
            "top_p": echo.get("top_p"),
        }

    def _add(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.output.append(item)
        index = len(self.output) - 1
        return index, self._event("response.output_item.added", output_index=index,
                                  item=dict(item))

    def _done(self, index: int) -> dict[str, Any]:
        return self._event("response.output_item.done", output_index=index,
                           item=dict(self.output[index]))

    # ------------------------------------------------------------------ items

    def _close(self) -> list[dict[str, Any]]:
        """End the reasoning or message item being streamed."""
        current, self._open = self._open, None
        if current is None:
            return []
        ids = {"item_id": current.item_id, "output_index": current.index}
        if current.kind == "reasoning":
            part = {"type": "summary_text", "text": current.text}
            self.output[current.index]["summary"] = [part]
            return [
                self._event("response.reasoning_summary_text.done", **ids, summary_index=0,
                            text=current.text),
                self._event("response.reasoning_summary_part.done", **ids, summary_index=0,
                            part=dict(part)),
                self._done(current.index),
            ]
        text_part: dict[str, Any] = {"type": "output_text", "text": current.text,
                                     "annotations": []}
        self.output[current.index].update(content=[text_part], status="completed")
        return [
            self._event("response.output_text.done", **ids, content_index=0,
                        text=current.text),
            self._event("response.content_part.done", **ids, content_index=0,
                        part=dict(text_part)),
            self._done(current.index),
        ]

    def _text(self, kind: str, delta: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open.kind != kind:
            events += self._close()
            item_id = new_item_id()
            if kind == "reasoning":
                index, added = self._add({"id": item_id, "type": "reasoning", "summary": []})
                self._open = _Open(kind, index, item_id)
                events += [added, self._event(
                    "response.reasoning_summary_part.added", item_id=item_id,
                    output_index=index, summary_index=0,
                    part={"type": "summary_text", "text": ""})]
            else:
                index, added = self._add({"id": item_id, "type": "message", "role": "assistant",
                                          "status": "in_progress", "content": []})
                self._open = _Open(kind, index, item_id)
                events += [added, self._event(
                    "response.content_part.added", item_id=item_id, output_index=index,
                    content_index=0, part={"type": "output_text", "text": "",
                                           "annotations": []})]
        current = self._open
        assert current is not None
        current.text += delta
        ids = {"item_id": current.item_id, "output_index": current.index}
        if kind == "reasoning":
            events.append(self._event("response.reasoning_summary_text.delta", **ids,
                                      summary_index=0, delta=delta))
        else:
            events.append(self._event("response.output_text.delta", **ids, content_index=0,
                                      delta=delta, logprobs=[]))
        return events

    def _search(self, results: tuple[dict[str, object], ...]) -> list[dict[str, Any]]:
        events = self._close()
        self._searched = True
        item_id = new_item_id()
        query = next((m.text for m in reversed(self.request.generation.messages)
                      if m.role == "user"), "")
        sources = [{"type": "url", "url": str(r.get("url", ""))} for r in results]
        index, added = self._add({"id": item_id, "type": "web_search_call",
                                  "status": "in_progress",
                                  "action": {"type": "search", "query": query}})
        ids = {"item_id": item_id, "output_index": index}
        events += [added, self._event("response.web_search_call.in_progress", **ids),
                   self._event("response.web_search_call.searching", **ids),
                   self._event("response.web_search_call.completed", **ids)]
        self.output[index].update(status="completed", action={
            "type": "search", "query": query, "sources": sources})
        events.append(self._done(index))
        return events

    def _announce(self, code: str) -> list[dict[str, Any]]:
        """A run begins: its item (``in_progress``, with the code), then the service runs
        it (``interpreting``) while the stream is silent."""
        events = self._close()
        item_id = new_item_id()
        index, added = self._add({"id": item_id, "type": "code_interpreter_call",
                                  "status": "in_progress", "code": code, "outputs": [],
                                  "container_id": self.container_id})
        self._runs.append(index)
        ids = {"item_id": item_id, "output_index": index}
        return [*events, added, self._event("response.code_interpreter_call.in_progress", **ids),
                self._event("response.code_interpreter_call.interpreting", **ids)]

    def _finish_run(self, result: ExecutionResult | None) -> list[dict[str, Any]]:
        index = self._runs[self._finished_runs]
        self._finished_runs += 1
        item = self.output[index]
        logs = execution_log(result) if result is not None else ""
        item.update(status="completed", outputs=[{"type": "logs", "logs": logs}])
        return [self._event("response.code_interpreter_call.completed",
                            item_id=item["id"], output_index=index), self._done(index)]

    # ------------------------------------------------------------------ frames

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def feed(self, frame: Frame) -> list[dict[str, Any]]:
        """The events of one frame (none for frames that change nothing)."""
        events: list[dict[str, Any]] = []
        while self._finished_runs < min(len(frame.results), len(self._runs)):
            events += self._finish_run(frame.results[self._finished_runs])
        if frame.search and not self._searched:
            events += self._search(frame.search)
        if frame.reasoning and self.request.generation.thinking:
            events += self._text("reasoning", frame.reasoning)
        codes = frame.codes or ()
        while len(self._runs) < len(codes) and codes[len(self._runs)]:
            events += self._announce(codes[len(self._runs)])
        if frame.content:
            events += self._text("message", frame.content)
        if frame.finish is not None:
            events += self._end(frame)
        return events

    def _end(self, frame: Frame) -> list[dict[str, Any]]:
        events = self._close()
        while self._finished_runs < len(self._runs):
            results = frame.results
            result = results[self._finished_runs] if self._finished_runs < len(results) else None
            events += self._finish_run(result)
        self.status = "completed" if frame.finish == "stop" else "incomplete"
        self.usage = self._usage(frame)
        kind = "response.completed" if self.status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self.response()))
        return events

    def _usage(self, frame: Frame) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": frame.input_tokens,
            "output_tokens": frame.output_tokens,
            "output_tokens_details": {"reasoning_tokens": frame.reasoning_tokens},
            "total_tokens": frame.total_tokens,
            "x_details": [{"input_tokens": frame.input_tokens,
                           "output_tokens": frame.output_tokens,
                           "total_tokens": frame.total_tokens,
                           "x_billing_type": "response_api"}],
        }
        tools: dict[str, Any] = {}
        if self._runs:
            tools["code_interpreter"] = {"count": len(self._runs)}
        if self._searched:
            tools["web_search"] = {"count": 1}
        if tools:  # absent when no built-in tool ran, as documented
            usage["x_tools"] = tools
        return usage

    def error(self, error: ServiceError, sequence_number: int | None = None) -> dict[str, Any]:
        """A mid-stream error event (the emulator's choice: OpenAI's ``error`` event; the
        service's is not documented); ``sequence_number`` when events were dropped."""
        if sequence_number is not None:
            self._seq = sequence_number
        return self._event("error", code=error.compat_code,
                           message=error.compat_message or error.message, param=None)


__all__ = ["ResponsesRequest", "ResponsesStream", "error_body", "event_bytes",
           "execution_log", "late_error", "new_item_id", "parse_responses"]
