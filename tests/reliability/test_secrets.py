"""A canary API key never appears anywhere a user or a log collector could see it."""

from __future__ import annotations

import json
import logging
import pickle
import traceback

import pytest
from langchain_core.load import dumpd, dumps

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci import Client, Options, QwenCIError, build, collect
from qwen_ci.session import Session
from tests.replay import ReplayServer, Reply, closed_port_url, compat_stream, native_stream

CANARY = "sk-canary-7f3a9c1e5b"
AUTH_FAILURE = json.dumps({"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                           "request_id": "r"}).encode()


def seen(*texts: object) -> None:
    for text in texts:
        assert CANARY not in str(text), f"API key leaked into: {str(text)[:200]}"


def error_texts(exc: BaseException) -> list[str]:
    return ["".join(traceback.format_exception(exc)), repr(exc), str(exc),
            repr(pickle.loads(pickle.dumps(exc)))]


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
async def test_canary_never_in_reprs_dumps_logs_errors_or_tracebacks(
    server: ReplayServer, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level: ours, httpx, openai
    ok = compat_stream(["t"], ["a"]) if protocol == "openai" else native_stream(
        [{"content": "a", "finish": "stop"}])
    server.queue(Reply(ok), Reply([AUTH_FAILURE], status=401,
                                  headers={"Content-Type": "application/json"}))
    server.default = Reply([b"boom"], status=500, headers={"Retry-After": "0"})
    llm = ChatQwenCodeInterpreter(api_key=CANARY, base_url=server.base_url, protocol=protocol,
                                  max_retries=1)
    seen(repr(llm), str(llm), llm.model_dump(), llm.model_dump_json(), dumpd(llm), dumps(llm),
         llm._identifying_params, llm._get_ls_params())
    assert llm.invoke("q").content == "a"
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"  # really used
    seen(repr(llm._get_session()), repr(llm._get_session().client()))
    for _ in range(2):  # a 401, then 5xx with a retry
        with pytest.raises(QwenCIError) as info:
            await llm.ainvoke("q")
        seen(*error_texts(info.value))
    records = caplog.records
    assert records, "logging was captured"
    seen(*(r.getMessage() for r in records), *(repr(r.args) for r in records),
         *(caplog.text,))


def test_canary_not_in_connection_errors_or_core_objects(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client(api_key=CANARY, base_url=closed_port_url(), max_retries=1, backoff=0.001)
    request = build([{"role": "user", "content": "q"}], Options(), "dashscope")
    with pytest.raises(QwenCIError) as info:
        collect(client.stream(request))
    seen(*error_texts(info.value), repr(client), str(client), caplog.text, repr(request))
    seen(repr(Session(api_key=CANARY)))


def test_canary_not_in_llamaindex_serialization_or_logs(
    server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    from llama_index.core.llms import ChatMessage

    from llamaindex_qwen_ci import QwenCodeInterpreter

    caplog.set_level(logging.DEBUG)
    server.queue(Reply(native_stream([{"content": "a", "finish": "stop"}])),
                 Reply([AUTH_FAILURE], status=401, headers={"Content-Type": "application/json"}))
    llm = QwenCodeInterpreter(api_key=CANARY, base_url=server.base_url)
    seen(repr(llm), str(llm), llm.to_dict(), llm.to_json(), llm.model_dump(),
         llm.model_dump_json(), llm.metadata, repr(llm._get_session()))
    assert llm.chat([ChatMessage(role="user", content="q")]).message.content == "a"
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    with pytest.raises(QwenCIError) as info:
        llm.chat([ChatMessage(role="user", content="q")])
    seen(*error_texts(info.value), caplog.text)


def test_canary_not_in_the_emulators_logs(caplog: pytest.LogCaptureFixture) -> None:
    from qwen_ci_server.emulator import Emulator

    caplog.set_level(logging.DEBUG)
    with Emulator(api_key=CANARY, pool_size=0) as emu:
        good = Client(api_key=CANARY, base_url=emu.base_url, max_retries=0)
        request = build([{"role": "user", "content": "hello"}], Options(), "dashscope")
        assert collect(good.stream(request)).text
        bad = Client(api_key=CANARY + "-wrong", base_url=emu.base_url, max_retries=0)
        with pytest.raises(QwenCIError) as info:
            collect(bad.stream(request))
        assert info.value.status == 401
        seen(*error_texts(info.value))
    assert caplog.records
    seen(caplog.text, *(repr(r.args) for r in caplog.records))
