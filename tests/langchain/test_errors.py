"""Errors in LangChain's terms: the core's classes that are also LangChain's ``ModelError``
family, so that ``with_retry`` and ``with_fallbacks`` can select on them (real server)."""

from __future__ import annotations

import json
import pickle

import pytest
from langchain_core.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.messages import HumanMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from langchain_qwen_ci.errors import translate
from qwen_ci import errors as core
from tests.replay import ReplayServer, Reply, SilentServer, closed_port_url, native_stream

KEY = "sk-errors"
JSON = {"Content-Type": "application/json"}
ANSWER = native_stream([{"reasoning": "r"}, {"content": "42"}, {"finish": "stop"}])


def error(status: int, code: str, **headers: str) -> Reply:
    body = {"code": code, "message": f"{code} happened", "request_id": f"rid-{status}"}
    return Reply([json.dumps(body).encode()], status=status, headers={**JSON, **headers})


def model(base_url: str, **kwargs: object) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(api_key=KEY, base_url=base_url, max_retries=0,
                                   **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code", "core_cls", "lc_cls", "retryable"),
    [
        (400, "InvalidParameter", core.BadRequestError, ModelInvalidRequestError, False),
        (401, "InvalidApiKey", core.AuthenticationError, ModelAuthenticationError, False),
        (403, "AccessDenied", core.PermissionDeniedError, ModelPermissionDeniedError, False),
        (404, "ModelNotFound", core.NotFoundError, ModelNotFoundError, False),
        (429, "Throttling.RateQuota", core.RateLimitError, ModelRateLimitError, True),
        (429, "Throttling.AllocationQuota", core.QuotaExceededError, ModelRateLimitError,
         False),
        (500, "InternalError", core.ServerError, ModelAPIError, True),
        (503, "ModelUnavailable", core.ServiceUnavailableError, ModelAPIError, True),
    ],
)
def test_service_errors_belong_to_both_families(
    server: ReplayServer, status: int, code: str, core_cls: type[Exception],
    lc_cls: type[ModelError], retryable: bool,
) -> None:
    server.queue(error(status, code, **{"retry-after-ms": "1500"}))
    with pytest.raises(core_cls) as info:
        model(server.base_url).invoke("q")
    err = info.value
    assert isinstance(err, lc_cls) and isinstance(err, core.QwenCIError)
    assert err.is_retryable is retryable  # type: ignore[attr-defined]
    assert (err.status, err.code, err.request_id) == (status, code, f"rid-{status}")
    assert err.retry_after == 1.5
    assert type(pickle.loads(pickle.dumps(err))) is type(err)


async def test_connection_errors_and_timeouts_are_langchains_too() -> None:
    with pytest.raises(ModelConnectionError) as info:
        await model(closed_port_url()).ainvoke("q")
    assert isinstance(info.value, core.APIConnectionError) and info.value.is_retryable
    with SilentServer() as silent, pytest.raises(ModelTimeoutError) as timed_out:
        model(silent.base_url, timeout=0.3).invoke("q")
    assert isinstance(timed_out.value, core.APITimeoutError)


def test_a_stream_cut_after_output_keeps_the_partial_answer(server: ReplayServer) -> None:
    server.queue(Reply(ANSWER[:2], cut_after=2))
    with pytest.raises(core.IncompleteStreamError) as info:
        model(server.base_url).invoke("q")
    assert isinstance(info.value, ModelError) and not info.value.is_retryable
    assert info.value.partial is not None and info.value.partial.text == "42"


def test_local_errors_stay_value_errors() -> None:
    with pytest.raises(core.InvalidRequestError) as info:
        model("http://127.0.0.1:1").invoke([])
    assert isinstance(info.value, ValueError) and not isinstance(info.value, ModelError)
    assert translate(info.value) is info.value


def test_with_retry_retries_rate_limits(server: ReplayServer) -> None:
    server.queue(error(429, "Throttling.RateQuota"), Reply(ANSWER))
    retried = model(server.base_url).with_retry(
        retry_if_exception_type=(ModelRateLimitError,), stop_after_attempt=2,
        wait_exponential_jitter=False,
    )
    assert retried.invoke([HumanMessage("q")]).content == "42"
    assert len(server.requests) == 2


async def test_with_retry_does_not_retry_what_it_was_not_asked_to(server: ReplayServer) -> None:
    server.queue(error(401, "InvalidApiKey"), Reply(ANSWER))
    retried = model(server.base_url).with_retry(
        retry_if_exception_type=(ModelRateLimitError, ModelAPIError), stop_after_attempt=2
    )
    with pytest.raises(ModelAuthenticationError):
        await retried.ainvoke("q")
    assert len(server.requests) == 1


def test_with_fallbacks_moves_on_after_a_server_error(server: ReplayServer) -> None:
    with ReplayServer() as backup:
        server.queue(error(503, "ModelUnavailable"))
        backup.queue(Reply(ANSWER))
        chain = model(server.base_url).with_fallbacks(
            [model(backup.base_url)], exceptions_to_handle=(ModelAPIError,)
        )
        assert chain.invoke("q").content == "42"
        assert (len(server.requests), len(backup.requests)) == (1, 1)
