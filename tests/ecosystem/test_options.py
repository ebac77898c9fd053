"""One definition of the service options (qwen_ci.request.Options): the adapters' fields,
their per-call arguments and the wire body follow it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci.request import SERVICE_OPTIONS, Options
from qwen_ci.session import CALL_OPTIONS
from tests.replay import ReplayServer, Reply, compat_stream, native_stream

#: a valid, non-default value for every service option, and what reaches the wire
VALUES: dict[str, tuple[Any, dict[str, Any]]] = {
    "temperature": (0.3, {"temperature": 0.3}),
    "top_p": (0.5, {"top_p": 0.5}),
    "max_tokens": (77, {"max_tokens": 77}),
    "seed": (7, {"seed": 7}),
    "stop": (["END"], {"stop": ["END"]}),
    "thinking_budget": (99, {"thinking_budget": 99}),
    "builtin_tools": (["web_search"], {"enable_search": True}),
    "extra_body": ({"enable_search": True}, {"enable_search": True}),
}
ANSWER = native_stream([{"content": "42"}, {"finish": "stop"}])
ADAPTERS = [ChatQwenCodeInterpreter, QwenCodeInterpreter]


def test_every_option_has_a_test_value() -> None:
    assert set(VALUES) == set(SERVICE_OPTIONS)
    assert {"model", *SERVICE_OPTIONS} == CALL_OPTIONS


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_declare_every_service_option(adapter: Any) -> None:
    core_fields = {f.name: f for f in dataclasses.fields(Options)}
    for name in SERVICE_OPTIONS:
        field = adapter.model_fields[name]
        assert field.default is None, (adapter.__name__, name)
        assert core_fields[name].default is None


def wire(server: ReplayServer, protocol: str) -> dict[str, Any]:
    body: dict[str, Any] = server.requests[-1].json
    return body["parameters"] if protocol == "dashscope" else body


def call(llm: Any, **kwargs: Any) -> None:
    if isinstance(llm, ChatQwenCodeInterpreter):
        llm.invoke([HumanMessage("q")], **kwargs)
    else:
        llm.chat([ChatMessage(role="user", content="q")], **kwargs)


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", SERVICE_OPTIONS)
def test_each_option_reaches_the_wire_as_field_and_per_call(
    server: ReplayServer, adapter: Any, protocol: str, name: str
) -> None:
    server.chooser = lambda _: Reply(ANSWER if protocol == "dashscope"
                                     else compat_stream([], ["42"]))
    value, expected = VALUES[name]
    llm = adapter(api_key="sk", base_url=server.base_url, protocol=protocol, max_retries=0)
    call(llm.model_copy(update={name: value}))
    sent = wire(server, protocol)
    assert {k: sent.get(k) for k in expected} == expected
    call(llm, **{name: value})
    sent = wire(server, protocol)
    assert {k: sent.get(k) for k in expected} == expected
    call(llm)  # the per-call value was not kept
    assert all(k not in wire(server, protocol) for k in expected)
