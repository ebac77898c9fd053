"""Requests the service rejects: same statuses, codes and (where known) messages."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from qwen_ci import (
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    Options,
    build,
    collect,
)
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.validation import (
    BAD_MESSAGES,
    JSON_MODE,
    MISSING,
    NOT_INCREMENTAL,
    NOT_STREAMING,
)
from qwen_ci_server.emulator.wire import EMULATOR_PREFIX
from tests.emulator.conftest import (
    COMPAT,
    KEY,
    MULTIMODAL,
    NATIVE,
    compat_body,
    native_body,
    post,
)

JSON_HEADERS = {"Authorization": f"Bearer {KEY}"}


def native_error(emu: Emulator, body: Any, path: str = NATIVE) -> tuple[int, dict[str, Any]]:
    """A non-streaming native request: HTTP status and JSON body."""
    response = post(emu, path, body, headers=JSON_HEADERS)
    return response.status_code, response.json()


def compat_error(emu: Emulator, body: Any) -> tuple[int, dict[str, Any]]:
    response = post(emu, COMPAT, body, headers=JSON_HEADERS)
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


def test_thinking_without_streaming(emulator: Emulator) -> None:
    status, body = native_error(emulator, native_body("hi", model="qwen3-max"))
    assert (status, body["code"], body["message"]) == (400, "InvalidParameter", NOT_STREAMING)
    status, body = compat_error(emulator, compat_body("hi", model="qwen3-max", stream=False))
    assert status == 400
    assert body["error"]["code"] == "invalid_parameter_error"
    assert body["error"]["message"] == NOT_STREAMING


def test_streaming_parameter_error_is_an_sse_error_frame(emulator: Emulator) -> None:
    response = post(emulator, NATIVE, native_body("hi", incremental_output=False))
    assert response.status_code == 200
    lines = response.text.split("\n")
    assert lines[:3] == ["id:1", "event:error", ":HTTP_STATUS/400"]
    assert json.loads(lines[3][len("data:"):])["message"] == NOT_INCREMENTAL


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"incremental_output": False}, BadRequestError, NOT_INCREMENTAL),
        ({"response_format": {"type": "json_object"}}, BadRequestError, JSON_MODE),
        ({"thinking_budget": 10**6}, BadRequestError,
         "The thinking_budget parameter must be a positive integer and not greater than 81920"),
    ],
)
def test_native_thinking_rules_through_the_client(
    emulator: Emulator, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    client = Client(api_key=KEY, base_url=emulator.base_url, max_retries=0)
    request = build([{"role": "user", "content": "hi"}], Options(), "dashscope")
    request.body["parameters"].update(change)
    with pytest.raises(error) as info:
        collect(client.stream(request))
    assert info.value.message == message  # type: ignore[attr-defined]
    assert info.value.status == 400  # type: ignore[attr-defined]
    assert info.value.request_id  # type: ignore[attr-defined]


def test_json_mode_with_thinking_compat(emulator: Emulator) -> None:
    body = compat_body("hi", response_format={"type": "json_object"})
    status, body = compat_error(emulator, body)
    assert status == 400 and body["error"]["message"].endswith(JSON_MODE)


def test_unknown_model(emulator: Emulator) -> None:
    status, body = native_error(emulator, native_body("hi", model="qwen-nonexistent"))
    assert (status, body["code"], body["message"]) == (400, "InvalidParameter",
                                                         "Model not exist.")
    client = Client(api_key=KEY, base_url=emulator.base_url, max_retries=0)
    request = build([{"role": "user", "content": "hi"}], Options(model="qwen-nonexistent"),
                    "openai")
    with pytest.raises(NotFoundError) as info:
        collect(client.stream(request))
    assert info.value.code == "model_not_found"
    assert "qwen-nonexistent" in info.value.message


def test_model_on_the_wrong_native_endpoint(emulator: Emulator) -> None:
    status, body = native_error(emulator, native_body("hi", model="qwen3.5-plus"), NATIVE)
    assert status == 400 and body["message"] == "url error, please check url!"
    assert "code" not in body and body["request_id"]
    status, body = native_error(emulator, native_body("hi"), MULTIMODAL)
    assert status == 400 and body["message"] == "url error, please check url!"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "qwen3-max-preview", "input": {}}, MISSING),
        ({"model": "qwen3-max-preview", "input": {"messages": []}}, BAD_MESSAGES),
        ({"model": "qwen3-max-preview",
          "input": {"messages": [{"role": "user", "content": ""}]}}, BAD_MESSAGES),
        ({"model": "qwen3-max-preview",
          "input": {"messages": [{"role": "robot", "content": "x"}]}}, BAD_MESSAGES),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}}, MISSING),
    ],
)
def test_missing_or_bad_messages(emulator: Emulator, body: dict[str, Any], message: str) -> None:
    status, got = native_error(emulator, body)
    assert (status, got["code"], got["message"]) == (400, "InvalidParameter", message)


def test_missing_messages_compat(emulator: Emulator) -> None:
    body = compat_body("x")
    del body["messages"]
    status, got = compat_error(emulator, body)
    assert status == 400 and got["error"]["code"] == "invalid_parameter_error"


def test_wrong_key_gets_the_real_401_bodies(emulator: Emulator) -> None:
    response = post(emulator, NATIVE, native_body("hi"), headers={"Authorization": "Bearer no"})
    body = response.json()
    assert response.status_code == 401
    assert (body["code"], body["message"]) == ("InvalidApiKey", "Invalid API-key provided.")
    assert set(body) == {"code", "message", "request_id"}
    response = post(emulator, COMPAT, compat_body("hi"), headers={})
    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": "Incorrect API key provided. ", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key",
    }
    for protocol in ("dashscope", "openai"):
        client = Client(api_key="sk-wrong", base_url=emulator.base_url)
        request = build([{"role": "user", "content": "hi"}], Options(), protocol)
        with pytest.raises(AuthenticationError) as info:
            collect(client.stream(request))
        assert info.value.status == 401


def test_without_api_key_option_any_key_is_accepted() -> None:
    with Emulator(pool_size=0) as emu:
        client = Client(api_key="anything", base_url=emu.base_url)
        request = build([{"role": "user", "content": "Hello"}], Options(), "dashscope")
        assert collect(client.stream(request)).text.startswith("Hello!")


@pytest.mark.parametrize("protocol", ["native", "compat"])
def test_unknown_rules_get_the_emulators_own_message(emulator: Emulator, protocol: str) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    if protocol == "native":
        for body in (native_body("hi", tools=tools), native_body("hi", enable_thinking=False)):
            lines = post(emulator, NATIVE, body).text.split("\n")
            assert lines[1:3] == ["event:error", ":HTTP_STATUS/400"]
            got = json.loads(lines[3][len("data:"):])
            assert got["code"] == "InvalidParameter"
            assert got["message"].startswith(EMULATOR_PREFIX)
    else:
        for body in (compat_body("hi", tools=tools), compat_body("hi", enable_thinking=False)):
            status, got = compat_error(emulator, body)
            assert status == 400 and EMULATOR_PREFIX in got["error"]["message"]


def test_non_incremental_output_without_thinking_is_cumulative(emulator: Emulator) -> None:
    body = native_body("Hello", enable_thinking=False, enable_code_interpreter=False,
                       incremental_output=False)
    text = post(emulator, NATIVE, body).text
    contents = [json.loads(line[5:])["output"]["choices"][0]["message"]["content"]
                for line in text.split("\n") if line.startswith("data:")]
    assert len(contents) > 3
    assert all(b.startswith(a) for a, b in itertools.pairwise(contents))
    assert contents[-1].startswith("Hello!") and "reasoning_content" not in text


def test_plain_requests_without_thinking_are_served(emulator: Emulator) -> None:
    body = native_body("Hello", enable_thinking=False, enable_code_interpreter=False,
                       incremental_output=False)
    status, got = native_error(emulator, body)
    assert status == 200
    assert got["output"]["choices"][0]["message"]["content"].startswith("Hello!")
    assert got["usage"]["total_tokens"] > 0
    response = post(emulator, COMPAT, compat_body("Hello", stream=False, enable_thinking=False,
                                                  enable_code_interpreter=False),
                    headers=JSON_HEADERS)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
