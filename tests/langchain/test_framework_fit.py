"""Where the chat model meets LangChain 1.x's own machinery: context overflow, profiles,
token counting, construction-time validation, serialization, init_chat_model."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.exceptions import ContextOverflowError, ModelInvalidRequestError
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages
from pydantic import ValidationError

from langchain_qwen_ci import ChatQwenCodeInterpreter
from langchain_qwen_ci.profile import count_tokens
from qwen_ci import BadRequestError, InvalidRequestError
from qwen_ci.config import MODELS
from tests.replay import ReplayServer, Reply, native_frame, native_stream

OVERFLOW = "Range of input length should be [1, 258048]"


@pytest.fixture(autouse=True)
def _collect_models() -> Iterator[None]:
    """Collect this test's models (kept in exception cycles) before the next test: a
    collection inside ``session_for`` deadlocked on ``_slots_lock`` before the finalizer
    stopped waiting for it (issue 21)."""
    yield
    gc.collect()


def model(server: ReplayServer, **kwargs: Any) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, **kwargs)


# ------------------------------------------------------------------ context overflow


def native_overflow() -> Reply:
    frame = native_frame({"code": "InvalidParameter", "message": OVERFLOW, "request_id": "r-of"},
                         status=400, event="error")
    return Reply([frame], status=400)


def compat_overflow() -> Reply:
    body = json.dumps({"error": {"code": "invalid_parameter_error", "type":
                                 "invalid_request_error", "message": "<400> InternalError.Algo."
                                 f"InvalidParameter: {OVERFLOW}"}, "request_id": "r-of"})
    return Reply([body.encode()], status=400, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("protocol", "reply"), [("dashscope", native_overflow),
                                                  ("openai", compat_overflow)])
@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke"])
async def test_context_overflow_is_langchains_class_and_the_cores(
    server: ReplayServer, protocol: str, reply: Any, how: str
) -> None:
    server.default = reply()
    llm = model(server, protocol=protocol, max_retries=0)
    with pytest.raises(ContextOverflowError) as info:
        if how == "invoke":
            llm.invoke("x" * 100)
        elif how == "stream":
            list(llm.stream("x" * 100))
        else:
            await llm.ainvoke("x" * 100)
    err = info.value
    assert isinstance(err, BadRequestError) and isinstance(err, ModelInvalidRequestError)
    assert (err.status, err.request_id) == (400, "r-of") and OVERFLOW in err.message
    assert err.is_retryable is False and len(server.requests) == 1


def test_other_bad_requests_are_not_context_overflow(server: ReplayServer) -> None:
    frame = native_frame({"code": "InvalidParameter", "message": "Model not exist.",
                          "request_id": "r"}, status=400, event="error")
    server.default = Reply([frame], status=400)
    with pytest.raises(BadRequestError) as info:
        model(server).invoke("hi")
    assert not isinstance(info.value, ContextOverflowError)
    assert isinstance(info.value, ModelInvalidRequestError)


# ------------------------------------------------------------------ profile


def test_profile_comes_from_the_model_table() -> None:
    profile = ChatQwenCodeInterpreter(api_key="k").profile
    assert profile is not None
    table = MODELS["qwen3-max-preview"]
    assert profile["max_input_tokens"] == table.max_input_tokens == 258_048
    assert profile["max_output_tokens"] == table.max_output_tokens == 32_768
    assert profile["reasoning_output"] is True
    assert (profile["tool_calling"], profile["structured_output"]) == (False, False)
    assert profile["image_inputs"] is False
    plus = ChatQwenCodeInterpreter(api_key="k", model="qwen3.5-plus").profile
    assert plus is not None
    assert (plus["max_input_tokens"], plus["image_inputs"]) == (1_000_000, True)
    # a name the table does not know (a self-hosted model): capabilities, no limits
    other = ChatQwenCodeInterpreter(api_key="k", model="my-model").profile
    assert other is not None and "max_input_tokens" not in other
    assert other["tool_calling"] is False


def test_the_table_limits_are_enforced(server: ReplayServer) -> None:
    with pytest.raises(ValidationError, match="max_tokens=40000 is above 'qwen3-max-preview'"):
        model(server, max_tokens=40_000)
    with pytest.raises(ValidationError, match="thinking_budget=90000 is above"):
        model(server, thinking_budget=90_000)
    with pytest.raises(InvalidRequestError, match="limit of 32768"):
        model(server).invoke("hi", max_tokens=32_769)
    model(server, model="my-model", max_tokens=100_000)  # unknown names: the server decides
    assert server.requests == []


def test_summarization_middleware_reads_the_profile() -> None:
    middleware = pytest.importorskip("langchain.agents.middleware")
    SummarizationMiddleware = middleware.SummarizationMiddleware

    llm = ChatQwenCodeInterpreter(api_key="k")
    # a fraction of the context needs the profile's max_input_tokens (ValueError without)
    SummarizationMiddleware(model=llm, trigger=("fraction", 0.8), keep=("fraction", 0.3))


# ------------------------------------------------------------------ token counting


def test_token_counts_need_no_tokenizer() -> None:
    llm = ChatQwenCodeInterpreter(api_key="k")
    assert llm.get_num_tokens("abcd" * 10) == 10
    assert llm.get_num_tokens("计算一下") == 4  # one per CJK character
    history = [HumanMessage("a" * 40), AIMessage("b" * 40, additional_kwargs={
        "reasoning_content": "t" * 4000, "tool_info": [{"type": "code_interpreter",
                                                        "code_interpreter": {"code": "1"}}]})]
    # what goes on the wire: the answer text, not the thinking
    assert llm.get_num_tokens_from_messages(history) == 2 * (10 + 4)
    with pytest.raises(NotImplementedError, match="approximate"):
        llm.get_token_ids("x")


def test_trim_messages_with_the_model_as_token_counter(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    llm = model(server)
    history = [SystemMessage("You compute."),
               *[m for i in range(10) for m in (HumanMessage(f"question {i} " + "x" * 40),
                                                AIMessage(f"answer {i} " + "y" * 40))],
               HumanMessage("last question")]
    trimmed = trim_messages(history, max_tokens=80, token_counter=llm, strategy="last",
                            include_system=True, start_on="human")
    assert trimmed[0] == history[0] and trimmed[-1] == history[-1]
    assert 3 <= len(trimmed) < len(history)
    assert llm.get_num_tokens_from_messages(trimmed) <= 80
    assert llm.invoke(trimmed).content == "ok"
    sent = server.requests[0].json["input"]["messages"]
    assert len(sent) == len(trimmed) and sent[-1]["content"] == "last question"


def test_count_is_on_the_safe_side_for_chinese() -> None:
    # Qwen's tokenizer takes about 1.5 CJK characters per token: counting one each over-counts
    assert count_tokens("一" * 300) == 300


# ------------------------------------------------------------------ construction errors


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"model": "qwen-plus"}, "has no code interpreter"),
    ({"extra_body": {"enable_thinking": False}}, "enable_thinking=False"),
    ({"extra_body": {"enable_code_interpreter": False}}, "enable_code_interpreter=False"),
    ({"temperature": 2.5}, "temperature=2.5 is out of range"),
    ({"top_p": 0}, "top_p=0.0 is out of range"),
    ({"tools": [{"type": "function"}]}, "cannot be combined with function calling"),
    ({"response_format": {"type": "json_object"}}, "Structured output"),
    ({"region": "eu-west-9"}, "Unknown region 'eu-west-9'"),
    ({"timeout": 0}, "timeout=0.0 must be a positive"),
    ({"base_url": "dashscope.aliyuncs.com"}, "is not an http(s) URL"),
])
def test_invalid_settings_fail_at_construction(
    server: ReplayServer, kwargs: dict[str, Any], words: str
) -> None:
    settings = {"api_key": "sk-test", **kwargs}
    if "region" not in kwargs:  # a base_url makes the region irrelevant
        settings.setdefault("base_url", server.base_url)
    with pytest.raises(ValidationError) as info:
        ChatQwenCodeInterpreter(**settings)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)  # pydantic's ValidationError is a ValueError
    assert server.requests == []


def test_valid_settings_need_no_key_at_construction() -> None:
    llm = ChatQwenCodeInterpreter(temperature=0, top_p=1, max_tokens=100, seed=1,
                                  extra_body={"enable_search": True})
    assert llm.api_key is None  # the missing key is reported by the first call


# ------------------------------------------------------------------ serialization


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta",
                            "ignore:The default value of `allowed_objects`")
def test_loads_of_a_dumped_model(server: ReplayServer) -> None:
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    text = dumps(model(server, temperature=0.3))
    assert "sk-test" not in text
    with pytest.raises(ValueError, match="not allowed"):  # the default allowlist: core only
        loads(text, secrets_map={"DASHSCOPE_API_KEY": "sk-test"})
    revived = loads(text, allowed_objects=[ChatQwenCodeInterpreter],
                    valid_namespaces=["langchain_qwen_ci"],
                    secrets_map={"DASHSCOPE_API_KEY": "sk-test"})
    assert isinstance(revived, ChatQwenCodeInterpreter) and revived.temperature == 0.3
    assert revived.invoke("hi").content == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_init_chat_model_cannot_name_this_provider() -> None:
    init_chat_model = pytest.importorskip("langchain.chat_models").init_chat_model

    with pytest.raises(ValueError, match="Unsupported"):
        init_chat_model("qwen3-max-preview", model_provider="langchain_qwen_ci")


# ------------------------------------------------------------------ model_copy (docs/design.md)


def test_model_copy_is_shallow_as_the_design_page_says(server: ReplayServer) -> None:
    llm = model(server, extra_body={"enable_search": True}, stop=["END"],
                default_headers={"X-Team": "a"})
    copy = llm.model_copy(update={"temperature": 0.9})
    assert copy.extra_body is llm.extra_body and copy.stop is llm.stop
    assert copy.default_headers is llm.default_headers
    deep = llm.model_copy(deep=True)
    assert deep.extra_body == llm.extra_body and deep.extra_body is not llm.extra_body
    # an update is not validated; the next call refuses it, before sending
    with pytest.raises(InvalidRequestError, match="temperature=5"):
        llm.model_copy(update={"temperature": 5}).invoke("hi")
    assert server.requests == []
