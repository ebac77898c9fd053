"""Wire bodies for both protocols and local validation."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_ci.errors import InvalidRequestError
from qwen_ci.request import Options, build
from qwen_ci.session import Session, call_options

USER = [{"role": "user", "content": "123的21次方是多少？"}]


def test_native_body_has_the_required_flags_and_options_in_parameters() -> None:
    req = build(USER, Options(temperature=0.2, top_p=0.9, max_tokens=100, seed=7,
                              stop=["END"], thinking_budget=500), "dashscope")
    assert req.path == "/api/v1/services/aigc/text-generation/generation"
    assert req.body == {
        "model": "qwen3-max-preview",
        "input": {"messages": USER},
        "parameters": {
            "enable_code_interpreter": True, "enable_thinking": True,
            "result_format": "message", "incremental_output": True,
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "seed": 7,
            "stop": ["END"], "thinking_budget": 500,
        },
    }


def test_compatible_body() -> None:
    req = build(USER, Options(max_tokens=10), "openai")
    assert req.path == "/compatible-mode/v1/chat/completions"
    assert req.body == {
        "model": "qwen3-max-preview", "messages": USER, "stream": True,
        "stream_options": {"include_usage": True}, "enable_thinking": True,
        "enable_code_interpreter": True, "max_tokens": 10,
    }


def test_extra_body_is_deep_merged_into_parameters_for_native() -> None:
    extra = {"enable_search": True, "search_options": {"forced_search": True},
             "parameters": {"repetition_penalty": 1.1}}
    req = build(USER, Options(extra_body=extra), "dashscope")
    params = req.body["parameters"]
    assert params["enable_search"] is True
    assert params["search_options"] == {"forced_search": True}
    assert params["repetition_penalty"] == 1.1
    assert params["enable_code_interpreter"] is True


def test_session_per_call_extra_body_wins_with_deep_merge() -> None:
    fields = {"extra_body": {"search_options": {"forced_search": True, "search_strategy": "pro"}}}
    opts = call_options("qwen3-max", fields, {
        "extra_body": {"search_options": {"search_strategy": "standard"}}, "temperature": 0.5})
    assert opts.extra_body == {"search_options": {"forced_search": True,
                                                  "search_strategy": "standard"}}
    assert opts.temperature == 0.5


def test_system_messages_are_merged_and_assistant_history_is_text_only() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Use code."}]},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2**8?"},
    ]
    body = build(messages, Options(), "dashscope").body
    assert body["input"]["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse code."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2**8?"},
    ]


def test_images_go_native_multimodal_for_multimodal_models() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image", "url": "https://x/cat.png"}]}]
    req = build(messages, Options(model="qwen3.5-plus"), "dashscope")
    assert req.path == "/api/v1/services/aigc/multimodal-generation/generation"
    assert req.body["input"]["messages"] == [
        {"role": "user", "content": [{"text": "What is this?"}, {"image": "https://x/cat.png"}]}]
    compat = build(messages, Options(model="qwen3.5-plus"), "openai")
    assert compat.body["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": "https://x/cat.png"}}


def test_images_for_text_models_are_refused() -> None:
    messages = [{"role": "user", "content": [{"type": "image", "url": "https://x/cat.png"}]}]
    with pytest.raises(InvalidRequestError, match="text model"):
        build(messages, Options(), "dashscope")


@pytest.mark.parametrize(
    ("messages", "options", "match"),
    [
        ([], {}, "messages is empty"),
        ([{"role": "system", "content": "x"}], {}, "only system"),
        ([{"role": "tool", "content": "x"}], {}, "mutually exclusive"),
        ([{"role": "assistant", "tool_calls": [{"name": "f"}]}], {}, "mutually exclusive"),
        ([{"role": "robot", "content": "x"}], {}, "system, user or assistant"),
        (USER, {"extra_body": {"tools": [{"type": "function"}]}}, "mutually exclusive"),
        (USER, {"extra_body": {"tool_choice": "auto"}}, "mutually exclusive"),
        (USER, {"extra_body": {"enable_thinking": False}}, "thinking mode"),
        (USER, {"extra_body": {"enable_code_interpreter": False}}, "enable_code_interpreter"),
        (USER, {"extra_body": {"incremental_output": False}}, "incremental"),
        (USER, {"extra_body": {"response_format": {"type": "json_object"}}}, "JSON mode"),
        (USER, {"extra_body": {"parameters": {"enable_thinking": False}}}, "thinking"),
        (USER, {"temperature": 3}, "temperature"),
        (USER, {"max_tokens": 0}, "positive integer"),
        (USER, {"thinking_budget": -1}, "positive integer"),
        (USER, {"stop": "END"}, "list of strings"),
        (USER, {"model": ""}, "non-empty"),
    ],
)
def test_bad_input_is_refused_locally(
    messages: list[dict[str, Any]], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build(messages, Options(**options), "dashscope")


def test_unknown_protocol_and_call_arguments_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="'dashscope'"):
        build(USER, Options(), "grpc")
    with pytest.raises(InvalidRequestError, match="Unsupported argument"):
        call_options("qwen3-max", {}, {"temprature": 1})
    with pytest.raises(InvalidRequestError, match="mutually exclusive"):
        call_options("qwen3-max", {}, {"tools": [{}]})


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(InvalidRequestError, match="DASHSCOPE_API_KEY"):
        Session(api_key=None).client()
