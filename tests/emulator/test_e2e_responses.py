"""The client and both adapters with ``protocol="responses"`` end to end against the
emulator's Responses endpoint (real sandbox): each run's code **and what it printed** in
``tool_info``, LangChain's ``server_tool_result`` block and tool run output, LlamaIndex's
TOOL span, web_search, the run's start before it executes, ``qwen-ci ask``.

(``qwen-ci serve`` with the adapters on Responses: tests/selfhost/test_responses_adapters.py.)
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.tracers.context import collect_runs
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import (
    AsyncClient,
    Client,
    CodeRun,
    CodeStart,
    Options,
    acollect,
    build,
    collect,
    config,
)
from qwen_ci.cli import main
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import KEY, ask

MODEL = "qwen3.5-plus"  # Responses is its best protocol: the default when none is given
SEED = "123的21次方是多少？"
BIG = "77269364466549865653073473388030061522211723"
TWO_STEPS = "First compute 123 to the power of 23, then divide that by 5"
BIG23 = "1169008215014432917465348578887506800769541157267"
SLEEPY = "import time\ntime.sleep(0.6)\nprint('slept')"


def fenced(code: str) -> str:
    return f"Run this:\n```python\n{code}\n```"


def same_runs(tool_info: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs without their container (each call gets its own sandbox session)."""
    return [{k: v for k, v in run["code_interpreter"].items() if k != "container_id"}
            for run in tool_info]


def outputs(tool_info: list[dict[str, Any]]) -> list[str]:
    return ["".join(o["logs"] for o in run["code_interpreter"]["outputs"]) for run in tool_info]


# ---------------------------------------------------------------------- core client


@pytest.mark.parametrize("protocol", [None, "responses"])
def test_core_client_returns_code_and_output(emulator: Emulator, protocol: str | None) -> None:
    result = ask(emulator, SEED, protocol, model=MODEL)  # type: ignore[arg-type]
    assert BIG in result.text and result.reasoning
    (run,) = result.tool_info
    assert run["code_interpreter"]["code"] == "123**21"
    assert outputs(result.tool_info) == [BIG]
    assert run["code_interpreter"]["container_id"] and run["code_interpreter"]["status"] == \
        "completed"
    assert result.usage is not None and result.usage.plugins == {"code_interpreter": {"count": 1}}
    assert result.finish is not None and result.finish.reason == "stop"


def test_two_runs_in_one_sandbox(emulator: Emulator) -> None:
    result = ask(emulator, TWO_STEPS, "responses", model=MODEL)
    codes = [r["code_interpreter"]["code"] for r in result.tool_info]
    assert codes == ["123**23", f"{BIG23} / 5"]
    assert outputs(result.tool_info) == [BIG23, "2.338016430028866e+47"]
    containers = {r["code_interpreter"]["container_id"] for r in result.tool_info}
    assert len(containers) == 1  # one session's runs share a container
    assert result.usage is not None and result.usage.plugins["code_interpreter"]["count"] == 2


def test_the_start_arrives_before_the_code_runs(emulator: Emulator) -> None:
    client = Client(api_key=KEY, base_url=emulator.base_url, max_retries=0)
    seen: dict[str, float] = {}
    with client:
        request = build([{"role": "user", "content": fenced(SLEEPY)}], Options(model=MODEL))
        for event in client.stream(request):
            if isinstance(event, CodeStart | CodeRun):
                seen[type(event).__name__] = time.monotonic()
                if isinstance(event, CodeRun):
                    assert event.output is not None and "slept" in event.output
    assert seen["CodeRun"] - seen["CodeStart"] >= 0.5  # the sleep ran in between


def test_async_client_and_web_search(emulator: Emulator) -> None:
    async def run() -> Any:
        async with AsyncClient(api_key=KEY, base_url=emulator.base_url, max_retries=0) as c:
            request = build([{"role": "user", "content": "今天杭州天气如何？算一下摄氏转华氏。"}],
                            Options(model=MODEL, builtin_tools=["web_search"]))
            return await acollect(c.stream(request))

    result = asyncio.run(run())
    (search,) = result.builtin_tools
    assert search["type"] == "web_search" and search["status"] == "completed"
    assert search["web_search"]["query"] and search["web_search"]["sources"]
    assert result.tool_info and outputs(result.tool_info)[0]
    assert result.usage is not None
    assert result.usage.plugins["web_search"] == {"count": 1}


# ---------------------------------------------------------------------- LangChain


def lc(emu: Emulator, **kwargs: Any) -> ChatQwenCodeInterpreter:
    return ChatQwenCodeInterpreter(base_url=emu.base_url, api_key=KEY, model=MODEL,
                                   protocol="responses", max_retries=0, **kwargs)


def test_langchain_block_tool_run_and_tool_info(emulator: Emulator) -> None:
    with collect_runs() as collector:
        message = lc(emulator).invoke(SEED)
    assert BIG in message.content
    assert outputs(message.additional_kwargs["tool_info"]) == [BIG]
    blocks = message.content_blocks
    calls = [b for b in blocks if b["type"] == "server_tool_call"]
    results = [b for b in blocks if b["type"] == "server_tool_result"]
    assert [c["args"] for c in calls] == [{"code": "123**21"}]
    assert [(r["tool_call_id"], r["status"], r["output"]) for r in results] == [
        (calls[0]["id"], "success", BIG)]
    tools = [c for top in collector.traced_runs for c in top.child_runs if c.run_type == "tool"]
    assert [(t.name, t.outputs) for t in tools] == [("code_interpreter", {"output": BIG})]
    assert message.response_metadata["plugins"] == {"code_interpreter": {"count": 1}}


def test_langchain_stream_adds_up_to_invoke(emulator: Emulator) -> None:
    model = lc(emulator)
    chunks = list(model.stream(TWO_STEPS))
    total: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    invoked = model.invoke(TWO_STEPS)
    assert total.content == invoked.content
    assert same_runs(total.additional_kwargs["tool_info"]) == same_runs(
        invoked.additional_kwargs["tool_info"])
    assert outputs(total.additional_kwargs["tool_info"]) == [BIG23, "2.338016430028866e+47"]
    assert [b["type"] for b in total.content_blocks if b["type"].startswith("server")] == [
        "server_tool_call", "server_tool_result"] * 2


async def test_langchain_astream_events_start_then_output(emulator: Emulator) -> None:
    order: list[tuple[str, Any]] = []
    async for event in lc(emulator).astream_events(fenced(SLEEPY), version="v2"):
        if event["event"] == "on_tool_start":
            order.append(("start", event["data"]["input"]["code"]))
        elif event["event"] == "on_tool_end":
            order.append(("end", event["data"]["output"]))
    assert order in ([("start", SLEEPY), ("end", "slept\n")],
                     [("start", SLEEPY), ("end", "slept")])


# ---------------------------------------------------------------------- LlamaIndex


def li(emu: Emulator, **kwargs: Any) -> QwenCodeInterpreter:
    return QwenCodeInterpreter(base_url=emu.base_url, api_key=KEY, model=MODEL,
                               protocol="responses", max_retries=0, **kwargs)


def test_llamaindex_tool_info_and_tool_span(emulator: Emulator) -> None:
    from tests.llamaindex.test_tracing import Traced

    traced = Traced()
    try:
        chunks = list(li(emulator).stream_chat([ChatMessage(role="user", content=SEED)]))
        (tool,) = traced.spans("TOOL")
    finally:
        traced.instrumentor.uninstrument()
    final = chunks[-1]
    assert BIG in (final.message.content or "")
    assert outputs(final.message.additional_kwargs["tool_info"]) == [BIG]
    deltas = [c.additional_kwargs["tool_info_delta"] for c in chunks
              if "tool_info_delta" in c.additional_kwargs]
    assert outputs([d[0] for d in deltas]) == [BIG]
    attributes = dict(tool.attributes or {})
    assert attributes["input.value"] == "123**21" and attributes["output.value"] == BIG
    assert tool.status.is_ok
    assert final.additional_kwargs["plugins"] == {"code_interpreter": {"count": 1}}


def test_llamaindex_chat_equals_last_stream_chunk(emulator: Emulator) -> None:
    llm = li(emulator)
    messages = [ChatMessage(role="user", content=TWO_STEPS)]
    chat = llm.chat(messages)
    last = list(llm.stream_chat(messages))[-1]
    assert chat.message.content == last.message.content
    assert same_runs(chat.message.additional_kwargs["tool_info"]) == same_runs(
        last.message.additional_kwargs["tool_info"])
    assert outputs(chat.message.additional_kwargs["tool_info"]) == [
        BIG23, "2.338016430028866e+47"]


# ---------------------------------------------------------------------- qwen-ci ask


def test_ask_prints_the_output_under_the_code(emulator: Emulator) -> None:
    out = io.StringIO()
    code = main(["ask", SEED, "--base-url", emulator.base_url, "--api-key", KEY,
                 "--model", MODEL], out=out)
    text = out.getvalue()
    assert code == 0, text
    assert text.index("code run 1") < text.index("output of run 1") < text.rindex(BIG)
    assert "code runs: 1" in text


def test_collect_on_a_refused_protocol_sends_nothing(emulator: Emulator) -> None:
    with pytest.raises(Exception, match="does not serve the code interpreter"):
        collect(Client(api_key=KEY, base_url=emulator.base_url).stream(
            build([{"role": "user", "content": "q"}], Options(), "responses")))


# ---------------------------------------------------------------------- the two tables

_API = {"dashscope": "native", "openai": "compatible", "responses": "responses"}


@pytest.mark.parametrize("model", sorted(config.MODELS))
def test_every_protocol_the_client_allows_is_one_the_emulator_serves(model: str) -> None:
    """The client's table (stricter where the sources conflict) never sends a model to a
    protocol the emulator's own table refuses; the default is always served."""
    from qwen_ci_server.emulator.service import SERVED

    allowed = config.model_info(model).protocols
    assert {_API[p] for p in allowed} <= set(SERVED[model].interpreter_apis), model
    assert _API[config.protocol_for(model)] in SERVED[model].interpreter_apis
