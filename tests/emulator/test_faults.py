"""Fault injection with the X-Emulator-Fault header, in the service's shapes."""

from __future__ import annotations

import json
import time

import pytest

from qwen_ci import (
    APITimeoutError,
    BadRequestError,
    Client,
    IncompleteStreamError,
    Options,
    QuotaExceededError,
    RateLimitError,
    Result,
    ServerError,
    ServiceUnavailableError,
    build,
    collect,
)
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.faults import parse_faults
from qwen_ci_server.emulator.wire import EMULATOR_PREFIX
from tests.emulator.conftest import COMPAT, KEY, NATIVE, SSE_HEADERS, compat_body, native_body, post

PROMPT = "What is 2**10?"


def client(emu: Emulator, fault: str, protocol: str = "dashscope", **kwargs: object) -> Client:
    return Client(api_key=KEY, base_url=emu.base_url,
                  default_headers={"X-Emulator-Fault": fault}, **kwargs)  # type: ignore[arg-type]


def run(emu: Emulator, fault: str, protocol: str = "dashscope", **kwargs: object) -> Result:
    request = build([{"role": "user", "content": PROMPT}], Options(), protocol)
    with client(emu, fault, protocol, **kwargs) as c:
        return collect(c.stream(request))


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        ("rate-limit", RateLimitError, 429, ("Throttling.RateQuota", "limit_requests")),
        ("quota", QuotaExceededError, 429,
         ("Throttling.AllocationQuota", "insufficient_quota")),
        ("server-error", ServerError, 500, ("InternalError", "internal_error")),
        ("unavailable", ServiceUnavailableError, 503, ("ModelUnavailable", "ModelUnavailable")),
    ],
)
def test_errors_before_output(
    emulator: Emulator, protocol: str, fault: str, error: type[Exception], status: int,
    code: tuple[str, str],
) -> None:
    with pytest.raises(error) as info:
        run(emulator, fault, protocol, max_retries=0)
    assert info.value.status == status  # type: ignore[attr-defined]
    assert info.value.code == code[0 if protocol == "dashscope" else 1]  # type: ignore[attr-defined]


def test_rate_limit_body_is_the_services(emulator: Emulator) -> None:
    native = post(emulator, NATIVE, native_body(PROMPT),
                  headers={**SSE_HEADERS, "X-Emulator-Fault": "rate-limit"})
    assert native.status_code == 429
    assert native.json()["message"] == "Requests rate limit exceeded, please try again later."
    compat = post(emulator, COMPAT, compat_body(PROMPT),
                  headers={"Authorization": f"Bearer {KEY}", "X-Emulator-Fault": "rate-limit"})
    assert compat.status_code == 429 and compat.json()["error"]["code"] == "limit_requests"


def test_rate_limit_is_retried_by_the_client(emulator: Emulator) -> None:
    started = time.monotonic()
    with pytest.raises(RateLimitError):
        run(emulator, "rate-limit", max_retries=2)
    assert time.monotonic() - started > 0.4  # two backoffs happened


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_cut_after_is_an_incomplete_stream(emulator: Emulator, protocol: str) -> None:
    with pytest.raises(IncompleteStreamError) as info:
        run(emulator, "cut-after=4", protocol)
    partial = info.value.partial
    assert partial is not None and partial.reasoning and not partial.complete


def test_cut_after_native_bytes(emulator: Emulator) -> None:
    body = post(emulator, NATIVE, native_body(PROMPT),
                headers={**SSE_HEADERS, "X-Emulator-Fault": "cut-after=3"}).text
    blocks = body[:-2].split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["id:1", "id:2", "id:3"]
    assert '"finish_reason":"null"' in blocks[-1]


def test_error_after_native_is_an_error_frame(emulator: Emulator) -> None:
    body = post(emulator, NATIVE, native_body(PROMPT),
                headers={**SSE_HEADERS, "X-Emulator-Fault": "error-after=2"}).text
    blocks = body[:-2].split("\n\n")
    assert len(blocks) == 3
    assert blocks[2].split("\n")[:3] == ["id:3", "event:error", ":HTTP_STATUS/500"]
    assert json.loads(blocks[2].split("\n")[3][5:])["code"] == "InternalError"
    with pytest.raises(ServerError) as info:
        run(emulator, "error-after=5")
    assert info.value.partial is not None and info.value.partial.reasoning


def test_error_after_compat_is_a_data_error(emulator: Emulator) -> None:
    body = post(emulator, COMPAT, compat_body(PROMPT),
                headers={"Authorization": f"Bearer {KEY}", "X-Emulator-Fault": "error-after=2"})
    chunks = body.text[:-2].split("\n\n")
    assert len(chunks) == 3 and "[DONE]" not in body.text
    assert json.loads(chunks[2][6:])["error"]["code"] == "internal_error"
    with pytest.raises(ServerError):
        run(emulator, "error-after=5", "openai")


def test_slow_delays_every_frame(emulator: Emulator) -> None:
    started = time.monotonic()
    body = post(emulator, NATIVE, native_body("Hello"),
                headers={**SSE_HEADERS, "X-Emulator-Fault": "slow=20"}).text
    frames = body.count("event:result")
    assert time.monotonic() - started >= frames * 0.02 * 0.9
    with pytest.raises(APITimeoutError):
        run(emulator, "slow=1500", timeout=0.5, max_retries=0)


def test_unknown_fault_is_the_emulators_400(emulator: Emulator) -> None:
    with pytest.raises(BadRequestError) as info:
        run(emulator, "explode")
    assert info.value.message.startswith(EMULATOR_PREFIX)  # type: ignore[attr-defined]


def test_fault_header_parsing() -> None:
    faults = parse_faults(" slow=50 , cut-after=3,error-after=7")
    assert (faults.slow, faults.cut_after, faults.error_after) == (0.05, 3, 7)
    assert not parse_faults(None).any and parse_faults("rate-limit").before is not None
    with pytest.raises(Exception, match="non-negative integer"):
        parse_faults("cut-after=x")


def test_the_emulator_keeps_serving_after_faults(emulator: Emulator) -> None:
    assert "1024" in run(emulator, "").text
