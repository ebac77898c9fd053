"""Endpoint selection: base_url normalization, regions, environment, model table."""

from __future__ import annotations

import pytest

from qwen_ci.config import (
    REGION_HOSTS,
    code_interpreter_refusal,
    model_info,
    normalize_base_url,
    resolve_base_url,
)
from qwen_ci.errors import InvalidRequestError
from qwen_ci.request import Options, build


@pytest.mark.parametrize(
    "pasted",
    [
        "https://dashscope.aliyuncs.com",
        "https://dashscope.aliyuncs.com/",
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "https://dashscope.aliyuncs.com/compatible-mode/v1/",
        "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
        "https://dashscope.aliyuncs.com/api/v1",
        "https://dashscope.aliyuncs.com/api/v1/services/aigc/text-generation/generation",
    ],
)
def test_pasted_urls_are_normalized_to_the_root(pasted: str) -> None:
    assert normalize_base_url(pasted) == "https://dashscope.aliyuncs.com"


def test_root_with_port_and_proxy_prefix_is_kept() -> None:
    assert normalize_base_url("http://127.0.0.1:8765/") == "http://127.0.0.1:8765"
    assert normalize_base_url("http://proxy:80/ds/api/v1") == "http://proxy:80/ds"


@pytest.mark.parametrize("bad", ["dashscope.aliyuncs.com", "ftp://x", "http://", "http://h/?a=1"])
def test_bad_base_url_is_rejected_with_the_fix(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="service root"):
        normalize_base_url(bad)


def test_region_picks_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_base_url(None, None) == "https://dashscope.aliyuncs.com"
    assert resolve_base_url(None, "ap-southeast-1") == "https://dashscope-intl.aliyuncs.com"
    assert resolve_base_url(None, "us-east-1") == "https://dashscope-us.aliyuncs.com"
    with pytest.raises(InvalidRequestError, match="cn-beijing"):
        resolve_base_url(None, "eu-west-1")


def test_environment_base_url_beats_region_and_argument_beats_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASHSCOPE_BASE_URL", "http://127.0.0.1:9/compatible-mode/v1")
    assert resolve_base_url(None, "us-east-1") == "http://127.0.0.1:9"
    assert resolve_base_url("http://127.0.0.1:10", None) == "http://127.0.0.1:10"


@pytest.mark.parametrize(
    ("model", "endpoint"),
    [
        ("qwen3-max-preview", "text"),
        ("qwen3-max", "text"),
        ("qwen3-max-2026-01-23", "text"),
        ("qwen3.5-plus", "multimodal"),
        ("qwen3.5-plus-2026-02-15", "multimodal"),
        ("qwen3.7-plus", "multimodal"),
        ("qwen3-vl-plus", "multimodal"),
        ("qwen-plus", "text"),
    ],
)
def test_model_table_picks_the_native_endpoint(model: str, endpoint: str) -> None:
    assert model_info(model).endpoint == endpoint
    question = [{"role": "user", "content": "2**10?"}]
    if code_interpreter_refusal(model) is not None:  # refused before any request (#15)
        with pytest.raises(InvalidRequestError, match="has no code interpreter"):
            build(question, Options(model=model), "dashscope")
        return
    native = build(question, Options(model=model), "dashscope")
    assert native.path == f"/api/v1/services/aigc/{endpoint}-generation/generation"
    compat = build(question, Options(model=model), "openai")
    assert compat.path == "/compatible-mode/v1/chat/completions"


def test_model_limits_are_the_documented_ones() -> None:
    assert model_info("qwen3-max-preview").context_window == 262_144
    assert model_info("qwen3-max-preview").max_output_tokens == 32_768
    assert model_info("qwen3.5-plus").context_window == 1_000_000
    assert model_info("qwen3.5-plus").max_output_tokens == 65_536
    assert set(REGION_HOSTS) == {"cn-beijing", "ap-southeast-1", "us-east-1"}
