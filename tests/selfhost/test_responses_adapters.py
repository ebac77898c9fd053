"""The package's own models with ``protocol="responses"`` against ``qwen-ci serve`` (fake
upstream, real sandbox): the log of serve's sandbox in ``tool_info``, in LangChain's
``server_tool_result`` block, as the output of LangChain's tool run and of LlamaIndex's
TOOL span.

Skipped while the client does not speak the Responses protocol (it comes with issue 19;
the emulator's side is in this branch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tracers.context import collect_runs

from qwen_ci import config
from qwen_ci_server.selfhost import SelfHost
from tests.selfhost.conftest import KEY
from tests.selfhost.upstream import FakeUpstream, stdout_of, stream, tool_outputs

pytestmark = pytest.mark.skipif(
    "responses" not in getattr(config, "PROTOCOLS", ()),
    reason="the client does not speak the Responses protocol yet (issue 19)")

MODEL = "qwen3-max-2026-01-23"
CODE = "print('hello from serve')\n6 * 7"
LOGS = "hello from serve\n42"


@pytest.fixture(autouse=True)
def _scripted(upstream: FakeUpstream) -> Iterator[None]:
    def script(body: dict[str, Any], n: int) -> Any:
        if outputs := tool_outputs(body):
            return stream(content=["It printed ", stdout_of(outputs[-1]), "."])
        return stream(reasoning=["Run it."], codes=[CODE])

    upstream.reset(script)
    yield
    upstream.reset()


def test_langchain_tool_info_block_and_tool_run(server: SelfHost) -> None:
    from langchain_qwen_ci import ChatQwenCodeInterpreter

    llm = ChatQwenCodeInterpreter(base_url=server.base_url, api_key=KEY,  # type: ignore[call-arg]
                                  protocol="responses", model=MODEL, max_retries=0)
    with collect_runs() as collector:
        message = llm.invoke("Say hello from the sandbox.")
    assert message.content == "It printed hello from serve."
    (run,) = message.additional_kwargs["tool_info"]
    assert run["code_interpreter"]["code"] == CODE
    assert run["code_interpreter"]["outputs"] == [{"type": "logs", "logs": LOGS}]
    results = [b for b in message.content_blocks if b["type"] == "server_tool_result"]
    assert len(results) == 1 and results[0].get("output") == LOGS
    tools = [child for top in collector.traced_runs for child in top.child_runs
             if child.run_type == "tool"]
    assert [t.name for t in tools] == ["code_interpreter"]
    assert LOGS in json.dumps(tools[0].outputs, ensure_ascii=False).replace("\\n", "\n")


def test_llamaindex_tool_info_and_tool_span(server: SelfHost) -> None:
    from llama_index.core.llms import ChatMessage

    from llamaindex_qwen_ci import QwenCodeInterpreter
    from tests.llamaindex.test_tracing import Traced

    traced = Traced()
    try:
        llm = QwenCodeInterpreter(base_url=server.base_url, api_key=KEY,  # type: ignore[call-arg]
                                  protocol="responses", model=MODEL)
        response = llm.chat([ChatMessage(role="user", content="Say hello from the sandbox.")])
        (tool,) = traced.spans("TOOL")
    finally:
        traced.instrumentor.uninstrument()
    assert response.message.content == "It printed hello from serve."
    (run,) = response.message.additional_kwargs["tool_info"]
    assert run["code_interpreter"]["outputs"] == [{"type": "logs", "logs": LOGS}]
    attributes = dict(tool.attributes or {})
    assert attributes["input.value"] == CODE and attributes["output.value"] == LOGS
