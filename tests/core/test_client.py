"""The client over real HTTP: recorded traffic, every error shape, retries, cut-offs."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from qwen_ci import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    CodeRun,
    IncompleteStreamError,
    Options,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    acollect,
    build,
    collect,
)
from qwen_ci.errors import QwenCIError
from tests.replay import (
    ReplayServer,
    Reply,
    SilentServer,
    closed_port_url,
    compat_chunk,
    compat_stream,
    native_frame,
    native_stream,
    recorded_reply,
    recorded_texts,
)

CI = "single-generation-message-with-code-interpreter-sse"
QUESTION = [{"role": "user", "content": "123的21次方是多少？"}]
JSON = {"Content-Type": "application/json"}


def native(server: ReplayServer, **kwargs: object) -> Client:
    return Client(api_key="sk-test", base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def req(protocol: str = "dashscope", **options: object) -> object:
    return build(QUESTION, Options(**options), protocol)  # type: ignore[arg-type]


def error_reply(status: int, payload: dict[str, object], **headers: str) -> Reply:
    return Reply([json.dumps(payload).encode()], status=status, headers={**JSON, **headers})


THROTTLED = {"code": "Throttling.RateQuota",
             "message": "Requests rate limit exceeded, please try again later.",
             "request_id": "rid-429"}


# ------------------------------------------------------------------ recorded traffic


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("per_event", [True, False])
def test_recorded_code_interpreter_stream(server: ReplayServer, per_event: bool) -> None:
    server.queue(recorded_reply(CI, per_event=per_event))
    result = collect(native(server).stream(req()))  # type: ignore[arg-type]
    answer, thinking = recorded_texts(CI)
    assert (result.text, result.reasoning) == (answer, thinking)
    assert "我使用代码计算器计算出了结果" in result.reasoning  # thinking after the run
    assert result.code_runs == [CodeRun(0, "123**21")]
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens,
            result.usage.reasoning_tokens) == (723, 254, 977, 150)
    assert result.usage.plugins == {"code_interpreter": {"count": 1}}
    assert result.finish is not None
    assert result.finish.request_id == "752a7de3-d3aa-4aeb-82ab-a8b08b41524b"


@pytest.mark.usefixtures("recorded")
async def test_recorded_stream_async(server: ReplayServer) -> None:
    server.queue(recorded_reply(CI))
    client = AsyncClient(api_key="sk-test", base_url=server.base_url)
    result = await acollect(client.stream(req()))  # type: ignore[arg-type]
    await client.aclose()
    assert result.text == recorded_texts(CI)[0] and result.code_runs == [CodeRun(0, "123**21")]


@pytest.mark.usefixtures("recorded")
def test_recorded_reasoning_and_search_streams(server: ReplayServer) -> None:
    server.queue(recorded_reply("single-generation-message-reasoning-sse"),
                 recorded_reply("single-generation-message-search-sse"))
    client = native(server)
    thinking = collect(client.stream(req()))  # type: ignore[arg-type]
    assert thinking.reasoning and thinking.text.endswith("！😊")
    assert thinking.usage is not None and thinking.usage.reasoning_tokens == 10
    search = collect(client.stream(req()))  # type: ignore[arg-type]
    assert search.search_info is not None
    assert len(search.search_info["search_results"]) == 5
    assert search.usage is not None and search.usage.plugins["search"]["count"] == 1


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize(
    ("name", "cls", "status", "code", "rid"),
    [
        ("auth-error-nosse", AuthenticationError, 401, "InvalidApiKey",
         "a1c0561c-1dfe-98a6-a62f-983577b8bc5e"),
        ("parameter-error-nosse", BadRequestError, 400, "InvalidParameter",
         "a5898c04-d210-901b-965f-e4bd90478805"),
        ("parameter-error-sse", BadRequestError, 400, "InvalidParameter",
         "7671ecd8-93cc-9ee9-bc89-739f0fd8b809"),
    ],
)
def test_recorded_errors(server: ReplayServer, name: str, cls: type[QwenCIError], status: int,
                         code: str, rid: str) -> None:
    server.queue(recorded_reply(name))
    with pytest.raises(cls) as info:
        collect(native(server).stream(req()))  # type: ignore[arg-type]
    err = info.value
    assert (err.status, err.code, err.request_id) == (status, code, rid)
    assert err.message in ("Invalid API-key provided.",
                           "Role must be user or assistant and Content length must be greater "
                           "than 0")
    assert len(server.requests) == 1  # 4xx is never retried


# ------------------------------------------------------------------ request on the wire


def test_native_request_headers_and_body(server: ReplayServer) -> None:
    server.queue(Reply(native_stream([{"content": "ok", "finish": "stop"}])))
    client = native(server, default_headers={"X-Trace": "t1"})
    collect(client.stream(req(temperature=0.1)))  # type: ignore[arg-type]
    got = server.requests[0]
    assert got.path == "/api/v1/services/aigc/text-generation/generation"
    assert got.headers["authorization"] == "Bearer sk-test"
    assert got.headers["accept"] == "text/event-stream"
    assert got.headers["x-dashscope-sse"] == "enable"
    assert got.headers["x-trace"] == "t1"
    assert got.json["parameters"]["enable_code_interpreter"] is True
    assert got.json["parameters"]["incremental_output"] is True
    assert got.json["parameters"]["temperature"] == 0.1


def test_multimodal_model_goes_to_multimodal_endpoint(server: ReplayServer) -> None:
    server.queue(Reply(native_stream([{"content": [{"text": "ok"}], "finish": "stop"}])))
    request = build(QUESTION, Options(model="qwen3.5-plus"), "dashscope")
    assert collect(native(server).stream(request)).text == "ok"
    assert server.requests[0].path == "/api/v1/services/aigc/multimodal-generation/generation"
    assert server.requests[0].json["input"]["messages"][0]["content"] == [
        {"text": "123的21次方是多少？"}]


def test_compatible_request_through_the_openai_sdk(server: ReplayServer) -> None:
    server.queue(Reply(compat_stream(["think"], ["answer"])))
    client = Client(api_key="sk-test", base_url=server.base_url + "/compatible-mode/v1",
                    default_headers={"X-Trace": "t2"})
    request = build(QUESTION, Options(max_tokens=50, thinking_budget=64,
                                      extra_body={"enable_search": True}), "openai")
    result = collect(client.stream(request))
    assert (result.reasoning, result.text) == ("think", "answer")
    assert result.usage is not None and result.usage.reasoning_tokens == 153
    got = server.requests[0]
    assert got.path == "/compatible-mode/v1/chat/completions"
    assert got.headers["authorization"] == "Bearer sk-test"
    assert got.headers["x-trace"] == "t2"
    assert got.json == {
        "model": "qwen3-max-preview", "messages": QUESTION, "stream": True,
        "stream_options": {"include_usage": True}, "enable_thinking": True,
        "enable_code_interpreter": True, "max_tokens": 50, "thinking_budget": 64,
        "enable_search": True,
    }


def test_crlf_stream_over_http(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": "a"}, {"tool_info": ["1+1"]},
                            {"content": "2", "tool_info": ["1+1"]},
                            {"finish": "stop", "tool_info": ["1+1"]}])
    server.queue(Reply([f.replace(b"\n", b"\r\n") for f in frames]))
    result = collect(native(server).stream(req()))  # type: ignore[arg-type]
    assert (result.text, result.code_runs) == ("2", [CodeRun(0, "1+1")])


# ------------------------------------------------------------------ error shapes


def test_compat_401_body(server: ReplayServer) -> None:
    server.queue(error_reply(401, {"error": {"message": "Incorrect API key provided. ",
                                             "type": "invalid_request_error", "param": None,
                                             "code": "invalid_api_key"},
                                   "request_id": "af287265"}))
    client = Client(api_key="sk-test", base_url=server.base_url)
    with pytest.raises(AuthenticationError) as info:
        collect(client.stream(req("openai")))  # type: ignore[arg-type]
    err = info.value
    assert (err.status, err.code, err.request_id) == (401, "invalid_api_key", "af287265")
    assert server.base_url in str(err) and "local server" in str(err)
    assert "region" not in str(err)  # region advice is for the service's hosts only
    assert "sk-test" not in str(err)


def test_invalid_key_names_the_region_host() -> None:
    client = Client(api_key="sk-test", region="ap-southeast-1")
    body = b'{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"r"}'
    err = client._http_error(httpx.Response(401, content=body))
    assert "https://dashscope-intl.aliyuncs.com (region ap-southeast-1)" in str(err)
    assert "belong to one region" in str(err)


def test_sse_error_with_error_status_line(server: ReplayServer) -> None:
    body = native_frame({"code": "InvalidParameter", "message": "Model not exist.",
                         "request_id": "r-400"}, event="error", status=400)
    server.queue(Reply([b"\xef\xbb\xbf" + body], status=400))
    with pytest.raises(BadRequestError) as info:
        collect(native(server).stream(req()))  # type: ignore[arg-type]
    assert (info.value.status, info.value.code, info.value.message, info.value.request_id) == (
        400, "InvalidParameter", "Model not exist.", "r-400")


def test_moderation_error_body_is_a_data_line(server: ReplayServer) -> None:
    payload = {"error": {"code": "data_inspection_failed", "type": "data_inspection_failed",
                         "message": "Input data may contain inappropriate content."},
               "id": "chatcmpl-1", "request_id": "r-mod"}
    server.queue(Reply([compat_chunk(payload)], status=400))
    client = Client(api_key="sk-test", base_url=server.base_url)
    with pytest.raises(BadRequestError) as info:
        collect(client.stream(req("openai")))  # type: ignore[arg-type]
    assert info.value.code == "data_inspection_failed"
    assert info.value.message == "Input data may contain inappropriate content."


def test_msg_instead_of_message_and_url_error_without_code(server: ReplayServer) -> None:
    server.queue(error_reply(400, {"code": "InvalidParameter", "msg": "odd shape",
                                   "request_id": "r1"}),
                 error_reply(400, {"message": "url error, please check url!",
                                   "request_id": "r2"}))
    client = native(server)
    with pytest.raises(BadRequestError, match="odd shape"):
        collect(client.stream(req()))  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match="url error") as info:
        collect(client.stream(req()))  # type: ignore[arg-type]
    assert info.value.code is None and info.value.request_id == "r2"


def test_error_after_output_is_not_retried_and_keeps_partial(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": "thinking"}, {"tool_info": ["2**10"]},
                            {"content": "10", "tool_info": ["2**10"]}])
    frames.append(native_frame(THROTTLED, event="error", status=429))
    server.queue(Reply(frames))
    with pytest.raises(RateLimitError) as info:
        collect(native(server, max_retries=3).stream(req()))  # type: ignore[arg-type]
    err = info.value
    assert (err.status, err.code, err.request_id) == (429, "Throttling.RateQuota", "rid-429")
    assert len(server.requests) == 1
    assert err.partial is not None and not err.partial.complete
    assert err.partial.text == "10" and err.partial.code_runs == [CodeRun(0, "2**10")]


def test_compat_error_chunk_after_output(server: ReplayServer) -> None:
    chunks = compat_stream(["a"], ["b"], done=False)[:3]
    chunks.append(compat_chunk({"error": {"code": "internal_error", "message": "boom"},
                                "request_id": "r-500"}))
    server.queue(Reply(chunks))
    client = Client(api_key="sk-test", base_url=server.base_url,
                    max_retries=2)
    with pytest.raises(ServerError) as info:
        collect(client.stream(req("openai")))  # type: ignore[arg-type]
    assert (info.value.status, info.value.code) == (500, "internal_error")
    assert len(server.requests) == 1


# ------------------------------------------------------------------ cut-off streams


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_clean_close_without_final_frame_is_incomplete(server: ReplayServer,
                                                       protocol: str) -> None:
    if protocol == "openai":
        server.queue(Reply(compat_stream(["a"], ["partial"], done=False)))
    else:
        server.queue(Reply(native_stream([{"reasoning": "a"}, {"content": "partial"}])))
    client = Client(api_key="sk-test", base_url=server.base_url)
    with pytest.raises(IncompleteStreamError) as info:
        collect(client.stream(req(protocol)))  # type: ignore[arg-type]
    assert info.value.partial is not None and info.value.partial.text == "partial"
    assert len(server.requests) == 1


def test_connection_dropped_mid_frame_is_incomplete(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": "a"}, {"content": "b"}, {"finish": "stop"}])
    server.queue(Reply([frames[0], frames[1][:40]], cut_after=2))
    with pytest.raises(IncompleteStreamError):
        collect(native(server, max_retries=2).stream(req()))  # type: ignore[arg-type]
    assert len(server.requests) == 1


# ------------------------------------------------------------------ retries


def test_429_before_output_is_retried_then_raised(server: ReplayServer) -> None:
    for _ in range(3):
        server.queue(error_reply(429, THROTTLED, **{"Retry-After": "0"}))
    with pytest.raises(RateLimitError) as info:
        collect(native(server, max_retries=2).stream(req()))  # type: ignore[arg-type]
    assert len(server.requests) == 3
    assert info.value.request_id == "rid-429"


def test_5xx_then_success(server: ReplayServer) -> None:
    server.queue(
        error_reply(500, {"code": "InternalError", "message": "An internal error has occurred",
                          "request_id": "x"}, **{"Retry-After": "0"}),
        error_reply(503, {"code": "ModelUnavailable", "message": "Model is unavailable",
                          "request_id": "y"}, **{"Retry-After": "0"}),
        Reply(native_stream([{"content": "fine", "finish": "stop"}])),
    )
    assert collect(native(server).stream(req())).text == "fine"  # type: ignore[arg-type]
    assert len(server.requests) == 3


def test_sse_error_frame_before_output_is_retried(server: ReplayServer) -> None:
    server.queue(Reply([native_frame(THROTTLED, event="error", status=429)]),
                 Reply(native_stream([{"content": "ok", "finish": "stop"}])))
    client = native(server, backoff=0.001)
    assert collect(client.stream(req())).text == "ok"  # type: ignore[arg-type]
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("status", "payload", "cls"),
    [
        (429, {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"},
         QuotaExceededError),
        (400, {"code": "InvalidParameter", "message": "Model not exist."}, BadRequestError),
        (401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."},
         AuthenticationError),
    ],
)
def test_non_retryable_errors_are_sent_once(server: ReplayServer, status: int,
                                            payload: dict[str, object],
                                            cls: type[QwenCIError]) -> None:
    server.queue(error_reply(status, payload))
    with pytest.raises(cls):
        collect(native(server, max_retries=3).stream(req()))  # type: ignore[arg-type]
    assert len(server.requests) == 1


def test_503_is_service_unavailable(server: ReplayServer) -> None:
    server.queue(error_reply(503, {"code": "ModelUnavailable", "message": "Model is unavailable",
                                   "request_id": "u"}))
    with pytest.raises(ServiceUnavailableError) as info:
        collect(native(server, max_retries=0).stream(req()))  # type: ignore[arg-type]
    assert info.value.status == 503


def test_compat_429_retried_by_our_policy(server: ReplayServer) -> None:
    body = {"error": {"code": "limit_requests", "message": "rate", "type": "limit_requests"},
            "request_id": "q"}
    server.queue(error_reply(429, body, **{"Retry-After": "0"}),
                 Reply(compat_stream([], ["ok"])))
    client = Client(api_key="sk-test", base_url=server.base_url)
    assert collect(client.stream(req("openai"))).text == "ok"  # type: ignore[arg-type]
    assert len(server.requests) == 2


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_connection_refused(protocol: str) -> None:
    client = Client(api_key="sk-test", base_url=closed_port_url(),
                    max_retries=1, backoff=0.001)
    with pytest.raises(APIConnectionError, match="Could not connect"):
        collect(client.stream(req(protocol)))  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_timeout_fires_within_the_bound(protocol: str) -> None:
    with SilentServer() as silent:
        client = Client(api_key="sk-test", base_url=silent.base_url,
                        timeout=0.3, max_retries=0)
        start = time.monotonic()
        with pytest.raises(APITimeoutError):
            collect(client.stream(req(protocol)))  # type: ignore[arg-type]
        assert time.monotonic() - start < 5


# ------------------------------------------------------------------ pool and early close


def test_connection_is_reused_across_calls(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    client = native(server)
    for _ in range(3):
        collect(client.stream(req()))  # type: ignore[arg-type]
    assert len({r.client_port for r in server.requests}) == 1


def test_consumer_stopping_early_closes_the_response(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": f"r{i}"} for i in range(200)] + [{"finish": "stop"}])
    server.queue(Reply(frames, delay=0.01),
                 Reply(native_stream([{"content": "next", "finish": "stop"}])))
    client = native(server)
    stream = client.stream(req())  # type: ignore[arg-type]
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert server.wait_disconnects(1) == 1
    assert collect(client.stream(req())).text == "next"  # type: ignore[arg-type]


async def test_async_cancel_closes_the_response(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": f"r{i}"} for i in range(200)] + [{"finish": "stop"}])
    server.queue(Reply(frames, delay=0.01),
                 Reply(native_stream([{"content": "next", "finish": "stop"}])))
    client = AsyncClient(api_key="sk-test", base_url=server.base_url)

    first = asyncio.Event()

    async def consume() -> None:
        async for _ in client.stream(req()):  # type: ignore[arg-type]
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()  # the response is streaming
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_disconnects, 1) == 1
    assert (await acollect(client.stream(req()))).text == "next"  # type: ignore[arg-type]
    await client.aclose()


def test_client_repr_hides_the_key() -> None:
    client = Client(api_key="sk-secret-canary", base_url="http://127.0.0.1:1")
    assert "canary" not in repr(client) and "canary" not in str(vars(client).get("base_url"))
