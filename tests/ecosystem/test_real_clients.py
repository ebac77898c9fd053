"""Clients nobody here wrote, against the emulator, unchanged but for base URL and key.

- the seed page's three quickstarts, read from ``../shared/seed`` at test time: the
  official ``dashscope`` SDK (a recent release, and 1.22.2 as pinned by
  llama-index-llms-dashscope), the ``openai`` Python SDK (the project's own dependency) and
  the npm ``openai`` package under node;
- the SDK's ``Generation`` and ``MultiModalConversation`` and its errors;
- LangChain's ``ChatTongyi`` (langchain-community) and ``llama-index-llms-dashscope``
  streaming with the interpreter.

Each runs in a subprocess (side environments from :mod:`tests.ecosystem.venvs`, node
packages cached under ``.venvs/node-openai``) against an emulator on 127.0.0.1, and each
test asserts what that client shows its user.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.validation import NOT_INCREMENTAL, NOT_STREAMING
from tests.ecosystem.venvs import VENVS, side_venv
from tests.emulator.conftest import KEY, LIMITS, running
from tests.replay import SHARED

SEED_PAGE = SHARED / "seed" / "000_c17b4bc67ed4b6ae.txt"
PROMPT = "123的21次方是多少？"
ANSWER = str(123**21)
HOSTED = "https://dashscope.aliyuncs.com/compatible-mode/v1"
RECENT_DASHSCOPE = "dashscope==2.0.2"
LANGCHAIN_COMMUNITY = "langchain-community==0.4.2"
LLAMAINDEX_DASHSCOPE = "llama-index-llms-dashscope==0.7.0"  # pins dashscope==1.22.2
NPM_OPENAI = "openai@6.49.0"

pytestmark = pytest.mark.timeout(900)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running(api_key=KEY, pool_size=2, limits=LIMITS) as emulator:
        emulator.wait_warm()
        yield emulator


def seed_blocks() -> dict[str, str]:
    """The page's code blocks: ``dashscope``, ``openai-python``, ``openai-js``."""
    if not SEED_PAGE.is_file():
        pytest.skip(f"the seed page is not at {SEED_PAGE} (../shared is absent)")
    blocks: dict[str, str] = {}
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", SEED_PAGE.read_text(), re.S):
        if lang == "javascript":
            blocks["openai-js"] = code
        elif "dashscope.Generation.call" in code:
            blocks["dashscope"] = code
        elif "from openai import OpenAI" in code:
            blocks["openai-python"] = code
    assert set(blocks) == {"dashscope", "openai-python", "openai-js"}, list(blocks)
    return blocks


@pytest.fixture(scope="module")
def clients_python() -> Path:
    """A recent dashscope SDK and langchain-community (ChatTongyi)."""
    return side_venv("dashscope-clients", [RECENT_DASHSCOPE, LANGCHAIN_COMMUNITY])


@pytest.fixture(scope="module")
def llamaindex_python() -> Path:
    """llama-index-llms-dashscope with the dashscope it pins (1.22.2)."""
    return side_venv("llamaindex-dashscope", [LLAMAINDEX_DASHSCOPE])


@pytest.fixture(scope="module")
def node_openai() -> Path:
    """A folder whose node_modules holds the npm ``openai`` package (installed once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JavaScript quickstart; not found on PATH")
    folder = VENVS / "node-openai"
    stamp = folder / ".stamp"
    if stamp.is_file() and stamp.read_text() == NPM_OPENAI:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", NPM_OPENAI],
        cwd=folder, capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.skip(f"npm could not install {NPM_OPENAI}: {reason}")
    stamp.write_text(NPM_OPENAI)
    return folder


def run(cmd: list[str], emu: Emulator, *, key: str = KEY, cwd: Path | None = None,
        script: str | None = None) -> str:
    """Run a client; the key and the native base URL come from the environment, as the
    SDKs read them. Returns stdout; a failing client fails the test with its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env.update(DASHSCOPE_API_KEY=key, DASHSCOPE_HTTP_BASE_URL=emu.base_url + "/api/v1",
               PYTHONIOENCODING="utf-8", PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)
    assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def compat_reference(emu: Emulator) -> tuple[str, str]:
    """Reasoning and answer of the seed prompt in compatible mode, read raw (the scripted
    model is deterministic, so a client must show exactly these)."""
    body = {"model": "qwen3-max-preview", "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
            "enable_thinking": True, "enable_code_interpreter": True}
    reasoning = answer = ""
    with httpx.stream("POST", emu.base_url + "/compatible-mode/v1/chat/completions",
                      json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:])["choices"]:
                reasoning += choice["delta"].get("reasoning_content") or ""
                answer += choice["delta"].get("content") or ""
    assert reasoning and ANSWER in answer
    return reasoning, answer


def printed_outputs(stdout: str) -> list[dict[str, Any]]:
    """The ``print(chunk["output"])`` lines of the DashScope quickstart (the SDK prints
    its output objects as JSON)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------- the quickstarts


@pytest.mark.parametrize("sdk", ["recent", "1.22.2"])
def test_seed_dashscope_quickstart_verbatim(emu: Emulator, sdk: str,
                                            request: pytest.FixtureRequest) -> None:
    python = request.getfixturevalue("clients_python" if sdk == "recent" else
                                     "llamaindex_python")
    code = seed_blocks()["dashscope"]  # verbatim: key and base URL come from the environment
    outputs = printed_outputs(run([str(python), "-"], emu, script=code))
    messages = [o["choices"][0]["message"] for o in outputs]
    thinking = "".join(m.get("reasoning_content") or "" for m in messages)
    answer = "".join(m["content"] for m in messages)
    assert thinking and ANSWER in answer
    codes = [[t["code_interpreter"]["code"] for t in o.get("tool_info") or []] for o in outputs]
    assert ["123**21"] in codes and codes[-1] == ["123**21"]
    assert outputs[-1]["choices"][0]["finish_reason"] == "stop"
    # deltas, not a growing text: the answer appears once
    assert answer.count(ANSWER) == 1


def test_seed_openai_python_quickstart_verbatim(emu: Emulator) -> None:
    code = seed_blocks()["openai-python"]
    assert HOSTED in code
    code = code.replace(HOSTED, emu.base_url + "/compatible-mode/v1")  # the only change
    stdout = run([sys.executable, "-"], emu, script=code)
    reasoning, answer = compat_reference(emu)
    assert stdout.startswith(reasoning + answer)
    # what the issue asks the quickstart to print: the thinking naming 123**21, the answer
    assert "123**21" in reasoning and ANSWER in answer
    usage = stdout[len(reasoning + answer):]
    assert usage.startswith("CompletionUsage(") and "reasoning_tokens=" in usage


def test_seed_openai_javascript_quickstart_verbatim(emu: Emulator, node_openai: Path) -> None:
    code = seed_blocks()["openai-js"]
    assert HOSTED in code
    script = node_openai / "quickstart.mjs"
    script.write_text(code.replace(HOSTED, emu.base_url + "/compatible-mode/v1"))
    stdout = run([str(shutil.which("node")), str(script)], emu, cwd=node_openai)
    reasoning, answer = compat_reference(emu)
    assert stdout == reasoning + answer
    assert "123**21" in reasoning and ANSWER in answer


# ---------------------------------------------------------------------- the dashscope SDK

SDK_CALLS = r"""
import json, sys
import dashscope
from dashscope import Generation, MultiModalConversation

PROMPT = sys.argv[1]
seen = {}

# MultiModalConversation with qwen3.5-plus: thinking is on by default, interpreter on
reasoning = text = ""
codes = None
for chunk in MultiModalConversation.call(
        model="qwen3.5-plus", stream=True, enable_code_interpreter=True,
        messages=[{"role": "user", "content": [{"text": PROMPT}]}]):
    assert chunk.status_code == 200, chunk
    message = chunk.output.choices[0].message
    reasoning += message.get("reasoning_content") or ""
    text += "".join(part["text"] for part in message.content)
    codes = chunk.output.get("tool_info")
seen["multimodal"] = {"reasoning": reasoning, "text": text, "tool_info": codes,
                      "usage": chunk.usage}

# non-streaming thinking on qwen3.5-plus
r = MultiModalConversation.call(model="qwen3.5-plus",
                                messages=[{"role": "user", "content": [{"text": "Hello"}]}])
seen["multimodal_blocking"] = {"status": r.status_code,
                               "reasoning": r.output.choices[0].message.reasoning_content}

# Generation without the interpreter, text format (qwen-max's default)
r = Generation.call(model="qwen-max", prompt="Hello")
seen["text_format"] = {"status": r.status_code, "text": r.output.text}

# errors, as the SDK reports them
def error(response):
    return {"status": response.status_code, "code": response.code,
            "message": response.message, "request_id": response.request_id}

seen["wrong_key"] = error(Generation.call(model="qwen3-max", prompt="hi", api_key="sk-wrong"))
seen["typo"] = error(Generation.call(model="qwen3-max-preveiw", prompt="hi"))
seen["not_streaming"] = error(Generation.call(model="qwen3-max", prompt="hi",
                                              enable_thinking=True))
seen["not_incremental"] = [
    error(c) | {"content": c.output.choices[0].message.content if c.output else None}
    for c in Generation.call(model="qwen3-max", prompt="Hello", enable_thinking=True,
                             stream=True, incremental_output=False,
                             result_format="message")]
seen["wrong_endpoint"] = error(Generation.call(model="qwen3.5-plus", prompt="hi"))
print(json.dumps(seen, ensure_ascii=False, default=str))
"""


def test_dashscope_sdk_generation_multimodal_and_errors(
    emu: Emulator, clients_python: Path
) -> None:
    seen = json.loads(run([str(clients_python), "-c", SDK_CALLS, PROMPT], emu))
    multimodal = seen["multimodal"]
    assert multimodal["reasoning"] and ANSWER in multimodal["text"]
    assert multimodal["tool_info"] == [
        {"code_interpreter": {"code": "123**21"}, "type": "code_interpreter"}
    ]
    assert seen["multimodal_blocking"]["status"] == 200
    assert seen["multimodal_blocking"]["reasoning"]
    assert seen["text_format"]["status"] == 200
    assert seen["text_format"]["text"].startswith("Hello!")
    assert seen["wrong_key"] | {"request_id": None} == {
        "status": 401, "code": "InvalidApiKey", "message": "Invalid API-key provided.",
        "request_id": None}
    assert seen["wrong_key"]["request_id"]
    assert (seen["typo"]["status"], seen["typo"]["message"]) == (400, "Model not exist.")
    assert (seen["not_streaming"]["status"], seen["not_streaming"]["code"],
            seen["not_streaming"]["message"]) == (400, "InvalidParameter", NOT_STREAMING)
    # recent SDKs send incremental_output=true whatever the caller asks and merge the
    # deltas themselves: the caller sees a growing text, no error
    frames = seen["not_incremental"]
    assert all(f["status"] == 200 for f in frames)
    contents = [f["content"] for f in frames if f["content"]]
    assert len(contents) > 3 and contents[-1].startswith("Hello!")
    assert all(b.startswith(a) for a, b in itertools.pairwise(contents))
    assert (seen["wrong_endpoint"]["status"], seen["wrong_endpoint"]["message"]) == (
        400, "url error, please check url!")


OLD_SDK_INCREMENTAL = r"""
import json
from dashscope import Generation

print(json.dumps([{"status": c.status_code, "code": c.code, "message": c.message}
                  for c in Generation.call(model="qwen3-max", prompt="hi", stream=True,
                                           enable_thinking=True, incremental_output=False)]))
"""


def test_dashscope_1_22_passes_incremental_false_and_gets_the_documented_error(
    emu: Emulator, llamaindex_python: Path
) -> None:
    [frame] = json.loads(run([str(llamaindex_python), "-c", OLD_SDK_INCREMENTAL], emu))
    assert frame == {"status": 400, "code": "InvalidParameter", "message": NOT_INCREMENTAL}


# ---------------------------------------------------------------------- frameworks

CHAT_TONGYI = r"""
import json, sys
from langchain_community.chat_models import ChatTongyi

llm = ChatTongyi(model="qwen3-max-preview", streaming=True,
                 model_kwargs={"enable_code_interpreter": True, "enable_thinking": True})
full = None
for chunk in llm.stream(sys.argv[1]):
    full = chunk if full is None else full + chunk
print(json.dumps({"content": full.content,
                  "reasoning": full.additional_kwargs.get("reasoning_content", ""),
                  "metadata": full.response_metadata}, ensure_ascii=False, default=str))
"""


def test_langchain_chat_tongyi_streams_with_the_interpreter(
    emu: Emulator, clients_python: Path
) -> None:
    seen = json.loads(run([str(clients_python), "-c", CHAT_TONGYI, PROMPT], emu))
    assert ANSWER in seen["content"] and seen["content"].count(ANSWER) == 1
    assert seen["reasoning"]
    usage = seen["metadata"]["token_usage"]
    assert usage["plugins"] == {"code_interpreter": {"count": 1}}  # what ChatTongyi keeps
    assert seen["metadata"]["finish_reason"] == "stop"


LLAMAINDEX = r"""
import json, os, sys
from llama_index.core.llms import ChatMessage
from llama_index.llms.dashscope import DashScope

llm = DashScope(model_name="qwen3-max-preview", api_key=os.environ["DASHSCOPE_API_KEY"])
last = None
deltas = []
for last in llm.stream_chat([ChatMessage(role="user", content=sys.argv[1])],
                            enable_code_interpreter=True, enable_thinking=True):
    deltas.append(last.delta)
print(json.dumps({"content": last.message.content, "deltas": deltas,
                  "tool_info": last.raw["output"].get("tool_info")}, ensure_ascii=False))
"""


def test_llamaindex_dashscope_streams_with_the_interpreter(
    emu: Emulator, llamaindex_python: Path
) -> None:
    seen = json.loads(run([str(llamaindex_python), "-c", LLAMAINDEX, PROMPT], emu))
    assert ANSWER in seen["content"] and seen["content"] == "".join(seen["deltas"])
    assert seen["tool_info"] == [
        {"code_interpreter": {"code": "123**21"}, "type": "code_interpreter"}
    ]
