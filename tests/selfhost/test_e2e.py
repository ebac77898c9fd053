"""``ChatQwenCodeInterpreter`` and raw HTTP against the self-hosted server, with the fake
upstream scripted per test and the real sandbox."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk

from qwen_ci import QwenCIError
from qwen_ci_server.sandbox.procs import descendants
from qwen_ci_server.selfhost import INSTRUCTIONS, TOOL, SelfHost
from qwen_ci_server.selfhost.upstream import LIMIT_ANSWER
from tests.emulator.conftest import COMPAT, NATIVE, compat_body, native_body
from tests.selfhost.conftest import (
    KEY,
    MAX_ROUNDS,
    UPSTREAM_KEY,
    llm,
    stray_processes,
    unmanaged,
)
from tests.selfhost.upstream import (
    MODEL,
    FakeUpstream,
    failure,
    stdout_of,
    stream,
    tool_outputs,
)

BIG = str(123**21)
HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable",
           "Accept": "text/event-stream"}


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def events(raw: bytes) -> list[tuple[str, int, dict[str, Any]]]:
    """(event, status, data) of each native SSE event."""
    out = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(":", 1) for line in block.splitlines() if not line.startswith(":"))
        status = next(int(line.split("/")[1]) for line in block.splitlines()
                      if line.startswith(":HTTP_STATUS/"))
        out.append((lines["event"], status, json.loads(lines["data"])))
    return out


def access_lines(caplog: pytest.LogCaptureFixture, within: float = 5.0) -> list[dict[str, Any]]:
    """Fields of the access log lines so far (waits for at least one)."""
    deadline = time.monotonic() + within
    while True:
        lines = [r.fields for r in caplog.records  # type: ignore[attr-defined]
                 if r.name == "qwen_ci_server.selfhost.access"]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_thinking_tool_info_and_an_answer_built_from_the_real_output(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["The user wants ", "123**21; ", "I will run it."],
                          codes=["print(123**21)"], usage=(50, 20, 8))
        printed = stdout_of(tool_outputs(body)[-1])
        return stream(reasoning=["It printed the value."], content=["123**21 = ", printed],
                      usage=(90, 15, 4))

    upstream.reset(script)
    message = llm(server).invoke("What is 123 to the power of 21?")
    assert message.content == f"123**21 = {BIG}"
    assert message.additional_kwargs["reasoning_content"] == (
        "The user wants 123**21; I will run it.It printed the value.")
    assert message.additional_kwargs["tool_info"] == [
        {"type": "code_interpreter", "code_interpreter": {"code": "print(123**21)"}}]
    assert message.response_metadata["plugins"] == {"code_interpreter": {"count": 1}}
    assert message.response_metadata["finish_reason"] == "stop"
    usage = message.usage_metadata
    assert usage is not None  # the sum of the upstream's two rounds
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (140, 35, 175)
    assert usage["output_token_details"]["reasoning"] == 12

    first, second = upstream.bodies
    assert [r.headers["authorization"] for r in upstream.received] == [f"Bearer {UPSTREAM_KEY}"] * 2
    assert first["model"] == MODEL and first["stream"] is True and first["tools"] == [TOOL]
    assert first["stream_options"] == {"include_usage": True} and "tool_choice" not in first
    assert first["messages"] == [{"role": "system", "content": INSTRUCTIONS},
                                 {"role": "user", "content": "What is 123 to the power of 21?"}]
    assistant, tool = second["messages"][-2:]
    call = assistant["tool_calls"][0]
    assert call["function"] == {"name": "code_interpreter",
                                "arguments": json.dumps({"code": "print(123**21)"})}
    assert assistant["reasoning_content"] == "The user wants 123**21; I will run it."
    assert tool == {"role": "tool", "tool_call_id": call["id"], "content": f"[stdout]\n{BIG}"}


def test_two_rounds_share_state_and_the_stream_adds_up(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["First x."], codes=["x = 6 * 7"], usage=(10, 5, 2),
                          piece_size=7)
        if n == 1:
            return stream(reasoning=["Now double it."], codes=["print(x * 2)"], usage=(20, 5, 2))
        return stream(content=["x*2 is ", stdout_of(tool_outputs(body)[-1])], usage=(30, 4, 0))

    upstream.reset(script)
    chunks = list(llm(server).stream("Compute x = 6 * 7, then double it."))
    total: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == "x*2 is 84"
    codes = [r["code_interpreter"]["code"] for r in total.additional_kwargs["tool_info"]]
    assert codes == ["x = 6 * 7", "print(x * 2)"]
    assert total.response_metadata["plugins"] == {"code_interpreter": {"count": 2}}
    assert total.usage_metadata is not None and total.usage_metadata["input_tokens"] == 60
    kinds = ["reasoning" if c.additional_kwargs.get("reasoning_content") else "text"
             for c in chunks if c.content or c.additional_kwargs.get("reasoning_content")]
    assert kinds.index("text") > kinds.index("reasoning")  # thinking streamed before the answer
    third = upstream.bodies[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool",
                                         "assistant", "tool"]
    assert third[3]["content"] == "(no output)" and third[5]["content"] == "[stdout]\n84"


def test_several_calls_in_one_reply_run_in_order(server: SelfHost, upstream: FakeUpstream) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["Two steps."], codes=["a = 2", "print(a ** 10)"])
        return stream(content=["It is ", stdout_of(tool_outputs(body)[-1]), "."])

    upstream.reset(script)
    message = llm(server).invoke("2 ** 10, in two steps")
    assert message.content == "It is 1024."
    codes = [r["code_interpreter"]["code"] for r in message.additional_kwargs["tool_info"]]
    assert codes == ["a = 2", "print(a ** 10)"]
    assert len(upstream.bodies) == 2  # both calls of one reply, then one more upstream round
    messages = upstream.bodies[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    ids = [call["id"] for call in messages[2]["tool_calls"]]
    assert [m["tool_call_id"] for m in messages[3:]] == ids


@pytest.mark.parametrize("how", ["think-tags", "reasoning-field"])
def test_reasoning_from_think_tags_or_a_reasoning_field(
    server: SelfHost, upstream: FakeUpstream, how: str
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if how == "think-tags":
            if n == 0:
                return stream(content=["<thi", "nk>I should ", "compute.</th", "ink>"],
                              codes=["print(2 + 2)"])
            return stream(content=["<think>It says 4", ".</think>\n\n", "The answer", " is 4."])
        if n == 0:
            return stream(reasoning=["I should ", "compute."], field="reasoning",
                          codes=["print(2 + 2)"])
        return stream(reasoning=["It says 4."], field="reasoning",
                      content=["\n\nThe answer", " is 4."])

    upstream.reset(script)
    message = llm(server).invoke("What is 2 + 2?")
    assert message.content == "The answer is 4."
    assert message.additional_kwargs["reasoning_content"] == "I should compute.It says 4."
    assistant = upstream.bodies[1]["messages"][2]
    assert assistant["content"] == ""
    if how == "reasoning-field":  # echoed back in the field the upstream used
        assert assistant["reasoning"] == "I should compute."


def test_max_rounds_reached_ends_with_a_clear_message(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    upstream.reset(lambda body, n: stream(codes=[f"print({n})"]))  # never stops calling
    message = llm(server).invoke("Loop forever")
    codes = [r["code_interpreter"]["code"] for r in message.additional_kwargs["tool_info"]]
    assert codes == ["print(0)", "print(1)", "print(2)"] and MAX_ROUNDS == 3
    assert message.content == LIMIT_ANSWER.format(n=MAX_ROUNDS)
    last = upstream.bodies[-1]
    assert len(upstream.bodies) == MAX_ROUNDS + 1 and last["tool_choice"] == "none"
    assert "limit of 3 code runs" in tool_outputs(last)[-1]


def test_llamaindex_model_unchanged(server: SelfHost, upstream: FakeUpstream) -> None:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    from llamaindex_qwen_ci import QwenCodeInterpreter

    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["Factorial."],
                          codes=["import math\nprint(math.factorial(20))"])
        return stream(content=["20! = ", stdout_of(tool_outputs(body)[-1])])

    upstream.reset(script)
    model = QwenCodeInterpreter(base_url=server.base_url, api_key=KEY, max_retries=0)
    response = model.chat([ChatMessage(role=MessageRole.USER, content="20 factorial?")])
    assert response.message.content == "20! = 2432902008176640000"
    assert response.message.additional_kwargs["reasoning_content"] == "Factorial."
    codes = [t["code_interpreter"]["code"] for t in response.message.additional_kwargs["tool_info"]]
    assert codes == ["import math\nprint(math.factorial(20))"]


def test_openai_protocol_and_the_upstream_model_name(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["Run it."], codes=["print(sum(range(10)))"])
        return stream(content=[stdout_of(tool_outputs(body)[-1])])

    upstream.reset(script)
    message = llm(server, "openai", model=MODEL).invoke("sum of 0..9")
    assert message.content == "45" and message.additional_kwargs["reasoning_content"] == "Run it."
    assert message.response_metadata["model_name"] == MODEL
    assert message.additional_kwargs["tool_info"] == []  # as the hosted compatible mode


def test_user_tools_are_refused_and_never_reach_the_upstream(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    native = httpx.post(server.base_url + NATIVE, json=native_body("hi", tools=tools),
                        headers=HEADERS)
    (kind, status, data), = events(native.content)
    assert (kind, status, data["code"]) == ("error", 400, "InvalidParameter")
    assert "tools" in data["message"]
    compat = httpx.post(server.base_url + COMPAT, json=compat_body("hi", tools=tools),
                        headers=HEADERS)
    assert compat.status_code == 400 and "tools" in compat.json()["error"]["message"]
    assert upstream.bodies == []


def test_upstream_down_is_503_model_unavailable() -> None:
    from tests.replay import closed_port_url
    from tests.selfhost.conftest import selfhost

    with selfhost(closed_port_url() + "/v1", max_retries=0) as down:
        for protocol in ("dashscope", "openai"):
            with pytest.raises(QwenCIError) as info:
                llm(down, protocol).invoke("hi")
            assert info.value.status == 503 and info.value.code == "ModelUnavailable"
        raw = httpx.post(down.base_url + NATIVE, json=native_body("hi"), headers=HEADERS)
        assert raw.status_code == 503 and raw.json()["code"] == "ModelUnavailable"


@pytest.mark.parametrize(("status", "code", "shape"), [
    (400, "InvalidParameter", "openai"),
    (401, "InvalidApiKey", "openai"),
    (404, "ModelNotFound", "ollama"),
    (429, "Throttling.RateQuota", "openai"),
    (500, "InternalError", "text"),
])
def test_upstream_errors_keep_their_status_with_the_matching_code(
    server: SelfHost, upstream: FakeUpstream, status: int, code: str, shape: str
) -> None:
    upstream.reset(lambda body, n: failure(status, f"upstream says no ({n})", shape=shape))
    with pytest.raises(QwenCIError) as info:
        llm(server).invoke("hi")
    assert info.value.status == status and info.value.code == code
    assert "upstream error" in info.value.message and "upstream says no" in info.value.message
    retried = status in (429, 500)  # the server retries those once before the first byte
    assert len(upstream.bodies) == (2 if retried else 1)


@pytest.mark.parametrize("failure_kind", ["http-500-in-round-2", "cut-mid-stream", "error-chunk"])
def test_upstream_failure_after_output_is_an_error_frame(
    server: SelfHost, upstream: FakeUpstream, failure_kind: str
) -> None:
    def script(body: dict[str, Any], n: int) -> Any:
        if failure_kind == "http-500-in-round-2":
            return stream(reasoning=["Run."], codes=["print(1)"]) if n == 0 else failure(
                500, "upstream crashed")
        if failure_kind == "cut-mid-stream":
            return stream(reasoning=["a ", "b ", "c ", "d"], done=False, cut_after=3)
        reply = stream(reasoning=["a ", "b "])
        error = b'data: {"error": {"message": "out of memory", "code": 500}}\n\n'
        return type(reply)([*reply.chunks[:3], error], headers=reply.headers)

    upstream.reset(script)
    raw = httpx.post(server.base_url + NATIVE, json=native_body("go"), headers=HEADERS,
                     timeout=30)
    assert raw.status_code == 200  # the output had started
    frames = events(raw.content)
    *results, (kind, status, data) = frames
    assert results and all(k == "result" for k, _, _ in results)
    expected = {"http-500-in-round-2": (500, "InternalError"),
                "cut-mid-stream": (503, "ModelUnavailable"),
                "error-chunk": (500, "InternalError")}[failure_kind]
    assert (kind, (status, data["code"])) == ("error", expected)
    if failure_kind == "http-500-in-round-2":
        assert "tool_info" in results[-1][2]["output"]
    upstream.reset(script)
    with pytest.raises(QwenCIError) as info:  # the client reports it, never a partial answer
        llm(server).invoke("go")
    assert info.value.status == expected[0]
    upstream.reset(script)
    compat = httpx.post(server.base_url + COMPAT, json=compat_body("go"), headers=HEADERS)
    assert compat.status_code == 200 and b'data: {"error"' in compat.content
    assert b"[DONE]" not in compat.content


def test_client_disconnect_during_a_run_tears_down_the_sandbox(
    server: SelfHost, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qwen_ci_server.selfhost.access")
    upstream.reset(lambda body, n: stream(reasoning=["Sleep."],
                                          codes=["import time\ntime.sleep(60)"]))
    with httpx.stream("POST", server.base_url + NATIVE, json=native_body("sleep"),
                      headers=HEADERS, timeout=30) as response:
        for chunk in response.iter_bytes():
            if b"tool_info" in chunk:
                break
        time.sleep(0.3)  # the run has started in the request's kernel
        busy = descendants()
    started = time.monotonic()
    while busy & unmanaged():  # the request's kernel, once released, is no one's
        assert time.monotonic() - started < 5, "the sandbox outlived its request"
        time.sleep(0.05)
    assert stray_processes() == set()
    assert access_lines(caplog)[-1]["outcome"] == "client_disconnected"


def test_client_disconnect_while_the_upstream_streams_closes_the_upstream_call(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    upstream.reset(lambda body, n: stream(reasoning=[f"step {i} " for i in range(40)],
                                          delay=0.1))
    with httpx.stream("POST", server.base_url + NATIVE, json=native_body("slow"),
                      headers=HEADERS, timeout=30) as response:
        for chunk in response.iter_bytes():
            if b"step 1" in chunk:
                break
    assert upstream.server.wait_disconnects(1, timeout=5) == 1


def test_body_size_limit(server: SelfHost, upstream: FakeUpstream) -> None:
    big = "x" * (1 << 20)
    native = httpx.post(server.base_url + NATIVE, json=native_body(big), headers=HEADERS)
    assert native.status_code == 413 and native.json()["code"] == "RequestTooLarge"
    compat = httpx.post(server.base_url + COMPAT, json=compat_body(big), headers=HEADERS)
    assert compat.status_code == 413
    assert compat.json()["error"]["code"] == "request_too_large"
    assert upstream.bodies == []


def test_health(server: SelfHost) -> None:
    """Details for clients with the key; liveness only for anyone else (#14 row 9)."""
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}
    wrong = {"Authorization": "Bearer sk-wrong"}
    assert httpx.get(server.base_url + "/health", headers=wrong).json() == {"status": "ok"}
    health = httpx.get(server.base_url + "/health", headers=HEADERS).json()
    assert health["status"] == "ok" and health["model"] == MODEL
    assert health["isolation"] in ("bwrap", "rlimits") and health["warm_kernels"] >= 0
    assert (health["in_flight"], health["queued"], health["max_concurrency"]) == (0, 0, 8)


def test_logs_have_counts_but_no_prompt_code_or_keys(
    server: SelfHost, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_code = "print('code-canary-77')"

    def script(body: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(codes=[secret_code], usage=(11, 3, 0))
        return stream(content=["answer-canary-88"], usage=(22, 4, 0))

    upstream.reset(script)
    assert llm(server).invoke("prompt-canary-99").content == "answer-canary-88"
    fields = access_lines(caplog)[-1]
    assert fields["status"] == 200 and fields["outcome"] == "ok" and fields["request_id"]
    assert (fields["upstream_rounds"], fields["code_runs"]) == (2, 1)
    assert (fields["input_tokens"], fields["output_tokens"]) == (33, 7)
    text = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for canary in ("prompt-canary-99", "code-canary-77", "answer-canary-88", UPSTREAM_KEY, KEY):
        assert canary not in text
    for shown in (repr(server.serve_config), repr(server.app.state.model)):
        assert UPSTREAM_KEY not in shown and KEY not in shown
