"""End to end in a real Arize Phoenix: the tracing examples (a streamed LangChain chain, a
LlamaIndex ``stream_chat``) run against the emulator and export over OTLP/HTTP to a Phoenix
server started here; the spans are read back through Phoenix's REST API. A Responses case
streams both frameworks from a replay server speaking the Responses protocol: the tool
step's output in Phoenix is what the code printed.

Phoenix and the OTLP exporter live in a side virtual environment (with this project
installed in it); the server runs on 127.0.0.1 on free ports with its own working
directory, and is stopped afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ecosystem.venvs import ROOT, side_venv
from tests.replay import RESP_CODE, RESP_LOGS, RESP_ONE_RUN, ReplayServer, Reply, responses_stream

REQUIREMENTS = [
    "arize-phoenix==20.*",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "openinference-instrumentation-langchain",
    "openinference-instrumentation-llama-index",
]
TWO_STEPS = "First compute 123 to the power of 23, then divide that by 5"
BIG = "1169008215014432917465348578887506800769541157267"
NON_ASCII = "名字 = '世界'\nfor i in range(2):\n    print(f'你好, {名字} #{i}')"


@dataclass
class Phoenix:
    python: Path
    url: str

    def spans(self, project: str, count: int, within: float = 60) -> list[dict[str, Any]]:
        """The project's spans, once at least ``count`` arrived (Phoenix ingests in the
        background)."""
        deadline = time.monotonic() + within
        while True:
            response = httpx.get(f"{self.url}/v1/projects/{project}/spans",
                                 params={"limit": 1000}, timeout=10)
            data = response.json().get("data", []) if response.status_code == 200 else []
            if len(data) >= count or time.monotonic() > deadline:
                return list(data)
            time.sleep(0.5)

    def run_example(self, script: str, project: str, *args: str) -> str:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DASHSCOPE_", "VIRTUAL_ENV", "PYTHONPATH"))}
        done = subprocess.run(
            [str(self.python), str(ROOT / "examples" / script), *args,
             "--otlp", f"{self.url}/v1/traces", "--project", project],
            capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    python = side_venv("phoenix", REQUIREMENTS, with_project="all")
    workdir = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV",
                                                                      "PYTHONPATH"))}
    env.update(PHOENIX_WORKING_DIR=str(workdir), PHOENIX_HOST="127.0.0.1",
               PHOENIX_PORT=str(port), PHOENIX_GRPC_PORT=str(_free_port()),
               PHOENIX_TELEMETRY_ENABLED="false", PHOENIX_ALLOW_EXTERNAL_RESOURCES="false")
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen([str(python), "-m", "phoenix.server.main", "serve"],
                              cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail("Phoenix exited: " + (workdir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Phoenix did not start: "
                            + (workdir / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield Phoenix(python, url)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def by_kind(spans: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return sorted((s for s in spans if s["span_kind"] == kind), key=lambda s: s["start_time"])


def attr(span: dict[str, Any], name: str) -> Any:
    """An attribute of a span as Phoenix returns it (flat dotted keys)."""
    return span["attributes"].get(name)


def check_tools(spans: list[dict[str, Any]], llm: dict[str, Any], codes: list[str]) -> None:
    tools = [s for s in by_kind(spans, "TOOL") if s["parent_id"] == llm["context"]["span_id"]]
    assert [s["name"] for s in tools] == ["code_interpreter"] * len(codes)
    assert [attr(s, "input.value") for s in tools] == codes
    assert {attr(s, "tool.name") for s in tools} == {"code_interpreter"}
    assert all(s["status_code"] == "OK" for s in tools)
    assert {s["context"]["trace_id"] for s in tools} == {llm["context"]["trace_id"]}


@pytest.mark.timeout(900)
def test_langchain_stream_and_llamaindex_stream_chat_in_phoenix(phoenix: Phoenix) -> None:
    out = phoenix.run_example("tracing_langchain.py", "langchain", TWO_STEPS)
    assert "2.338016430028866e+47" in out
    spans = phoenix.spans("langchain", count=6)
    (llm,) = by_kind(spans, "LLM")
    assert llm["name"] == "ChatQwenCodeInterpreter"
    check_tools(spans, llm, ["123**23", f"{BIG} / 5"])
    assert attr(llm, "llm.token_count.completion_details.reasoning") > 0
    contents = "llm.output_messages.0.message.contents.0.message_content"
    assert attr(llm, f"{contents}.type") == "reasoning"
    assert attr(llm, f"{contents}.text").startswith("The user asks for two steps")
    (chain,) = [s for s in spans if s["name"] == "RunnableSequence"]
    assert llm["parent_id"] == chain["context"]["span_id"]

    fenced = f"Run this:\n```python\n{NON_ASCII}\n```"
    out = phoenix.run_example("tracing_llamaindex.py", "llamaindex", fenced)
    assert "你好, 世界 #1" in out
    spans = phoenix.spans("llamaindex", count=2)
    (llm,) = by_kind(spans, "LLM")
    assert llm["name"] == "QwenCodeInterpreter.stream_chat"
    check_tools(spans, llm, [NON_ASCII])
    assert attr(llm, "llm.token_count.completion_details.reasoning") > 0
    assert attr(llm, f"{contents}.type") == "reasoning"
    # Phoenix parses the metadata JSON and returns it flattened
    metadata = {k.removeprefix("metadata."): v for k, v in llm["attributes"].items()
                if k.startswith("metadata.")}
    assert metadata["code_interpreter_count"] == 1 and metadata["request_id"]


#: streams a LangChain chain and a LlamaIndex ``stream_chat`` over the Responses protocol,
#: exporting to Phoenix (argv: base_url, OTLP endpoint, project prefix)
RESPONSES_SCRIPT = """
import sys
from _trace import provider
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.llms import ChatMessage
from openinference.instrumentation.langchain import LangChainInstrumentor
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter

url, otlp, prefix = sys.argv[1:4]
lc_provider, _ = provider(otlp, prefix + "-langchain")
LangChainInstrumentor().instrument(tracer_provider=lc_provider)
llm = ChatQwenCodeInterpreter(base_url=url, api_key="sk-local", model="qwen3.5-plus")
chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
print("langchain:", "".join(chain.stream({"q": "123的21次方是多少？"})))
LangChainInstrumentor().uninstrument()
li_provider, _ = provider(otlp, prefix + "-llamaindex")
LlamaIndexInstrumentor().instrument(tracer_provider=li_provider)
li = QwenCodeInterpreter(base_url=url, api_key="sk-local", model="qwen3.5-plus")
*_, last = li.stream_chat([ChatMessage(role="user", content="123的21次方是多少？")])
print("llamaindex:", last.message.content)
lc_provider.force_flush()
li_provider.force_flush()
"""


def run_responses_script(phoenix: Phoenix, base_url: str, prefix: str) -> str:
    """Run :data:`RESPONSES_SCRIPT` in Phoenix's side venv, with this worktree's code first
    on the path (the side venv's installed copy is refreshed only when pyproject changes)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASHSCOPE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'examples'}"
    done = subprocess.run(
        [str(phoenix.python), "-c", RESPONSES_SCRIPT, base_url, f"{phoenix.url}/v1/traces",
         prefix], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(900)
def test_responses_tool_step_shows_code_and_output_in_phoenix(phoenix: Phoenix) -> None:
    with ReplayServer() as server:
        server.default = Reply(responses_stream(RESP_ONE_RUN))
        out = run_responses_script(phoenix, server.base_url, "responses")
        assert all(r.path == "/compatible-mode/v1/responses" for r in server.requests)
        assert len(server.requests) == 2
    assert out.count("77269364466549865653073473388030061522211723") == 2
    for project, llm_name in (("responses-langchain", "ChatQwenCodeInterpreter"),
                              ("responses-llamaindex", "QwenCodeInterpreter.stream_chat")):
        spans = phoenix.spans(project, count=2)
        (llm,) = by_kind(spans, "LLM")
        assert llm["name"] == llm_name
        check_tools(spans, llm, [RESP_CODE])
        (tool,) = by_kind(spans, "TOOL")
        assert attr(tool, "output.value") == RESP_LOGS  # what the code printed
