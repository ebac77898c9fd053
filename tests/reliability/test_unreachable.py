"""Unreachable services through both frameworks: refused connections and silent hosts
end in typed errors within the configured bounds."""

from __future__ import annotations

import time
from typing import Any

import pytest
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import APIConnectionError, APITimeoutError
from tests.replay import SilentServer, closed_port_url

PROTOCOLS = ["dashscope", "openai"]
Q = [ChatMessage(role="user", content="q")]


def calls(base_url: str, protocol: str, **kwargs: Any) -> list[Any]:
    lc = ChatQwenCodeInterpreter(api_key="k", base_url=base_url, protocol=protocol,  # type: ignore[arg-type]
                                 **kwargs)
    li = QwenCodeInterpreter(api_key="k", base_url=base_url, protocol=protocol,  # type: ignore[arg-type]
                             **kwargs)
    return [lambda: lc.invoke("q"), lambda: list(lc.stream("q")),
            lambda: li.chat(Q), lambda: list(li.stream_chat(Q))]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_refused(protocol: str) -> None:
    for call in calls(closed_port_url(), protocol, max_retries=0):
        with pytest.raises(APIConnectionError, match="Could not connect"):
            call()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_silent_host_times_out_within_the_bound(protocol: str) -> None:
    with SilentServer() as silent:
        for call in calls(silent.base_url, protocol, timeout=0.5, max_retries=0):
            start = time.monotonic()
            with pytest.raises(APITimeoutError):
                call()
            assert time.monotonic() - start < 5
