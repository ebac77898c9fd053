"""The Responses protocol (``protocol="responses"``): the request, the model table's choice
of protocol, and the parser driven over real HTTP by frames built from
../shared/PROTOCOL.md section 6 (tests/replay.py ``responses_stream``)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from qwen_ci import (
    AsyncClient,
    AuthenticationError,
    Client,
    CodeRun,
    CodeStart,
    Finish,
    IncompleteStreamError,
    InvalidRequestError,
    Options,
    RateLimitError,
    ReasoningDelta,
    TextDelta,
    ToolRun,
    ToolStart,
    Usage,
    acollect,
    build,
    collect,
)
from qwen_ci.cli import main
from qwen_ci.config import model_info, normalize_base_url, protocol_for
from qwen_ci.events import Event
from qwen_ci.protocols.responses import ResponsesParser
from qwen_ci.protocols.sse import SSEDecoder
from tests.replay import (
    RESP_CODE,
    RESP_LOGS,
    RESP_ONE_RUN,
    RESP_ONE_RUN_INFO,
    RESPONSE_ID,
    ReplayServer,
    Reply,
    responses_event,
    responses_stream,
)

Q = [{"role": "user", "content": "123的21次方是多少？"}]
PLUS = "qwen3.5-plus"
BIG = "77269364466549865653073473388030061522211723"


def client(server: ReplayServer, **kwargs: Any) -> Client:
    return Client(api_key="sk-test", base_url=server.base_url, **kwargs)


def responses(**options: Any) -> Any:
    return build(Q, Options(model=PLUS, **options), "responses")


def parse(frames: list[bytes]) -> list[Event]:
    """Sans-I/O: frames through the SSE decoder and the parser, one piece each."""
    decoder, parser = SSEDecoder(), ResponsesParser(PLUS)
    out: list[Event] = []
    for frame in frames:
        for sse in decoder.feed(frame):
            out += parser.feed(sse)
    for sse in decoder.close():
        out += parser.feed(sse)
    parser.end()
    return out


# ---------------------------------------------------------------------- request


def test_request_body_path_and_options() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Cite."},
                {"role": "user", "content": "2**10?"}, {"role": "assistant", "content": "1024"},
                {"role": "user", "content": "and 2**20?"}]
    request = build(messages, Options(model=PLUS, temperature=0.2, top_p=0.9, max_tokens=64,
                                      seed=3, extra_body={"reasoning": {"effort": "low"}}),
                    "responses")
    assert request.protocol == "responses"
    assert request.path == "/compatible-mode/v1/responses"
    assert request.body == {
        "model": PLUS,
        "instructions": "Be brief.\n\nCite.",
        "input": [{"role": "user", "content": "2**10?"},
                  {"role": "assistant", "content": "1024"},
                  {"role": "user", "content": "and 2**20?"}],
        "tools": [{"type": "code_interpreter"}],
        "enable_thinking": True, "stream": True,
        "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 64, "seed": 3,
        "reasoning": {"effort": "low"},
    }


def test_images_become_input_parts() -> None:
    parts = [{"type": "text", "text": "What is it?"},
             {"type": "image", "url": "https://example.com/cat.png"}]
    body = build([{"role": "user", "content": parts}], Options(model=PLUS), "responses").body
    assert body["input"] == [{"role": "user", "content": [
        {"type": "input_text", "text": "What is it?"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]


def test_builtin_tools_per_protocol() -> None:
    both = responses(builtin_tools=["web_search", "web_extractor"]).body["tools"]
    assert both == [{"type": "code_interpreter"}, {"type": "web_search"},
                    {"type": "web_extractor"}]
    native = build(Q, Options(builtin_tools=["web_search"]), "dashscope").body
    assert native["parameters"]["enable_search"] is True
    compat = build(Q, Options(builtin_tools=["web_search"]), "openai").body
    assert compat["enable_search"] is True
    with pytest.raises(InvalidRequestError, match="'web_extractor' needs protocol 'responses'"):
        build(Q, Options(builtin_tools=["web_search", "web_extractor"]), "dashscope")
    with pytest.raises(InvalidRequestError, match="without 'web_search'"):
        responses(builtin_tools=["web_extractor"])
    with pytest.raises(InvalidRequestError, match="function tools cannot be combined"):
        responses(builtin_tools=["function"])
    with pytest.raises(InvalidRequestError, match="list of names"):
        responses(builtin_tools="web_search")


def test_function_tools_stay_refused_on_responses() -> None:
    tool = {"type": "function", "name": "f", "parameters": {}}
    with pytest.raises(InvalidRequestError, match="function calling"):
        responses(extra_body={"tools": [tool]})
    with pytest.raises(InvalidRequestError, match="function calling"):
        responses(extra_body={"tool_choice": "auto"})
    with pytest.raises(InvalidRequestError, match="enable_thinking"):
        responses(extra_body={"enable_thinking": False})


def test_pasted_responses_urls_are_cut_to_the_root() -> None:
    root = "https://dashscope.aliyuncs.com"
    assert normalize_base_url(root + "/compatible-mode/v1/responses") == root
    legacy = root + "/api/v2/apps/protocols/compatible-mode/v1/responses"
    assert normalize_base_url(legacy) == root


# ---------------------------------------------------------------------- model table


@pytest.mark.parametrize(("model", "default", "supported"), [
    ("qwen3-max-preview", "dashscope", ("dashscope", "openai")),
    ("qwen3-max", "dashscope", ("dashscope", "openai")),
    ("qwen3-max-2026-01-23", "responses", ("responses", "dashscope", "openai")),
    ("qwen3.5-plus", "responses", ("responses", "dashscope", "openai")),
    ("qwen3.5-plus-2026-02-15", "responses", ("responses", "dashscope", "openai")),
    ("qwen3.6-plus", "responses", ("responses",)),
    ("qwen3.7-plus", "responses", ("responses", "dashscope", "openai")),
    ("qwen3.8-max", "responses", ("responses",)),
    ("qwen3.6-flash", "responses", ("responses",)),
    ("qwen3.5-35b-a3b", "responses", ("responses",)),
    ("qwen3-coder-next", "responses", ("responses",)),
    ("deepseek-v4-flash", "responses", ("responses",)),
    ("my-selfhosted-model", "dashscope", ("dashscope", "openai", "responses")),
])
def test_the_model_table_picks_the_default_and_refuses_the_rest(
        model: str, default: str, supported: tuple[str, ...]) -> None:
    assert model_info(model).protocols == supported
    assert protocol_for(model) == default
    assert build(Q, Options(model=model)).protocol == default  # protocol unset
    for protocol in ("dashscope", "openai", "responses"):
        if protocol in supported:
            assert build(Q, Options(model=model), protocol).protocol == protocol
            continue
        with pytest.raises(InvalidRequestError) as info:
            build(Q, Options(model=model), protocol)
        message = str(info.value)
        assert f"does not serve the code interpreter on protocol {protocol!r}" in message
        assert all(f"'{name}'" in message for name in supported)


def test_unknown_protocol_names_every_protocol() -> None:
    with pytest.raises(InvalidRequestError, match=r"'dashscope'.*'openai'.*'responses'"):
        build(Q, Options(), "chat")


# ---------------------------------------------------------------------- parser over HTTP


def test_one_run_with_its_output_over_http(server: ReplayServer) -> None:
    server.queue(Reply(responses_stream(RESP_ONE_RUN)))
    with client(server) as c:
        events = list(c.stream(responses()))
    assert server.requests[0].path == "/compatible-mode/v1/responses"
    assert server.requests[0].headers["accept"] == "text/event-stream"
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ReasoningDelta", "ReasoningDelta", "CodeStart", "CodeRun",
                     "ReasoningDelta", "TextDelta", "TextDelta", "Usage", "Finish"]
    run = events[3]
    assert run == CodeRun(0, RESP_CODE, outputs=[{"type": "logs", "logs": RESP_LOGS}],
                          status="completed", container_id="cntr_7f3e2a")
    assert run.output == RESP_LOGS and run.ok
    usage = events[-2]
    assert isinstance(usage, Usage) and usage.plugins == {"code_interpreter": {"count": 1}}
    assert usage.reasoning_tokens == 3 and usage.total_tokens == 125
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.request_id, finish.model) == ("stop", RESPONSE_ID, PLUS)


def test_collect_gives_tool_info_with_outputs(server: ReplayServer) -> None:
    server.queue(Reply(responses_stream(RESP_ONE_RUN)))
    with client(server) as c:
        result = collect(c.stream(responses()))
    assert result.tool_info == RESP_ONE_RUN_INFO
    assert result.text == f"123**21 = {BIG}."
    assert result.reasoning == "The user wants 123**21.It printed the value."


def test_the_start_comes_from_the_added_item_before_execution() -> None:
    """CodeStart is produced by output_item.added, before the interpreting event (the
    service runs the code after it), and CodeRun only by the item's done event."""
    frames = responses_stream(RESP_ONE_RUN)
    decoder, parser = SSEDecoder(), ResponsesParser(PLUS)
    seen: list[tuple[str, list[str]]] = []
    for frame in frames:
        for sse in decoder.feed(frame):
            kind = json.loads(sse.data)["type"]
            seen.append((kind, [type(e).__name__ for e in parser.feed(sse)]))
    added = next(i for i, (k, ev) in enumerate(seen) if "CodeStart" in ev)
    assert seen[added][0] == "response.output_item.added"
    interpreting = [k for k, _ in seen].index("response.code_interpreter_call.interpreting")
    done = next(i for i, (k, ev) in enumerate(seen) if "CodeRun" in ev)
    assert added < interpreting < done
    assert seen[done][0] == "response.output_item.done"


@pytest.mark.parametrize("reasoning_event", ["response.reasoning_summary_text.delta",
                                             "response.reasoning_text.delta"])
@pytest.mark.parametrize("http_status", [True, False])
def test_both_reasoning_names_with_and_without_status_lines(
        server: ReplayServer, reasoning_event: str, http_status: bool) -> None:
    frames = responses_stream(RESP_ONE_RUN, reasoning_event=reasoning_event,
                              http_status=http_status)
    assert all((b":HTTP_STATUS/200" in f) is http_status for f in frames)
    server.queue(Reply(frames))
    with client(server) as c:
        result = collect(c.stream(responses()))
    assert result.reasoning == "The user wants 123**21.It printed the value."
    assert result.tool_info == RESP_ONE_RUN_INFO


def test_data_only_framing_and_any_cut_give_the_same_events() -> None:
    frames = responses_stream(RESP_ONE_RUN)
    expected = parse(frames)
    body = b"".join(frames)
    assert parse([body]) == expected
    assert parse([body[i:i + 7] for i in range(0, len(body), 7)]) == expected
    bare = [b"data: " + f.split(b"data:", 1)[1] for f in frames]  # no id/event/status lines
    assert parse(bare) == expected


def test_code_known_only_when_done_still_starts_first() -> None:
    frames = [
        {"type": "response.created", "response": {"id": RESPONSE_ID, "model": PLUS}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "",
                  "status": "in_progress"}},
        {"type": "response.code_interpreter_call.interpreting", "output_index": 0,
         "item_id": "msg_a"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "print(2**10)",
                  "outputs": [{"type": "logs", "logs": "1024\n"}], "container_id": "c1",
                  "status": "completed"}},
        {"type": "response.completed", "response": {"id": RESPONSE_ID, "status": "completed",
                                                     "usage": {"input_tokens": 5}}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    assert events[:2] == [CodeStart(0, "print(2**10)"), CodeRun(
        0, "print(2**10)", outputs=[{"type": "logs", "logs": "1024\n"}], status="completed",
        container_id="c1")]
    assert isinstance(events[2], Usage) and events[2].plugins == {}  # x_tools absent


def test_openai_code_delta_events_are_accepted() -> None:
    """Not documented by DashScope (OpenAI has them): the code may come as deltas."""
    frames = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": ""}},
        {"type": "response.code_interpreter_call_code.delta", "output_index": 0,
         "item_id": "msg_a", "delta": "x = 6"},
        {"type": "response.code_interpreter_call_code.delta", "output_index": 0,
         "item_id": "msg_a", "delta": " * 7"},
        {"type": "response.code_interpreter_call_code.done", "output_index": 0,
         "item_id": "msg_a", "code": "x = 6 * 7"},
        {"type": "response.code_interpreter_call.interpreting", "output_index": 0,
         "item_id": "msg_a"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "x = 6 * 7",
                  "outputs": [], "status": "completed"}},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    assert events[0] == CodeStart(0, "x = 6 * 7")
    assert events[1] == CodeRun(0, "x = 6 * 7", outputs=[], status="completed")
    assert events[1].output == ""  # ran, printed nothing: known to be empty, not unknown


def test_runs_never_done_are_final_from_the_completed_output() -> None:
    item = {"id": "msg_b", "type": "code_interpreter_call", "code": "1+1",
            "outputs": [{"type": "logs", "logs": "2"}], "container_id": "c", "status":
            "completed"}
    frames = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "outputs": [], "status": "in_progress"}},
        {"type": "response.output_text.delta", "item_id": "msg_t", "delta": "2"},
        {"type": "response.completed", "response": {"status": "completed", "output": [item],
                                                     "usage": {"x_tools": {
                                                         "code_interpreter": {"count": 1}}}}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    assert [type(e).__name__ for e in events] == ["CodeStart", "TextDelta", "CodeRun", "Usage",
                                                  "Finish"]
    assert events[2] == CodeRun(0, "1+1", outputs=[{"type": "logs", "logs": "2"}],
                                status="completed", container_id="c")


def test_text_that_comes_only_whole_is_reported_once() -> None:
    frames = [
        {"type": "response.reasoning_text.done", "item_id": "r", "text": "Think."},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "r", "type": "reasoning",
                  "summary": [{"type": "summary_text", "text": "Think."}]}},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"id": "m", "type": "message",
                  "content": [{"type": "output_text", "text": "Answer."}]}},
        {"type": "response.output_text.done", "item_id": "m", "text": "Answer."},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    assert events[:2] == [ReasoningDelta("Think."), TextDelta("Answer.")]


def test_web_search_and_extractor_calls() -> None:
    steps = [
        ("reasoning", ["Search first."]),
        ("search", "qwen3.5 release", ["https://qwen.ai/blog", "https://example.org/q"]),
        ("extract", ["https://qwen.ai/blog"], "release date", "Released in February."),
        ("code", "print(2026 - 2025)", "1\n"),
        ("text", ["One year."]),
    ]
    events = parse(responses_stream(steps))
    starts = [e for e in events if isinstance(e, ToolStart)]
    runs = [e for e in events if isinstance(e, ToolRun)]
    assert [(s.name, s.args) for s in starts] == [
        ("web_search", {"query": "qwen3.5 release"}),
        ("web_extractor", {"urls": ["https://qwen.ai/blog"], "goal": "release date"})]
    assert runs[0].output == {"sources": ["https://qwen.ai/blog", "https://example.org/q"]}
    assert runs[1].output == "Released in February."
    assert all(r.ok and r.id.startswith("msg_") for r in runs)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.plugins == {"web_search": {"count": 1}, "web_extractor": {"count": 1},
                             "code_interpreter": {"count": 1}}
    result = collect(iter(events))
    assert result.builtin_tools[0] == {
        "type": "web_search", "id": runs[0].id, "status": "completed",
        "web_search": {"query": "qwen3.5 release",
                       "sources": ["https://qwen.ai/blog", "https://example.org/q"]}}
    assert result.builtin_tools[1]["web_extractor"] == {
        "urls": ["https://qwen.ai/blog"], "goal": "release date",
        "output": "Released in February."}
    assert result.tool_info[0]["code_interpreter"]["outputs"] == [{"type": "logs", "logs": "1\n"}]


def test_failed_run_keeps_its_status() -> None:
    frames = [
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "1/0",
                  "outputs": [{"type": "logs", "logs": "ZeroDivisionError"}],
                  "status": "failed"}},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    run = parse([responses_event(f, index=i) for i, f in enumerate(frames)])[1]
    assert isinstance(run, CodeRun) and run.status == "failed" and not run.ok


def test_incomplete_response_finishes_with_length() -> None:
    frames = [
        {"type": "response.output_text.delta", "item_id": "m", "delta": "partial"},
        {"type": "response.incomplete", "response": {
            "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    assert isinstance(events[-1], Finish) and events[-1].reason == "length"


# ---------------------------------------------------------------------- errors, retries


def test_cut_before_completed_is_incomplete_and_not_retried(server: ReplayServer) -> None:
    frames = responses_stream(RESP_ONE_RUN, complete=False)
    server.queue(Reply(frames), Reply(responses_stream(RESP_ONE_RUN)))
    with client(server, max_retries=2) as c, pytest.raises(IncompleteStreamError) as info:
        collect(c.stream(responses()))
    assert "response.completed" in str(info.value)
    assert info.value.partial is not None
    assert info.value.partial.tool_info == RESP_ONE_RUN_INFO  # what was seen is kept
    assert len(server.requests) == 1  # output had started: never sent twice


def test_connection_dropped_mid_stream_is_incomplete(server: ReplayServer) -> None:
    server.queue(Reply(responses_stream(RESP_ONE_RUN), cut_after=5))
    with client(server) as c, pytest.raises(IncompleteStreamError):
        collect(c.stream(responses()))
    assert len(server.requests) == 1


def test_auth_error_before_output_keeps_code_message_request_id(server: ReplayServer) -> None:
    body = {"error": {"message": "Incorrect API key provided. ", "type": "invalid_request_error",
                      "param": None, "code": "invalid_api_key"}, "request_id": "af287265"}
    server.queue(Reply([json.dumps(body).encode()], status=401,
                       headers={"Content-Type": "application/json"}))
    with client(server) as c, pytest.raises(AuthenticationError) as info:
        list(c.stream(responses()))
    err = info.value
    assert (err.status, err.code, err.request_id) == (401, "invalid_api_key", "af287265")
    assert "Incorrect API key provided." in str(err)


def test_rate_limit_before_output_is_retried(server: ReplayServer) -> None:
    limited = {"error": {"message": "Requests rate limit exceeded, please try again later.",
                         "type": "limit_requests", "code": "limit_requests"},
               "request_id": "r-429"}
    server.queue(Reply([json.dumps(limited).encode()], status=429,
                       headers={"Content-Type": "application/json", "Retry-After": "0"}),
                 Reply(responses_stream(RESP_ONE_RUN)))
    with client(server, backoff=0.01) as c:
        result = collect(c.stream(responses()))
    assert result.tool_info == RESP_ONE_RUN_INFO and len(server.requests) == 2


@pytest.mark.parametrize("failure", [
    {"type": "response.failed", "response": {"id": RESPONSE_ID, "status": "failed", "error": {
        "code": "InternalError", "message": "An internal error has occurred."}}},
    {"type": "error", "code": "InternalError", "message": "An internal error has occurred."},
])
def test_error_events_after_output_raise_and_are_not_retried(
        server: ReplayServer, failure: dict[str, Any]) -> None:
    frames = responses_stream(RESP_ONE_RUN[:2], complete=False)
    frames.append(responses_event(failure, index=99))
    server.queue(Reply(frames), Reply(responses_stream(RESP_ONE_RUN)))
    with client(server, max_retries=2) as c, pytest.raises(Exception) as info:
        collect(c.stream(responses()))
    err = info.value
    assert getattr(err, "code", None) == "InternalError"
    assert "An internal error has occurred." in str(err)
    assert getattr(err, "partial", None) is not None and err.partial.tool_info  # type: ignore[attr-defined]
    assert len(server.requests) == 1


def test_native_style_error_frame_with_status_line(server: ReplayServer) -> None:
    error = (b'id:3\nevent:error\n:HTTP_STATUS/429\ndata:{"code":"Throttling.RateQuota",'
             b'"message":"Requests rate limit exceeded, please try again later.",'
             b'"request_id":"7671ecd8"}\n\n')
    server.queue(Reply([*responses_stream(RESP_ONE_RUN[:1], complete=False), error]))
    with client(server) as c, pytest.raises(RateLimitError) as info:
        list(c.stream(responses()))
    assert (info.value.status, info.value.request_id) == (429, "7671ecd8")


def test_x_request_id_header_wins_over_the_response_id(server: ReplayServer) -> None:
    server.queue(Reply(responses_stream(RESP_ONE_RUN), headers={
        "Content-Type": "text/event-stream", "x-request-id": "hdr-1"}))
    with client(server) as c:
        result = collect(c.stream(responses()))
    assert result.finish is not None and result.finish.request_id == "hdr-1"


def test_async_client_gives_the_same_events(server: ReplayServer) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    with client(server) as c:
        sync = list(c.stream(responses()))

    async def run() -> list[Event]:
        async with AsyncClient(api_key="sk-test", base_url=server.base_url) as ac:
            events = [e async for e in ac.stream(responses())]
            assert (await acollect(ac.stream(responses()))).tool_info == RESP_ONE_RUN_INFO
            return events

    assert asyncio.run(run()) == sync


# ---------------------------------------------------------------------- qwen-ci ask


def test_ask_prints_each_runs_output_under_its_code(server: ReplayServer) -> None:
    server.default = Reply(responses_stream(RESP_ONE_RUN))
    out = io.StringIO()
    code = main(["ask", "123**21?", "--base-url", server.base_url, "--api-key", "sk-t",
                 "--model", PLUS], out=out)
    text = out.getvalue()
    assert code == 0, text
    assert server.requests[0].path.endswith("/responses")  # the model's best protocol
    assert "code run 1" in text and "output of run 1" in text
    assert text.index(RESP_CODE) < text.index("output of run 1") < text.index(BIG)
    assert "code runs: 1" in text


def test_ask_says_unknown_without_responses(server: ReplayServer) -> None:
    from tests.replay import compat_stream

    server.default = Reply(compat_stream(["t"], ["a"]))
    out = io.StringIO()
    assert main(["ask", "q", "--base-url", server.base_url, "--api-key", "k",
                 "--protocol", "openai"], out=out) == 0
    assert "--protocol responses do" in out.getvalue() and "output of run" not in out.getvalue()


def test_error_event_before_any_output_is_retried(server: ReplayServer) -> None:
    """An error as the stream's first event (no output yet) is retried like an HTTP 5xx;
    the same error after output started is not (see above)."""
    failure = {"type": "error", "code": "InternalError",
               "message": "An internal error has occurred, please try again later."}
    server.queue(Reply([responses_event(failure, index=1)]),
                 Reply(responses_stream(RESP_ONE_RUN)))
    with client(server, backoff=0.01) as c:
        result = collect(c.stream(responses()))
    assert result.tool_info == RESP_ONE_RUN_INFO and len(server.requests) == 2


def test_events_naming_a_run_by_id_or_by_position_are_one_run() -> None:
    frames = [
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "", "status":
                  "in_progress"}},
        {"type": "response.code_interpreter_call_code.done", "output_index": 1,
         "code": "2**8"},  # by position only
        {"type": "response.code_interpreter_call.interpreting", "item_id": "msg_a"},  # by id
        {"type": "response.output_item.done", "output_index": 1,
         "item": {"id": "msg_a", "type": "code_interpreter_call", "code": "2**8",
                  "outputs": [{"type": "logs", "logs": "256"}], "status": "completed"}},
        {"type": "response.output_item.added", "output_index": 2,
         "item": {"id": "msg_b", "type": "code_interpreter_call", "code": "3**2"}},
        {"type": "response.output_item.done", "output_index": 2,
         "item": {"id": "msg_b", "type": "code_interpreter_call", "code": "3**2",
                  "outputs": [{"type": "logs", "logs": "9"}], "status": "completed"}},
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    events = parse([responses_event(f, index=i) for i, f in enumerate(frames)])
    runs = [(type(e).__name__, e.index, e.code) for e in events
            if isinstance(e, CodeStart | CodeRun)]
    assert runs == [("CodeStart", 0, "2**8"), ("CodeRun", 0, "2**8"),
                    ("CodeStart", 1, "3**2"), ("CodeRun", 1, "3**2")]
