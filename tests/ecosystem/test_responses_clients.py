"""Real Responses clients, unchanged but for base URL and key, against the emulator.

- the official ``openai`` Python SDK (the project's own dependency): ``responses.create``
  streaming, read with the service documentation's parsing recipe as PROTOCOL.md section 6
  states it (``event.item.code``, ``event.item.outputs[0].logs``,
  ``usage.x_tools["code_interpreter"]["count"]``; the page itself is not in ../shared), and
  non-streaming ``response.output`` / ``output_text``;
- the npm ``openai`` package under node (``tests/ecosystem/node``: package.json and its
  lock file, installed with ``npm ci`` into ``.venvs/node-responses``);
- langchain-openai's ``ChatOpenAI(use_responses_api=True)`` bound to the built-in tool;
- LlamaIndex's ``OpenAIResponses`` (llama-index-llms-openai, in a side environment) with
  ``built_in_tools``.

The scripted model is deterministic and really runs ``123**21``: every client must show
the code, the value the sandbox printed, and the answer built from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_ci_server.emulator import Emulator
from tests.ecosystem.venvs import VENVS, side_venv
from tests.emulator.conftest import KEY, LIMITS, running

PROMPT = "What is 123 to the power of 21?"
MODEL = "qwen3-max-2026-01-23"
ANSWER = str(123**21)
NODE = Path(__file__).parent / "node"
LLAMAINDEX_OPENAI = "llama-index-llms-openai==0.8.3"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running(api_key=KEY, pool_size=2, limits=LIMITS) as emulator:
        emulator.wait_warm()
        yield emulator


def base_url(emu: Emulator) -> str:
    """What a user sets instead of ``https://dashscope.aliyuncs.com/compatible-mode/v1``."""
    return emu.base_url + "/compatible-mode/v1"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASHSCOPE_", "OPENAI_")) and k not in ("VIRTUAL_ENV",
                                                                        "PYTHONPATH")}
    env.update(PYTHONIOENCODING="utf-8", PYTHONWARNINGS="ignore", **extra)
    return env


# ---------------------------------------------------------------------- openai (Python)


def test_openai_python_streaming_with_the_docs_recipe(emu: Emulator) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=base_url(emu))
    stream = client.responses.create(
        model=MODEL,
        input=PROMPT,
        tools=[{"type": "code_interpreter"}],
        extra_body={"enable_thinking": True},
        stream=True,
    )
    codes, logs, counts = [], [], []
    text = ""
    for event in stream:
        if event.type == "response.output_item.done" and hasattr(event.item, "code"):
            codes.append(event.item.code)
            logs.append(event.item.outputs[0].logs)  # type: ignore[union-attr]
        elif event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            usage = event.response.usage
            assert usage is not None
            counts.append(usage.x_tools["code_interpreter"]["count"])  # type: ignore[attr-defined]
    assert codes == ["123**21"]
    assert logs == [ANSWER]
    assert counts == [1]
    assert ANSWER in text


def test_openai_python_non_streaming_output(emu: Emulator) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=base_url(emu))
    response = client.responses.create(
        model=MODEL,
        input=PROMPT,
        tools=[{"type": "code_interpreter"}],
        extra_body={"enable_thinking": True},
    )
    assert [item.type for item in response.output] == [
        "reasoning", "code_interpreter_call", "reasoning", "message"]
    call = response.output[1]
    assert call.type == "code_interpreter_call"
    assert call.code == "123**21" and call.status == "completed"
    assert call.outputs is not None and call.outputs[0].type == "logs"
    assert call.outputs[0].logs == ANSWER
    assert ANSWER in response.output_text
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens > 0


def test_openai_python_async_streaming_and_the_legacy_path(emu: Emulator) -> None:
    import asyncio

    from openai import AsyncOpenAI

    async def main() -> list[str]:
        client = AsyncOpenAI(api_key=KEY,
                             base_url=emu.base_url + "/api/v2/apps/protocols/compatible-mode/v1")
        stream = await client.responses.create(
            model=MODEL, input=PROMPT, tools=[{"type": "code_interpreter"}],
            extra_body={"enable_thinking": True}, stream=True)
        return [event.item.outputs[0].logs async for event in stream  # type: ignore[union-attr]
                if event.type == "response.output_item.done"
                and event.item.type == "code_interpreter_call"]

    assert asyncio.run(main()) == [ANSWER]


def test_openai_python_sees_the_services_error(emu: Emulator) -> None:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=base_url(emu), max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input=PROMPT, background=True,
                                tools=[{"type": "code_interpreter"}],
                                extra_body={"enable_thinking": True})
    assert caught.value.status_code == 400
    assert "background" in caught.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-wrong", base_url=base_url(emu), max_retries=0).responses.create(
            model=MODEL, input=PROMPT)


# ---------------------------------------------------------------------- openai (node)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``tests/ecosystem/node`` installed with ``npm ci`` (from its lock file) into
    ``.venvs/node-responses``; skipped with the reason when node or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the npm openai client; not found on PATH")
    folder = VENVS / "node-responses"
    files = ("package.json", "package-lock.json", "responses_stream.mjs")
    digest = "".join((NODE / name).read_text() for name in files)
    stamp = folder / ".stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in files:
        shutil.copy(NODE / name, folder / name)
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=folder,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.skip(f"npm ci could not install tests/ecosystem/node: {reason}")
    stamp.write_text(digest)
    return folder


def test_npm_openai_streaming(emu: Emulator, node_client: Path) -> None:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, "responses_stream.mjs"], cwd=node_client, capture_output=True, text=True,
        timeout=300, env=clean_env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=base_url(emu)))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    run, completed, streamed = lines
    assert run == {"code": "123**21", "logs": ANSWER}
    assert completed["count"] == 1 and completed["total_tokens"] > 0
    assert "123**21" in streamed["reasoning"] and ANSWER in streamed["text"]
    assert completed["message"] == streamed["text"]


# ---------------------------------------------------------------------- langchain-openai


def _chat_openai(emu: Emulator) -> Any:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=base_url(emu), api_key=KEY,  # type: ignore[arg-type]
                     use_responses_api=True, extra_body={"enable_thinking": True},
                     max_retries=0)
    # the tool spec OpenAI's own service wants; the emulator ignores the container
    return llm.bind_tools([{"type": "code_interpreter", "container": {"type": "auto"}}])


def _check_blocks(message: Any) -> None:
    blocks = message.content_blocks
    kinds = [block["type"] for block in blocks]
    assert kinds == ["reasoning", "server_tool_call", "server_tool_result", "reasoning", "text"]
    call, result = blocks[1], blocks[2]
    assert call["name"] == "code_interpreter" and call["args"]["code"] == "123**21"
    assert result["tool_call_id"] == call["id"] and result["status"] == "success"
    assert result["output"] == [{"type": "logs", "logs": ANSWER}]
    assert call["extras"]["container_id"].startswith("cntr_")
    assert ANSWER in message.text
    assert message.usage_metadata["output_token_details"]["reasoning"] > 0


def test_langchain_openai_invoke(emu: Emulator) -> None:
    message = _chat_openai(emu).invoke(PROMPT)
    _check_blocks(message)
    raw = [b for b in message.content if b["type"] == "code_interpreter_call"]
    assert raw[0]["outputs"] == [{"type": "logs", "logs": ANSWER}]


def test_langchain_openai_stream(emu: Emulator) -> None:
    chunks = list(_chat_openai(emu).stream(PROMPT))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    _check_blocks(total)
    assert sum(1 for chunk in chunks if chunk.text) > 3  # the answer really streamed


# ---------------------------------------------------------------------- LlamaIndex

LLAMAINDEX_SCRIPT = """
import json, os
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai import OpenAIResponses

llm = OpenAIResponses(
    model="qwen3-max-2026-01-23", api_base=os.environ["BASE_URL"], api_key=os.environ["KEY"],
    built_in_tools=[{"type": "code_interpreter"}], context_window=262144, max_retries=0,
    additional_kwargs={"extra_body": {"enable_thinking": True}})
messages = [ChatMessage(role="user", content="What is 123 to the power of 21?")]
response = llm.chat(messages)
print(json.dumps({
    "text": response.message.content,
    "calls": [call.model_dump(mode="json")
              for call in response.additional_kwargs["built_in_tool_calls"]],
    "thinking": [b.content for b in response.message.blocks if b.block_type == "thinking"],
}))
last = None
for last in llm.stream_chat(messages):
    pass
print(json.dumps({"text": last.message.content}))
"""


@pytest.fixture(scope="module")
def llamaindex_python() -> Path:
    return side_venv("llamaindex-openai-responses", [LLAMAINDEX_OPENAI])


def test_llamaindex_openai_responses(emu: Emulator, llamaindex_python: Path) -> None:
    done = subprocess.run(
        [str(llamaindex_python), "-c", LLAMAINDEX_SCRIPT], capture_output=True, text=True,
        timeout=300, env=clean_env(BASE_URL=base_url(emu), KEY=KEY))
    assert done.returncode == 0, done.stderr[-3000:]
    chat, streamed = (json.loads(line) for line in done.stdout.splitlines() if line.strip())
    (call,) = chat["calls"]
    assert call["type"] == "code_interpreter_call" and call["code"] == "123**21"
    assert call["outputs"] == [{"type": "logs", "logs": ANSWER}]
    assert ANSWER in chat["text"]
    assert len(chat["thinking"]) == 2 and "123**21" in chat["thinking"][0]
    # streaming: LlamaIndex collects only search calls from events, so a user sees the
    # answer but no code run (docs/emulator.md says so; the same against the real service)
    assert ANSWER in streamed["text"]
