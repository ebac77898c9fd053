"""The driver's pieces without a server: ``<think>`` splitting, tool-call accumulation,
error mapping, upstream quirks (through ``httpx.MockTransport``), and the engine's use of
reported usage and run memos."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from qwen_ci_server.emulator import (
    Answer,
    Engine,
    Message,
    Piece,
    RunCode,
    Thinking,
    Turn,
    TurnUsage,
)
from qwen_ci_server.emulator.engine import Generation, SandboxSessionLike
from qwen_ci_server.emulator.wire import ServiceError
from qwen_ci_server.sandbox import ExecutionResult
from qwen_ci_server.selfhost import ThinkSplitter, UpstreamConfig, UpstreamModel
from qwen_ci_server.selfhost.config import chat_completions_url
from qwen_ci_server.selfhost.upstream import _Reply, code_of, upstream_error

TEXT = "<think>a < b?</think>\n\nx < y, see </think> <thin"


def run_splitter(pieces: list[str]) -> list[tuple[str, str]]:
    splitter = ThinkSplitter()
    out: list[tuple[str, str]] = []
    for piece in [*pieces, None]:
        found = splitter.feed(piece) if piece is not None else splitter.close()
        for kind, text in found:
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + text)
            else:
                out.append((kind, text))
    return out


def test_think_tags_give_the_same_result_however_the_text_is_cut() -> None:
    expected = [("thinking", "a < b?"), ("answer", "x < y, see <thin")]
    assert run_splitter([TEXT]) == expected
    for i in range(len(TEXT) + 1):
        for j in range(i, len(TEXT) + 1):
            assert run_splitter([TEXT[:i], TEXT[i:j], TEXT[j:]]) == expected, (i, j)


def test_plain_content_passes_through_and_a_stray_close_tag_is_dropped() -> None:
    assert run_splitter(["\n\nHello", " <b>world</b>"]) == [("answer", "Hello <b>world</b>")]
    assert run_splitter(["done</think>\n", "42"]) == [("answer", "done42")]


@pytest.mark.parametrize(("arguments", "code"), [
    ('{"code": "print(1)"}', "print(1)"),
    ('{"source": "print(2)"}', "print(2)"),
    ('"print(3)"', "print(3)"),
    ("print(4)", "print(4)"),
    ('{"code": 5, "x": 6}', ""),
])
def test_code_of_tool_arguments(arguments: str, code: str) -> None:
    assert code_of(arguments) == code


def test_tool_calls_without_index_named_again_or_with_object_arguments() -> None:
    reply = _Reply()
    reply.add_calls([{"id": "a", "function": {"name": "code_interpreter", "arguments": "{\"co"}}])
    reply.add_calls([{"id": "a", "function": {"name": "code_interpreter",
                                              "arguments": "de\": \"1\"}"}}])
    reply.add_calls([{"id": "b", "function": {"name": "code_interpreter",
                                              "arguments": {"code": "2"}}}])
    reply.add_calls([{"index": 5, "function": {"arguments": "{}"}}])
    calls = reply.ordered_calls(round_index=3)
    assert [(c.id, c.name, code_of(c.arguments)) for c in calls] == [
        ("a", "code_interpreter", "1"), ("b", "code_interpreter", "2"), ("call00302", "", "")]


@pytest.mark.parametrize(("status", "mapped", "code", "compat"), [
    (400, 400, "InvalidParameter", "invalid_parameter_error"),
    (422, 400, "InvalidParameter", "invalid_parameter_error"),
    (403, 403, "AccessDenied", "access_denied"),
    (413, 413, "InvalidParameter", "invalid_parameter_error"),
    (502, 502, "InternalError", "internal_error"),
    (503, 503, "ModelUnavailable", "ModelUnavailable"),
])
def test_upstream_error_mapping(status: int, mapped: int, code: str, compat: str) -> None:
    error = upstream_error(status, {"detail": [{"msg": "field required", "input": "secret"}]})
    assert (error.status, error.native_code, error.compat_code) == (mapped, code, compat)
    assert error.message == f"upstream error (HTTP {status}): field required"


def test_upstream_error_messages_never_carry_the_key() -> None:
    error = upstream_error(401, {"error": "Incorrect API key provided: sk-abc"}, secret="sk-abc")
    assert "sk-abc" not in error.message and "***" in error.message
    assert upstream_error(500, None, b"x" * 5000).message.endswith("...")


@pytest.mark.parametrize(("given", "url"), [
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions"),
    ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1/chat/completions"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions"),
    ("https://h/compatible-mode/v1/chat/completions",
     "https://h/compatible-mode/v1/chat/completions"),
])
def test_chat_completions_url(given: str, url: str) -> None:
    assert chat_completions_url(given) == url


def test_config_validation_and_reprs_without_the_key() -> None:
    with pytest.raises(ValueError, match="not an http"):
        UpstreamConfig("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="empty"):
        UpstreamConfig("http://h/v1", " ")
    config = UpstreamConfig("http://user:pw@h/v1", "m", api_key="sk-secret")
    model = UpstreamModel(config)
    assert "sk-secret" not in repr(config) and "sk-secret" not in repr(model)
    assert "pw" not in repr(model)


# ---------------------------------------------------------------------- the driver


def sse(*payloads: dict[str, Any] | str) -> bytes:
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads)


def driver(handler: Callable[[httpx.Request], httpx.Response]) -> UpstreamModel:
    config = UpstreamConfig("http://upstream.test/v1", "m", max_retries=0)
    return UpstreamModel(config, transport=httpx.MockTransport(handler))


async def pieces_of(model: UpstreamModel, turn: Turn | None = None) -> list[Piece]:
    turn = turn or Turn("qwen3-max", (Message("user", "hi"),))
    try:
        return [piece async for piece in model.turn(turn)]
    finally:
        await model.aclose()


async def test_a_server_that_does_not_stream_is_read_whole() -> None:
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "", "reasoning_content": "Let me run it.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "code_interpreter", "arguments": "{\"code\": \"1 + 1\"}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    model = driver(lambda request: httpx.Response(200, json=completion))
    pieces = await pieces_of(model)
    assert pieces[:2] == [Thinking("Let me run it."), TurnUsage(7, 3, 0)]
    assert isinstance(pieces[2], RunCode) and pieces[2].code == "1 + 1"


async def test_a_stream_that_ends_early_is_model_unavailable() -> None:
    body = sse({"choices": [{"index": 0, "delta": {"content": "half"}}]})
    model = driver(lambda request: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}))
    with pytest.raises(ServiceError) as info:
        await pieces_of(model)
    assert info.value.status == 503 and "ended early" in info.value.message


async def test_an_error_chunk_keeps_the_upstream_status() -> None:
    body = sse({"error": {"object": "error", "message": "context too long", "code": 400}})
    model = driver(lambda request: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}))
    with pytest.raises(ServiceError) as info:
        await pieces_of(model)
    assert info.value.status == 400 and "context too long" in info.value.message


async def test_plain_chat_without_the_code_interpreter_sends_no_tools() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=sse(
            {"choices": [{"index": 0, "delta": {"content": "Hi!"}, "finish_reason": "stop"}]},
            "[DONE]"), headers={"content-type": "text/event-stream"})

    turn = Turn("qwen3-max", (Message("system", "Be brief."), Message("user", "hi")),
                code_interpreter=False, options={"temperature": 0.2})
    assert await pieces_of(driver(handler), turn) == [Answer("Hi!")]
    assert "tools" not in sent[0] and sent[0]["temperature"] == 0.2
    assert sent[0]["messages"][0] == {"role": "system", "content": "Be brief."}


# ---------------------------------------------------------------------- the engine


class _Session:
    async def run(self, code: str) -> ExecutionResult:
        return ExecutionResult("ok", stdout=f"ran {code}")

    def close(self) -> None:
        pass


class _Sandbox:
    def session(self) -> SandboxSessionLike:
        return _Session()


class _Reporting:
    """Two rounds with real usage; the memo of the first run comes back in the second."""

    name = "reporting"

    def __init__(self) -> None:
        self.memos: list[object] = []

    async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        self.memos = [run.memo for run in turn.runs]
        if not turn.runs:
            yield Thinking("think")
            yield TurnUsage(100, 20, 5)
            yield RunCode("x", memo={"id": "call-1"})
        else:
            yield Answer(turn.runs[0].result.stdout)
            yield TurnUsage(150, 7, 0)


async def test_reported_usage_is_summed_over_rounds_and_memos_come_back() -> None:
    model = _Reporting()
    engine = Engine(model, _Sandbox())
    frames = [f async for f in engine.frames(Generation("qwen3-max", (Message("user", "q"),)))]
    last = frames[-1]
    assert (last.input_tokens, last.output_tokens, last.reasoning_tokens) == (250, 27, 5)
    assert last.codes == ("x",) and "".join(f.content for f in frames) == "ran x"
    assert model.memos == [{"id": "call-1"}]
