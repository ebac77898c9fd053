"""Errors survive pickling with every field: multiprocessing, Celery and Ray carry them
pickled, and what had arrived (``partial``) and ``retry_after`` must come across too."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

import langchain_qwen_ci.errors as lc_errors
import qwen_ci.errors as core
from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import Client, CodeRun, Options, build, collect
from qwen_ci.result import Result
from tests.replay import ReplayServer, Reply, native_frame, native_stream

CLASSES = sorted(
    {cls for module in (core, lc_errors) for _, cls in inspect.getmembers(module, inspect.isclass)
     if issubclass(cls, core.QwenCIError)},
    key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
)
THROTTLED = {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded",
             "request_id": "rid-429"}


def fields(err: core.QwenCIError) -> dict[str, Any]:
    return {**vars(err), "str": str(err), "args": err.args, "type": type(err)}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_error_class_keeps_every_field(cls: type[core.QwenCIError]) -> None:
    err = cls("went wrong", status=503, code="ModelUnavailable", request_id="rid-1")
    err.partial = Result(text="so far", reasoning="thinking", code_runs=[CodeRun(0, "2**10")])
    err.retry_after = 1.5
    err.hint = "Try again later."  # set afterwards, as the client annotates errors
    err.args = (err._render(),)
    copy = pickle.loads(pickle.dumps(err))
    assert fields(copy) == fields(err)
    assert copy.partial == err.partial and copy.retry_after == 1.5
    assert copy.retryable == err.retryable


def test_an_error_off_the_wire_keeps_its_partial_output(server: ReplayServer) -> None:
    frames = native_stream([{"reasoning": "thinking"}, {"tool_info": ["2**10"]},
                            {"content": "10", "tool_info": ["2**10"]}])
    frames.append(native_frame(THROTTLED, event="error", status=429))
    server.queue(Reply(frames))
    client = Client(api_key="sk-test", base_url=server.base_url, max_retries=0)
    request = build([{"role": "user", "content": "2**10?"}], Options(), "dashscope")
    with pytest.raises(core.RateLimitError) as info:
        collect(client.stream(request))
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.status, copy.code, copy.request_id) == (429, "Throttling.RateQuota", "rid-429")
    assert copy.partial is not None and copy.partial.text == "10"
    assert copy.partial.code_runs == [CodeRun(0, "2**10")]


def test_a_langchain_error_keeps_retry_after_and_both_families(server: ReplayServer) -> None:
    server.queue(Reply([b'{"code":"Throttling","message":"slow down","request_id":"r"}'],
                       status=429, headers={"Content-Type": "application/json",
                                            "Retry-After": "7"}))
    llm = ChatQwenCodeInterpreter(api_key="sk-test", base_url=server.base_url, max_retries=0)
    with pytest.raises(lc_errors.RateLimitError) as info:
        llm.invoke([HumanMessage("q")])
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is lc_errors.RateLimitError
    assert (copy.status, copy.code, copy.retry_after) == (429, "Throttling", 7.0)
    assert str(copy) == str(info.value)
