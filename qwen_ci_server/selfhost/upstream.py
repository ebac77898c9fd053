"""The self-hosted model driver: any OpenAI-compatible chat completions server.

The upstream gets one function tool, ``code_interpreter(code: str)``, and a system
instruction on how to use it. Its reasoning (a ``reasoning_content`` or ``reasoning``
delta, or ``<think>`` text) becomes thinking, its text the answer; a tool call ends the
round: the emulator's engine runs the code in the request's sandbox and the next round
sends the output back as the tool result. Upstream failures become the service's error
shapes (:class:`~qwen_ci_server.emulator.wire.ServiceError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from qwen_ci.protocols.sse import SSEDecoder
from qwen_ci.retry import RETRY_STATUSES, RetryPolicy, retry_after
from qwen_ci_server.emulator.engine import MAX_RUNS
from qwen_ci_server.emulator.model import Answer, Piece, Run, RunCode, Thinking, Turn, TurnUsage
from qwen_ci_server.emulator.wire import MODEL_UNAVAILABLE, ServiceError
from qwen_ci_server.selfhost.config import INSTRUCTIONS, TOOL, TOOL_NAME, UpstreamConfig, safe_url
from qwen_ci_server.selfhost.logs import RequestStats, current_stats
from qwen_ci_server.selfhost.think import ThinkSplitter

logger = logging.getLogger("qwen_ci_server.selfhost.upstream")

LIMIT_NOTE = (
    "[The limit of {n} code runs for this request has been reached: no more code can run. "
    "Answer now with what you have.]"
)
LIMIT_ANSWER = (
    "I had to stop: the limit of {n} code runs per request was reached before the task "
    "was finished."
)
NOT_RUN = "(not run: the limit of code runs for this request was reached)"
_ERROR_BODY_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 1000

# upstream HTTP status -> (native code, compatible code, compatible type)
_BY_STATUS: dict[int, tuple[str, str, str]] = {
    400: ("InvalidParameter", "invalid_parameter_error", "invalid_request_error"),
    401: ("InvalidApiKey", "invalid_api_key", "invalid_request_error"),
    403: ("AccessDenied", "access_denied", "invalid_request_error"),
    404: ("ModelNotFound", "model_not_found", "invalid_request_error"),
    429: ("Throttling.RateQuota", "limit_requests", "limit_requests"),
    500: ("InternalError", "internal_error", "internal_error"),
    503: ("ModelUnavailable", "ModelUnavailable", "service_unavailable"),
}


@dataclass(frozen=True, slots=True)
class _Step:
    """Memo of a run: the upstream reply it came from and which of its tool calls it is."""

    round: int
    message: Mapping[str, Any]
    call: int
    codes: tuple[str, ...]


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Reply:
    """One upstream reply, accumulated from its stream."""

    splitter: ThinkSplitter = field(default_factory=ThinkSplitter)
    reasoning_field: str | None = None
    reasoning: str = ""
    content: str = ""
    calls: dict[int, _Call] = field(default_factory=dict)
    usage: Mapping[str, Any] | None = None
    finish: str | None = None
    done: bool = False

    def add_calls(self, deltas: Any) -> None:
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if not isinstance(delta, Mapping):
                continue
            index = delta.get("index")
            call_id = delta.get("id") if isinstance(delta.get("id"), str) else ""
            if not isinstance(index, int):  # servers that send no index: ids tell calls apart
                last = max(self.calls) if self.calls else -1
                known = self.calls.get(last)
                new = known is None or bool(call_id and known.id and call_id != known.id)
                index = last + 1 if new else last
            call = self.calls.setdefault(index, _Call())
            if call_id:
                call.id = call_id
            function = delta.get("function")
            if not isinstance(function, Mapping):
                continue
            name = function.get("name")
            if isinstance(name, str) and name and name != call.name:
                call.name += name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
            elif isinstance(arguments, Mapping):  # some servers send an object
                call.arguments += json.dumps(arguments, ensure_ascii=False)

    def ordered_calls(self, round_index: int) -> list[_Call]:
        calls = [self.calls[i] for i in sorted(self.calls)]
        for number, call in enumerate(calls):
            call.id = call.id or f"call{round_index:03d}{number:02d}"
        return calls


def code_of(arguments: str) -> str:
    """The code in a tool call's arguments (JSON ``{"code": ...}``, leniently).

    Example:
        >>> code_of('{"code": "print(1)"}'), code_of("print(2)")
        ('print(1)', 'print(2)')
    """
    try:
        args = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(args, str):
        return args
    if isinstance(args, Mapping):
        code = args.get("code")
        if isinstance(code, str):
            return code
        strings = [value for value in args.values() if isinstance(value, str)]
        if len(strings) == 1:
            return strings[0]
    return ""


def _message_of(payload: Any, raw: bytes) -> str:
    """The human part of an upstream error body, in any of the usual shapes."""
    if isinstance(payload, Mapping):
        inner = payload.get("error", payload)
        if isinstance(inner, str):
            return inner
        if isinstance(inner, Mapping):
            for key in ("message", "msg", "error"):
                if isinstance(inner.get(key), str) and inner[key]:
                    return str(inner[key])
            detail = inner.get("detail")
            if isinstance(detail, str):
                return detail
            if isinstance(detail, list):  # FastAPI validation errors: messages only
                return "; ".join(str(d.get("msg", "")) for d in detail if isinstance(d, Mapping))
    text = raw.decode("utf-8", errors="replace").strip()
    return text or "(no message)"


def upstream_error(
    status: int, payload: Any, raw: bytes = b"", secret: str | None = None
) -> ServiceError:
    """The service error for an upstream HTTP error (same status, the matching code).

    Example:
        >>> error = upstream_error(401, {"error": {"message": "bad key"}})
        >>> error.status, error.native_code, error.message
        (401, 'InvalidApiKey', 'upstream error (HTTP 401): bad key')
    """
    message = _message_of(payload, raw)
    if secret:
        message = message.replace(secret, "***")
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    text = f"upstream error (HTTP {status}): {message}"
    mapped = 400 if status == 422 else status
    if mapped in _BY_STATUS:
        native, compat, kind = _BY_STATUS[mapped]
    elif 400 <= mapped < 500:
        native, compat, kind = _BY_STATUS[400]
    else:
        mapped = mapped if 500 <= mapped < 600 else 500
        native, compat, kind = _BY_STATUS[500]
    return ServiceError(mapped, native, text, compat, compat_type=kind)


def unavailable(detail: str) -> ServiceError:
    """503 ``ModelUnavailable`` (upstream unreachable, dropped or silent)."""
    return replace(MODEL_UNAVAILABLE, message=f"{MODEL_UNAVAILABLE.message} ({detail})")


class UpstreamModel:
    """A :class:`~qwen_ci_server.emulator.model.Model` backed by an OpenAI-compatible server.

    Plug it into the emulator (or use ``qwen-ci serve``) to serve DashScope's code
    interpreter with your own model and sandbox.

    Example:
        >>> from qwen_ci_server.emulator import Emulator
        >>> model = UpstreamModel(UpstreamConfig("http://127.0.0.1:11434/v1", "qwen3:8b"))
        >>> model.name
        'qwen3:8b'
        >>> with Emulator(model=model) as emu:  # doctest: +SKIP
        ...     print(emu.base_url)
    """

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        max_rounds: int = MAX_RUNS,
        instructions: str = INSTRUCTIONS,
        log_content: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.config = config
        self.name = config.model
        self.max_rounds = max_rounds
        self.instructions = instructions
        self.log_content = log_content
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return (f"UpstreamModel(model={self.name!r}, base_url={safe_url(self.config.base_url)!r},"
                f" max_rounds={self.max_rounds})")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout)
            self._client = httpx.AsyncClient(timeout=timeout, transport=self._transport,
                                             trust_env=False)
        return self._client

    async def aclose(self) -> None:
        """Close the connections to the upstream."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ------------------------------------------------------------------ one round

    async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        """Stream one upstream reply; end with a :class:`RunCode` when it calls the tool."""
        stats = current_stats()
        last = turn.runs[-1].memo if turn.runs else None
        allowed = turn.code_interpreter and len(turn.runs) < self.max_rounds
        if isinstance(last, _Step) and last.call + 1 < len(last.codes) and allowed:
            # the previous reply asked for several runs: the next one, without a new call
            step = replace(last, call=last.call + 1)
            if stats is not None:
                stats.runs += 1
            yield RunCode(step.codes[step.call], step)
            return
        final = turn.code_interpreter and not allowed
        rounds = _rounds(turn.runs)
        body = self._body(turn, final, rounds)
        reply = _Reply()
        earlier = any(step.message.get("content") for step, _ in rounds)
        separate = earlier
        async with contextlib.aclosing(self._stream(body, reply, stats)) as pieces:
            async for piece in pieces:  # closed at once if the request ends early
                if isinstance(piece, Answer) and separate:
                    piece, separate = Answer("\n\n" + piece.text), False
                yield piece
        calls = reply.ordered_calls(len(rounds))
        if reply.usage is not None:
            yield _usage(reply.usage, stats)
        if calls and turn.code_interpreter and not final:
            codes = tuple(code_of(call.arguments) for call in calls)
            step = _Step(len(rounds), self._assistant(reply, calls), 0, codes)
            if stats is not None:
                stats.runs += 1
            yield RunCode(codes[0], step)
        elif final and (calls or not reply.content):
            prefix = "\n\n" if reply.content or earlier else ""
            yield Answer(prefix + LIMIT_ANSWER.format(n=self.max_rounds))

    def _assistant(self, reply: _Reply, calls: Sequence[_Call]) -> dict[str, Any]:
        """The assistant message that goes back to the upstream with the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if self.config.echo_reasoning and reply.reasoning_field and reply.reasoning:
            message[reply.reasoning_field] = reply.reasoning
        message["tool_calls"] = [
            {"id": call.id, "type": "function",
             "function": {"name": call.name or TOOL_NAME, "arguments": call.arguments}}
            for call in calls
        ]
        return message

    def _body(self, turn: Turn, final: bool, rounds: list[tuple[_Step, list[Run]]]
              ) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        system = [m.text for m in turn.messages if m.role == "system" and m.text.strip()]
        if turn.code_interpreter:
            system.insert(0, self.instructions)
        if system:  # one system message, first: what every chat template accepts
            messages.append({"role": "system", "content": "\n\n".join(system)})
        messages += [{"role": m.role, "content": m.text} for m in turn.messages
                     if m.role != "system"]
        for step, runs in rounds:
            messages.append(dict(step.message))
            for index, call in enumerate(step.message["tool_calls"]):
                output = runs[index].result.feedback() if index < len(runs) else NOT_RUN
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})
        if final and messages[-1]["role"] == "tool":
            last = messages[-1]
            messages[-1] = {**last, "content": last["content"] + "\n\n"
                            + LIMIT_NOTE.format(n=self.max_rounds)}
        body: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                "stream": True}
        if self.config.include_usage:
            body["stream_options"] = {"include_usage": True}
        if turn.code_interpreter:
            body["tools"] = [TOOL]
            if final:
                body["tool_choice"] = "none"
        for name in ("temperature", "top_p", "seed"):
            if turn.options.get(name) is not None:
                body[name] = turn.options[name]
        return _merge(body, self.config.extra_body)

    # ------------------------------------------------------------------ HTTP

    async def _open(self, body: dict[str, Any], stats: RequestStats | None) -> httpx.Response:
        """POST with retries before the first byte; the streaming response (status < 400)."""
        headers = {"Accept": "text/event-stream"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        client = self._http()
        policy = RetryPolicy(self.config.max_retries, backoff=self.config.retry_backoff)
        attempt = 0
        while True:
            wait: float | None = None
            try:
                request = client.build_request("POST", self.config.url, json=body,
                                               headers=headers)
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                error = unavailable(
                    f"the upstream at {safe_url(self.config.base_url)} did not answer in time")
            except httpx.TransportError as exc:
                error = unavailable(f"upstream unreachable at {safe_url(self.config.base_url)}: "
                                    f"{type(exc).__name__}")
            else:
                if response.status_code < 400:
                    return response
                raw = await _read_capped(response)
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = None
                error = upstream_error(response.status_code, payload, raw, self.config.api_key)
                wait = retry_after(response.headers)
                if response.status_code not in RETRY_STATUSES:
                    self._failed(error, stats)
                    raise error
            delay = policy.delay(attempt, wait)
            if delay is None:
                self._failed(error, stats)
                raise error
            attempt += 1
            logger.warning("upstream call failed; retrying", extra={"fields": {
                "status": error.status, "code": error.native_code, "attempt": attempt}})
            await asyncio.sleep(delay)

    @staticmethod
    def _failed(error: ServiceError, stats: RequestStats | None) -> None:
        logger.warning("upstream call failed", extra={"fields": {
            "status": error.status, "code": error.native_code}})
        if stats is not None:
            stats.error = error.native_code

    async def _stream(
        self, body: dict[str, Any], reply: _Reply, stats: RequestStats | None
    ) -> AsyncGenerator[Piece, None]:
        """The reply's thinking and answer pieces; fills ``reply`` as it goes."""
        if self.log_content:
            logger.debug("upstream request", extra={"fields": {"body": body}})
        started = time.monotonic()
        if stats is not None:
            stats.rounds += 1
        response = await self._open(body, stats)
        try:
            kind = response.headers.get("content-type", "")
            if "json" in kind and "event-stream" not in kind:  # the server would not stream
                for piece in _whole(json.loads(await _read_capped(response, 1 << 26)), reply):
                    yield piece
            else:
                decoder = SSEDecoder()
                async for data in response.aiter_bytes():
                    for event in decoder.feed(data):
                        for piece in self._event(event.data, reply):
                            yield piece
                    if reply.done:
                        break
                if not reply.done:
                    for event in decoder.close():
                        for piece in self._event(event.data, reply):
                            yield piece
            for kind_, text in reply.splitter.close():
                yield _piece(kind_, text, reply)
            if not reply.done and reply.finish is None:
                raise unavailable("the upstream stream ended early")
        except ServiceError as error:
            self._failed(error, stats)
            raise
        except (httpx.TransportError, ValueError) as exc:
            failure = unavailable(f"the upstream stream failed: {type(exc).__name__}")
            self._failed(failure, stats)
            raise failure from None
        finally:
            await response.aclose()
            if stats is not None:
                stats.upstream_ms += (time.monotonic() - started) * 1000

    def _event(self, data: bytes, reply: _Reply) -> list[Piece]:
        text = data.strip()
        if text == b"[DONE]":
            reply.done = True
            return []
        if not text:
            return []
        chunk = json.loads(text)
        if not isinstance(chunk, Mapping):
            return []
        if chunk.get("error") or chunk.get("object") == "error":
            raise self._stream_error(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping) and usage:
            reply.usage = usage
        pieces: list[Piece] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                pieces += _delta(delta, reply)
            if isinstance(choice.get("finish_reason"), str):
                reply.finish = choice["finish_reason"]
        return pieces

    def _stream_error(self, chunk: Mapping[str, Any]) -> ServiceError:
        inner = chunk.get("error", chunk)
        code = inner.get("code") if isinstance(inner, Mapping) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return upstream_error(status, chunk, secret=self.config.api_key)


def _rounds(runs: Sequence[Run]) -> list[tuple[_Step, list[Run]]]:
    """The runs grouped by the upstream reply that asked for them."""
    rounds: list[tuple[_Step, list[Run]]] = []
    for number, run in enumerate(runs):
        step = run.memo
        if not isinstance(step, _Step):  # a run this driver did not ask for
            call_id = f"call{number:03d}99"
            message = {"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "type": "function", "function": {
                    "name": TOOL_NAME, "arguments": json.dumps({"code": run.code})}}]}
            step = _Step(-1 - number, message, 0, (run.code,))
        if rounds and rounds[-1][0].round == step.round:
            rounds[-1][1].append(run)
        else:
            rounds.append((step, [run]))
    return rounds


def _delta(delta: Mapping[str, Any], reply: _Reply) -> list[Piece]:
    pieces: list[Piece] = []
    for name in ("reasoning_content", "reasoning"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            reply.reasoning_field = reply.reasoning_field or name
            reply.reasoning += value
            pieces.append(Thinking(value))
            break
    content = delta.get("content")
    if isinstance(content, str) and content:
        pieces += [_piece(kind, text, reply) for kind, text in reply.splitter.feed(content)]
    reply.add_calls(delta.get("tool_calls"))
    return pieces


def _piece(kind: str, text: str, reply: _Reply) -> Piece:
    if kind == "thinking":
        return Thinking(text)
    reply.content += text
    return Answer(text)


def _whole(payload: Any, reply: _Reply) -> list[Piece]:
    """A non-streamed ``chat.completion`` as if it had been streamed in one chunk."""
    if not isinstance(payload, Mapping):
        raise ValueError("not a chat completion")
    reply.done = True
    if isinstance(payload.get("usage"), Mapping):
        reply.usage = payload["usage"]
    pieces: list[Piece] = []
    for choice in payload.get("choices") or []:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping):
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                message = {**message, "tool_calls": [
                    {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
                ]}
            pieces += _delta(message, reply)
            reply.finish = str(choice.get("finish_reason") or "stop")
    return pieces


def _usage(usage: Mapping[str, Any], stats: RequestStats | None) -> TurnUsage:
    def number(value: Any) -> int:
        return value if isinstance(value, int) and value >= 0 else 0

    details = usage.get("completion_tokens_details")
    reasoning = number(details.get("reasoning_tokens")) if isinstance(details, Mapping) else 0
    result = TurnUsage(number(usage.get("prompt_tokens")), number(usage.get("completion_tokens")),
                       reasoning)
    if stats is not None:
        stats.input_tokens += result.input_tokens
        stats.output_tokens += result.output_tokens
    return result


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


async def _read_capped(response: httpx.Response, limit: int = _ERROR_BODY_LIMIT) -> bytes:
    data = b""
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) >= limit:
            break
    await response.aclose()
    return data[:limit]
