"""What real clients send without our client's habits: model defaults, formats, models,
error bodies and headers as the real service gives them (issue #13, points 1-6, 8, 9)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.validation import (
    BAD_MESSAGES,
    NOT_INCREMENTAL,
    NOT_STREAMING,
    RESULT_FORMAT,
)
from qwen_ci_server.emulator.wire import EMULATOR_PREFIX
from tests.emulator.conftest import COMPAT, KEY, MULTIMODAL, NATIVE, compat_body, post
from tests.emulator.test_wire import events
from tests.replay import RECORDED

SEED = "123的21次方是多少？"
ANSWER = str(123**21)
JSON_HEADERS = {"Authorization": f"Bearer {KEY}"}
TEXT_MODELS = ("qwen3-max-preview", "qwen3-max", "qwen3-max-2026-01-23")
PLUS_MODELS = ("qwen3.5-plus", "qwen3.5-plus-2026-02-15")


def sdk_body(prompt: str, model: str, **parameters: Any) -> dict[str, Any]:
    """A native body as the dashscope SDK builds it: only the parameters the caller gave."""
    return {"model": model, "input": {"messages": [{"role": "user", "content": prompt}]},
            "parameters": parameters}


def path_of(model: str) -> str:
    return MULTIMODAL if model.startswith(("qwen3.5", "qwen3-vl")) else NATIVE


def frames(text: str) -> list[dict[str, Any]]:
    """Data of every native event; fails on an error event, showing it."""
    out = []
    for lines in events(text):
        assert lines[1] == "event:result", lines
        out.append(json.loads(lines[3][len("data:"):]))
    return out


def error_event(text: str) -> dict[str, Any]:
    [lines] = events(text)
    assert lines[:3] == ["id:1", "event:error", ":HTTP_STATUS/400"], lines
    data: dict[str, Any] = json.loads(lines[3][len("data:"):])
    return data


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part["text"] for part in content)
    return str(content)


def pieces(data: list[dict[str, Any]], key: str) -> list[str]:
    """The ``content`` / ``reasoning_content`` of each frame that has some."""
    out = []
    for frame in data:
        message = frame["output"]["choices"][0]["message"]
        value = text_of(message.get(key, ""))
        if value:
            out.append(value)
    return out


def assert_deltas(parts: list[str]) -> None:
    """Incremental output: no piece repeats the text before it."""
    assert len(parts) > 3
    assert not any(b.startswith(a) for a, b in itertools.pairwise(parts)), parts[:6]


# --------------------------------------------------------------- 1. incremental_output


@pytest.mark.parametrize("model", TEXT_MODELS + PLUS_MODELS)
def test_thinking_without_incremental_output_streams_deltas(
    emulator: Emulator, model: str
) -> None:
    body = sdk_body(SEED, model, enable_code_interpreter=True, enable_thinking=True,
                    result_format="message")
    response = post(emulator, path_of(model), body)
    data = frames(response.text)
    assert_deltas(pieces(data, "reasoning_content"))
    assert ANSWER in "".join(pieces(data, "content"))
    assert data[-1]["output"]["tool_info"][0]["code_interpreter"]["code"] == "123**21"


@pytest.mark.parametrize("model", ["qwen3-max", "qwen3.5-plus", "qwen3-vl-plus"])
def test_explicit_false_with_thinking_is_the_documented_error(
    emulator: Emulator, model: str
) -> None:
    body = sdk_body("Hello", model, enable_thinking=True, incremental_output=False)
    assert error_event(post(emulator, path_of(model), body).text)["message"] == NOT_INCREMENTAL


def test_qwen3_max_without_thinking_streams_deltas(emulator: Emulator) -> None:
    data = frames(post(emulator, NATIVE, sdk_body("Hello", "qwen3-max")).text)
    assert_deltas(pieces(data, "content"))


def test_models_that_default_to_cumulative_output(emulator: Emulator) -> None:
    data = frames(post(emulator, NATIVE, sdk_body("Hello", "qwen-plus",
                                                    result_format="message")).text)
    parts = pieces(data, "content")
    assert len(parts) > 3 and all(b.startswith(a) for a, b in itertools.pairwise(parts))
    body = sdk_body("Hello", "qwen-plus", enable_thinking=True, result_format="message")
    assert error_event(post(emulator, NATIVE, body).text)["message"] == NOT_INCREMENTAL


# --------------------------------------------------------------- 2. result_format


def test_thinking_with_text_format_is_the_documented_error(emulator: Emulator) -> None:
    body = sdk_body(SEED, "qwen3-max-preview", enable_code_interpreter=True,
                    enable_thinking=True, result_format="text")
    assert error_event(post(emulator, NATIVE, body).text)["message"] == RESULT_FORMAT
    response = post(emulator, NATIVE, sdk_body("Hello", "qwen3-max-preview", enable_thinking=True,
                                                result_format="text"), headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.json()["message"] == RESULT_FORMAT


def test_text_format_without_thinking_has_the_output_text_shape(emulator: Emulator) -> None:
    data = frames(post(emulator, NATIVE, sdk_body("Hello", "qwen3-max", result_format="text"))
                  .text)
    assert all(list(f["output"]) == ["finish_reason", "text"] for f in data)
    assert [f["output"]["finish_reason"] for f in data][-2:] == ["null", "stop"]
    assert "".join(f["output"]["text"] for f in data).startswith("Hello!")
    # qwen-max defaults to the text format; a bare prompt as in the recorded requests
    response = post(emulator, NATIVE, {"model": "qwen-max", "input": {"prompt": "Hello"}},
                    headers=JSON_HEADERS)
    assert response.status_code == 200
    got = response.json()
    assert list(got["output"]) == ["finish_reason", "text"]
    assert got["output"]["finish_reason"] == "stop" and got["output"]["text"].startswith("Hello!")


# --------------------------------------------------------------- 3. compatible-mode errors


def test_compat_parameter_errors_carry_the_real_body(emulator: Emulator) -> None:
    body = compat_body("hi", model="qwen3-max", stream=False, enable_code_interpreter=False)
    response = post(emulator, COMPAT, body, headers=JSON_HEADERS)
    got = response.json()
    assert response.status_code == 400
    assert list(got) == ["error", "id", "request_id"]
    assert got["error"] == {"code": "invalid_parameter_error", "message": NOT_STREAMING,
                            "param": None, "type": "invalid_request_error"}
    assert list(got["error"]) == ["code", "message", "param", "type"]
    assert got["id"].startswith("chatcmpl-") and got["request_id"]


@pytest.mark.parametrize(
    "change",
    [
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"model": "qwen-max"},
        {"model": "qwen3.5-plus", "enable_thinking": False},
    ],
)
def test_compat_emulator_messages_start_with_the_label(
    emulator: Emulator, change: dict[str, Any]
) -> None:
    response = post(emulator, COMPAT, compat_body("hi", **change), headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(EMULATOR_PREFIX)


# --------------------------------------------------------------- 4. hybrid thinking default


def test_qwen35_plus_thinks_by_default(emulator: Emulator) -> None:
    body = sdk_body(SEED, "qwen3.5-plus", enable_code_interpreter=True)
    data = frames(post(emulator, MULTIMODAL, body).text)
    assert pieces(data, "reasoning_content")
    assert data[-1]["output"]["tool_info"][0]["code_interpreter"]["code"] == "123**21"
    compat = post(emulator, COMPAT, {"model": "qwen3.5-plus", "stream": True,
                                     "messages": [{"role": "user", "content": "Hello"}]},
                  headers=JSON_HEADERS).text
    assert '"reasoning_content":"' in compat.replace('"reasoning_content":""', "")
    off = sdk_body("Hello", "qwen3.5-plus", enable_thinking=False)
    assert not pieces(frames(post(emulator, MULTIMODAL, off).text), "reasoning_content")


# --------------------------------------------------------------- 5. non-streaming thinking


@pytest.mark.parametrize("model", ["qwen3-max-preview", "qwen3.5-plus"])
def test_non_streaming_thinking_where_documented(emulator: Emulator, model: str) -> None:
    body = sdk_body("What is 2**10?", model, enable_thinking=True, result_format="message")
    response = post(emulator, path_of(model), body, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    got = response.json()
    message = got["output"]["choices"][0]["message"]
    assert message["reasoning_content"] and "1024" not in text_of(message["content"])
    assert got["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    compat = post(emulator, COMPAT, {"model": model, "enable_thinking": True,
                                     "messages": [{"role": "user", "content": "Hello"}]},
                  headers=JSON_HEADERS)
    assert compat.status_code == 200
    assert compat.json()["choices"][0]["message"]["reasoning_content"]


def test_non_streaming_thinking_elsewhere_and_interpreter_still_refused(
    emulator: Emulator,
) -> None:
    body = sdk_body("Hello", "qwen3-max", enable_thinking=True)
    response = post(emulator, NATIVE, body, headers=JSON_HEADERS)
    assert (response.status_code, response.json()["message"]) == (400, NOT_STREAMING)
    body = sdk_body(SEED, "qwen3.5-plus", enable_code_interpreter=True)
    response = post(emulator, MULTIMODAL, body, headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.json()["message"].startswith(EMULATOR_PREFIX + "enable_code_interpreter")


# --------------------------------------------------------------- 6. models


@pytest.mark.parametrize("model", ["qwen3-max-preveiw", "qwen3-max-foo", "qwen3.5-plus-x",
                                   "qwen9-plus", "Qwen3-Max"])
def test_only_the_services_model_names(emulator: Emulator, model: str) -> None:
    response = post(emulator, NATIVE, sdk_body("hi", model), headers=JSON_HEADERS)
    assert (response.status_code, response.json()["message"]) == (400, "Model not exist.")
    response = post(emulator, COMPAT, compat_body("hi", model=model), headers=JSON_HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def recorded_request(name: str) -> dict[str, Any]:
    if not RECORDED.is_dir():
        pytest.skip(f"recorded traffic not found at {RECORDED} (../shared is absent)")
    body: dict[str, Any] = json.loads(
        (RECORDED / f"{name}.request.body.json").read_text("utf-8-sig")
    )
    return body


def test_recorded_requests_for_common_models_replay(emulator: Emulator) -> None:
    # qwen-max, prompt with empty messages: the recorded error frame
    body = recorded_request("parameter-error-sse")
    assert error_event(post(emulator, NATIVE, body).text)["message"] == BAD_MESSAGES
    # qwen-plus-latest thinking with thinking_budget 10: a thinking stream
    data = frames(post(emulator, NATIVE, recorded_request("single-generation-message-"
                                                           "reasoning-sse")).text)
    assert pieces(data, "reasoning_content") and pieces(data, "content")
    assert data[-1]["usage"]["output_tokens_details"]["reasoning_tokens"] <= 10
    real = [json.loads(line[5:]) for line in (
        RECORDED / "single-generation-message-reasoning-sse.response.body.txt"
    ).read_text("utf-8-sig").splitlines() if line.startswith("data:")]
    assert list(data[0]["output"]["choices"][0]["message"]) == list(
        real[0]["output"]["choices"][0]["message"])
    # qwen-plus with web search: served (without the search itself)
    data = frames(post(emulator, NATIVE, recorded_request("single-generation-message-"
                                                           "search-sse")).text)
    assert data[-1]["output"]["choices"][0]["finish_reason"] == "stop"
    # qwen-max, bare prompt, wrong key: the recorded 401
    response = post(emulator, NATIVE, recorded_request("auth-error-nosse"),
                    headers={"Authorization": "Bearer sk-wrong"})
    assert (response.status_code, response.json()["code"]) == (401, "InvalidApiKey")


# --------------------------------------------------------------- 8. headers


def test_native_responses_carry_the_recorded_headers(emulator: Emulator) -> None:
    stream = post(emulator, NATIVE, sdk_body("Hello", "qwen3-max-preview"))
    assert stream.headers["x-dashscope-call-gateway"] == "true"
    assert stream.headers["x-dashscope-timeout"] == "298"
    assert stream.headers["x-dashscope-finished"] == "false"
    assert stream.headers["content-type"] == "text/event-stream;charset=UTF-8"
    error = post(emulator, NATIVE, {"model": "qwen-max", "input": {"messages": []}},
                 headers=JSON_HEADERS)
    assert error.status_code == 400 and error.headers["x-dashscope-call-gateway"] == "true"
    assert error.headers["x-request-id"] == error.json()["request_id"]


# --------------------------------------------------------------- 9. multimodal content


def test_multimodal_content_is_a_list_of_text_parts(emulator: Emulator) -> None:
    data = frames(post(emulator, MULTIMODAL, sdk_body(SEED, "qwen3.5-plus",
                                                      enable_code_interpreter=True)).text)
    contents = [f["output"]["choices"][0]["message"]["content"] for f in data]
    assert all(isinstance(c, list) for c in contents)
    assert ANSWER in "".join(part["text"] for c in contents for part in c)
    assert all(isinstance(f["output"]["choices"][0]["message"]["reasoning_content"], str)
               for f in data)


def test_thinking_only_and_non_thinking_models(emulator: Emulator) -> None:
    # QwQ always thinks, and only while streaming
    data = frames(post(emulator, NATIVE, sdk_body("Hello", "qwq-plus")).text)
    assert pieces(data, "reasoning_content") and pieces(data, "content")
    response = post(emulator, NATIVE, sdk_body("Hello", "qwq-plus"), headers=JSON_HEADERS)
    assert (response.status_code, response.json()["message"]) == (400, NOT_STREAMING)
    # qwen-max has no thinking mode: asking for it is refused in the emulator's words
    body = sdk_body("Hello", "qwen-max", enable_thinking=True, incremental_output=True)
    message = error_event(post(emulator, NATIVE, body).text)["message"]
    assert message.startswith(EMULATOR_PREFIX) and "no thinking mode" in message
    # and the interpreter on a model without it names the models that have it
    body = sdk_body("Hello", "qwen-plus", enable_thinking=True, incremental_output=True,
                    enable_code_interpreter=True)
    message = error_event(post(emulator, NATIVE, body).text)["message"]
    assert message.startswith(EMULATOR_PREFIX) and "qwen3-max" in message
