"""``qwen-ci serve``'s Responses endpoint: any OpenAI-compatible upstream (the fake one,
scripted per test), the execution log from serve's own sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwen_ci_server.emulator.service import LEGACY_RESPONSES_PATH, RESPONSES_PATH
from qwen_ci_server.selfhost import SelfHost
from tests.selfhost.conftest import KEY
from tests.selfhost.upstream import MODEL, FakeUpstream, stdout_of, stream, tool_outputs

HEADERS = {"Authorization": f"Bearer {KEY}"}
BIG = str(123**21)


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def body(prompt: str = "What is 123 to the power of 21?", **fields: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": MODEL, "input": prompt, "stream": True,
                               "tools": [{"type": "code_interpreter"}], "enable_thinking": True}
    request.update(fields)
    return request


def events(server: SelfHost, request: dict[str, Any],
           path: str = RESPONSES_PATH) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.base_url + path, json=request, headers=HEADERS,
                      timeout=60) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line[5:]) for line in response.iter_lines()
                if line.startswith("data:")]


def runs(stream_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in stream_events if e["type"] == "response.output_item.done"
            and e["item"]["type"] == "code_interpreter_call"]


def test_the_log_is_what_serves_sandbox_printed(server: SelfHost, upstream: FakeUpstream) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["I will run it."], codes=["print(123**21)"],
                          usage=(50, 20, 8))
        return stream(content=["It is ", stdout_of(tool_outputs(request)[-1])],
                      usage=(90, 15, 4))

    upstream.reset(script)
    got = events(server, body())
    (run,) = runs(got)
    assert run["code"] == "print(123**21)" and run["status"] == "completed"
    assert run["outputs"] == [{"type": "logs", "logs": BIG}]
    final = got[-1]
    assert final["type"] == "response.completed"
    response = final["response"]
    assert response["model"] == MODEL
    assert response["output"][-1]["content"][0]["text"] == f"It is {BIG}"
    usage = response["usage"]  # the upstream's real counts, summed over its two rounds
    assert (usage["input_tokens"], usage["output_tokens"]) == (140, 35)
    assert usage["output_tokens_details"]["reasoning_tokens"] == 12
    assert usage["x_tools"] == {"code_interpreter": {"count": 1}}


def test_state_is_kept_between_runs_and_each_has_its_log(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(codes=["x = 6 * 7\nx"])
        if n == 1:
            return stream(codes=["print(x * 2)\nraise ValueError('boom')"])
        return stream(content=["done"])

    upstream.reset(script)
    got = events(server, body("x then double", stream=True), path=LEGACY_RESPONSES_PATH)
    first, second = runs(got)
    assert first["outputs"][0]["logs"] == "42"
    logs = second["outputs"][0]["logs"]
    assert logs.startswith("84\n") and "ValueError: boom" in logs
    assert first["container_id"] == second["container_id"]


def test_non_streaming(server: SelfHost, upstream: FakeUpstream) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(codes=["sum(range(10))"])
        return stream(content=["45"])

    upstream.reset(script)
    response = httpx.post(server.base_url + RESPONSES_PATH, json=body(stream=False),
                          headers=HEADERS, timeout=60)
    assert response.status_code == 200
    output = response.json()["output"]
    assert [item["type"] for item in output] == ["code_interpreter_call", "message"]
    assert output[0]["outputs"] == [{"type": "logs", "logs": "45"}]


def test_a_wrong_key_is_refused_in_the_compatible_shape(server: SelfHost,
                                                         upstream: FakeUpstream) -> None:
    response = httpx.post(server.base_url + RESPONSES_PATH, json=body(),
                          headers={"Authorization": "Bearer nope"}, timeout=30)
    assert response.status_code == 401
    payload = response.json()
    assert payload["error"]["code"] == "invalid_api_key" and "id" not in payload
    assert not upstream.received


@pytest.mark.parametrize(("fields", "message"), [
    ({"tools": [{"type": "code_interpreter"}, {"type": "function", "name": "f"}]},
     "cannot be combined"),
    ({"background": True}, "background"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0]"),
    ({"enable_thinking": False}, "enable_thinking"),
    ({"tools": [{"type": "code_interpreter"}, {"type": "web_search"}]}, "has no web search"),
    ({"model": "qwen3-max", "tools": [{"type": "web_search"}]}, "has no web search"),
])
def test_bad_input_never_reaches_the_upstream(server: SelfHost, upstream: FakeUpstream,
                                              fields: dict[str, Any], message: str) -> None:
    response = httpx.post(server.base_url + RESPONSES_PATH, json=body(**fields),
                          headers=HEADERS, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not upstream.received


def test_the_openai_sdk_unchanged_against_serve(server: SelfHost, upstream: FakeUpstream) -> None:
    """A user's own Responses code, pointed at ``qwen-ci serve``."""
    from openai import OpenAI

    def script(request: dict[str, Any], n: int) -> Any:
        if n == 0:
            return stream(reasoning=["Run it."], codes=["import math\nmath.factorial(20)"])
        return stream(content=["20! = ", tool_outputs(request)[-1].split("\n")[-1]])

    upstream.reset(script)
    client = OpenAI(api_key=KEY, base_url=server.base_url + "/compatible-mode/v1",
                    max_retries=0)
    events = client.responses.create(model=MODEL, input="What is 20 factorial?",
                                     tools=[{"type": "code_interpreter"}],
                                     extra_body={"enable_thinking": True}, stream=True)
    logs, text = [], ""
    for event in events:
        if event.type == "response.output_item.done" and hasattr(event.item, "code"):
            logs.append(event.item.outputs[0].logs)  # type: ignore[union-attr]
        elif event.type == "response.output_text.delta":
            text += event.delta
    assert logs == ["2432902008176640000"]
    assert text == "20! = 2432902008176640000"


def test_a_body_over_the_limit_is_refused_in_the_compatible_shape(
    server: SelfHost, upstream: FakeUpstream
) -> None:
    response = httpx.post(server.base_url + RESPONSES_PATH,
                          json=body("x" * (2 << 20)), headers=HEADERS, timeout=30)
    assert response.status_code == 413
    payload = response.json()
    assert set(payload) == {"error", "request_id"}
    assert payload["error"]["code"] == "request_too_large"
    assert "bytes" in payload["error"]["message"]
    assert not upstream.received
