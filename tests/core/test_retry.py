"""The one retry policy (qwen_ci.retry), used by the client and by ``qwen-ci serve``'s
upstream calls: ``Retry-After`` in seconds, ``retry-after-ms`` and HTTP dates, capped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from qwen_ci import Client, Options, RateLimitError, build, collect
from qwen_ci.retry import RetryPolicy, retry_after
from qwen_ci_server.selfhost.config import UpstreamConfig
from qwen_ci_server.selfhost.upstream import UpstreamModel
from tests.replay import ReplayServer, Reply, native_stream

ANSWER = native_stream([{"content": "42"}, {"finish": "stop"}])
QUESTION = [{"role": "user", "content": "q"}]


def throttled(**headers: str) -> Reply:
    body = {"code": "Throttling.RateQuota", "message": "slow down", "request_id": "rid"}
    return Reply([json.dumps(body).encode()], status=429,
                 headers={"Content-Type": "application/json", **headers})


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "-4"}) == 0.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms wins
    assert retry_after({"retry-after-ms": "x", "retry-after": "9"}) == 9.0
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after({"retry-after": later}, now=now.timestamp()) == 42.0
    past = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert retry_after({"retry-after": past}, now=now.timestamp()) == 0.0
    assert retry_after({"retry-after": "later, maybe"}) is None
    assert retry_after({}) is None


def test_policy_caps_the_server_wait_and_the_backoff() -> None:
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_backoff=4.0, max_retry_after=60.0)
    assert policy.delay(0, 3600.0) == 60.0
    assert policy.delay(0, 0.5) == 0.5
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0)]:
        delay = policy.delay(attempt)
        assert delay is not None and ceiling / 2 <= delay <= ceiling
    assert policy.delay(3) is None and policy.delay(3, 1.0) is None


def test_client_error_carries_the_wait_the_server_asked_for(server: ReplayServer) -> None:
    server.queue(throttled(**{"retry-after-ms": "1500"}))
    client = Client(api_key="sk", base_url=server.base_url, max_retries=0)
    with pytest.raises(RateLimitError) as info:
        collect(client.stream(build(QUESTION, Options(), "dashscope")))
    assert info.value.retry_after == 1.5


# A backoff of 30 s would outlast the test's timeout: finishing in time proves the
# server's retry-after-ms (20 ms) was honoured.
@pytest.mark.timeout(10)
def test_client_honours_retry_after_ms(server: ReplayServer) -> None:
    server.queue(throttled(**{"retry-after-ms": "20"}), Reply(ANSWER))
    client = Client(api_key="sk", base_url=server.base_url, max_retries=1, backoff=30.0,
                    max_backoff=30.0)
    assert collect(client.stream(build(QUESTION, Options(), "dashscope"))).text == "42"
    assert len(server.requests) == 2


@pytest.mark.timeout(10)
async def test_upstream_calls_use_the_same_policy(server: ReplayServer) -> None:
    date = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    server.queue(throttled(**{"retry-after-ms": "20"}), throttled(**{"retry-after": date}),
                 Reply([b'data: {"choices": []}\n\n', b"data: [DONE]\n\n"]))
    model = UpstreamModel(UpstreamConfig(server.base_url + "/v1", "m", max_retries=2,
                                         retry_backoff=30.0))
    try:
        response = await model._open({"model": "m", "messages": []}, None)
        await response.aclose()
    finally:
        await model.aclose()
    assert response.status_code == 200 and len(server.requests) == 3


def server_error(status: int) -> Reply:
    body = {"code": "InternalError", "message": "boom", "request_id": "rid"}
    return Reply([json.dumps(body).encode()], status=status,
                 headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("status", "attempts"), [(500, 2), (502, 2), (503, 2), (504, 2),
                                                  (501, 1), (505, 1)])
def test_the_client_retries_exactly_the_statuses_of_the_one_policy(
    server: ReplayServer, status: int, attempts: int
) -> None:
    from qwen_ci import ServerError
    from qwen_ci.retry import RETRY_STATUSES

    server.queue(server_error(status), server_error(status))
    client = Client(api_key="sk", base_url=server.base_url, max_retries=1, backoff=0.01)
    with pytest.raises(ServerError) as info:
        collect(client.stream(build(QUESTION, Options(), "dashscope")))
    assert len(server.requests) == attempts
    assert info.value.retryable == (status in RETRY_STATUSES)
