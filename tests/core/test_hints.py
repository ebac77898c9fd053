"""Errors that say what to do: the advice fits the host, the model and the missing key."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from qwen_ci import (
    APITimeoutError,
    AuthenticationError,
    Client,
    IncompleteStreamError,
    InvalidRequestError,
    Options,
    QwenCIError,
    build,
    collect,
)
from qwen_ci.config import MODELS
from tests.replay import ReplayServer, Reply, native_stream

REJECTED = Reply([b'{"code":"InvalidApiKey","message":"Invalid API-key provided.",'
                  b'"request_id":"r1"}'], status=401, headers={"Content-Type": "application/json"})


def ask(client: Client, model: str = "qwen3-max-preview") -> None:
    request = build([{"role": "user", "content": "2**10?"}], Options(model=model), "dashscope")
    with client:
        collect(client.stream(request))


def test_wrong_key_at_a_local_emulator_gets_local_advice() -> None:
    from qwen_ci_server.emulator import Emulator

    with Emulator(api_key="sk-right", pool_size=0) as emu, pytest.raises(
        AuthenticationError
    ) as info:
        ask(Client(api_key="sk-wrong", base_url=emu.base_url, max_retries=0))
    text = str(info.value)
    assert info.value.status == 401 and info.value.code == "InvalidApiKey"
    assert f"local server at {emu.base_url}" in text and "--api-key" in text
    assert "region" not in text and "sk-wrong" not in text


def test_wrong_key_at_a_region_host_gets_region_advice() -> None:
    client = Client(api_key="sk-test", region="us-east-1")
    err = client._http_error(httpx.Response(401, content=REJECTED.chunks[0]))
    assert "(region us-east-1)" in str(err) and "belong to one region" in str(err)


def test_wrong_key_at_another_host_names_that_server(server: ReplayServer) -> None:
    server.default = REJECTED
    base = server.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(AuthenticationError) as info:
        ask(Client(api_key="sk-test", base_url=base, max_retries=0))
    assert "local server" in str(info.value)
    client = Client(api_key="sk-test", base_url="https://llm.example.org")
    err = client._http_error(httpx.Response(401, content=REJECTED.chunks[0]))
    assert "not a DashScope region host" in str(err) and "region" not in str(err).split(
        "not a DashScope")[0]


def test_missing_key_at_a_local_base_url_says_any_key_works() -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(api_key=None, base_url="http://127.0.0.1:8765")
    assert "accepts any key" in str(info.value) and "sk-local" in str(info.value)
    with pytest.raises(InvalidRequestError) as hosted:
        Client(api_key=None)
    assert "DASHSCOPE_API_KEY" in str(hosted.value) and "any key" not in str(hosted.value)


@pytest.mark.parametrize("model", ["qwen-plus", "qwen-max", "qwen-plus-latest", "qwen-turbo",
                                   "qwen-max-2025-01-25", "qwen3-vl-plus", "qwq-plus"])
def test_model_without_the_interpreter_is_refused_before_sending(
    server: ReplayServer, model: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ask(Client(api_key="sk-test", base_url=server.base_url), model)
    text = str(info.value)
    assert f"{model!r} has no code interpreter" in text
    assert all(name in text for name in MODELS)
    assert server.requests == []


@pytest.mark.parametrize("model", ["qwen3-max-preview", "qwen3.5-plus", "my-selfhosted-model"])
def test_interpreter_models_and_unknown_names_pass(model: str) -> None:
    build([{"role": "user", "content": "hi"}], Options(model=model), "dashscope")


def test_langchain_and_llamaindex_refuse_it_too(server: ReplayServer) -> None:
    from langchain_qwen_ci import ChatQwenCodeInterpreter
    from llamaindex_qwen_ci import QwenCodeInterpreter

    # at construction (pydantic's ValidationError, a ValueError, with the same message)
    with pytest.raises(ValidationError, match="has no code interpreter"):
        ChatQwenCodeInterpreter(model="qwen-plus", api_key="sk", base_url=server.base_url)
    with pytest.raises(ValidationError, match="has no code interpreter"):
        QwenCodeInterpreter(model="qwen-max", api_key="sk", base_url=server.base_url)
    # a model switched after construction is refused by the call, before sending
    with pytest.raises(InvalidRequestError, match="has no code interpreter"):
        ChatQwenCodeInterpreter(api_key="sk", base_url=server.base_url).model_copy(
            update={"model_name": "qwen-plus"}).invoke("2**10?")
    with pytest.raises(InvalidRequestError, match="has no code interpreter"):
        QwenCodeInterpreter(api_key="sk", base_url=server.base_url).complete(
            "2**10?", model="qwen-max")
    assert server.requests == []


def test_retries_are_quiet_without_logging_configured(server: ReplayServer) -> None:
    """A user program without logging setup sees no retry chatter on stderr."""
    import subprocess
    import sys

    server.default = Reply([b'{"code":"InternalError","message":"boom","request_id":"r"}'],
                           status=500, headers={"Content-Type": "application/json"})
    script = (
        "from qwen_ci import Client, Options, build, collect, QwenCIError\n"
        f"c = Client(api_key='sk', base_url={server.base_url!r}, max_retries=1, backoff=0.01)\n"
        "r = build([{'role': 'user', 'content': 'x'}], Options(), 'dashscope')\n"
        "try:\n    collect(c.stream(r))\nexcept QwenCIError as e:\n    print(type(e).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == "ServerError", done.stderr
    assert len(server.requests) == 2  # it did retry
    assert done.stderr == ""


# ------------------------------------------------------------------ week-one errors


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_a_mistyped_model_gets_the_closest_names(protocol: str) -> None:
    from qwen_ci_server.emulator import Emulator

    with Emulator(pool_size=0) as emu:
        client = Client(api_key="sk-local", base_url=emu.base_url, max_retries=0)
        request = build([{"role": "user", "content": "2**10?"}],
                        Options(model="qwen3-max-preveiw"), protocol)
        with client, pytest.raises(QwenCIError) as info:
            collect(client.stream(request))
        with Client(api_key="sk-local", base_url=emu.base_url, max_retries=0) as other, \
                pytest.raises(QwenCIError) as far:
            collect(other.stream(build([{"role": "user", "content": "hi"}],
                                       Options(model="llama-70b"), protocol)))
    err = info.value
    assert err.status in (400, 404) and err.request_id  # the service's fields are kept
    assert "did you mean 'qwen3-max-preview'" in str(err)
    assert err.hint is not None and err.hint.startswith("Model 'qwen3-max-preveiw' is unknown")
    assert "models with the code interpreter include qwen3-max-preview" in str(far.value)


def test_a_known_model_the_server_does_not_serve_is_not_called_a_typo(
    server: ReplayServer,
) -> None:
    server.default = Reply([b'{"code":"InvalidParameter","message":"Model not exist.",'
                            b'"request_id":"r"}'], status=400,
                           headers={"Content-Type": "application/json"})
    with pytest.raises(QwenCIError) as info:
        ask(Client(api_key="sk", base_url=server.base_url, max_retries=0), "qwen3-max")
    hint = info.value.hint or ""
    assert hint.startswith("Model 'qwen3-max' is not served here") and "did you mean" not in hint
    assert "other models with the code interpreter: qwen" in hint


def test_the_hint_survives_the_langchain_translation() -> None:
    from langchain_qwen_ci import ChatQwenCodeInterpreter
    from qwen_ci_server.emulator import Emulator

    with Emulator(pool_size=0) as emu, pytest.raises(QwenCIError) as info:
        ChatQwenCodeInterpreter(model="qwen3.5-plsu", api_key="sk-local", base_url=emu.base_url,
                                max_retries=0).invoke("hi")
    assert "did you mean 'qwen3.5-plus'" in str(info.value)


def test_a_read_timeout_names_the_limit_and_the_setting(server: ReplayServer) -> None:
    frames = native_stream([{"content": "ok"}, {"finish": "stop"}])
    server.default = Reply([b"", *frames], delay=1.0)  # headers, then a second of silence
    with pytest.raises(APITimeoutError) as info:
        ask(Client(api_key="sk", base_url=server.base_url, timeout=0.3, max_retries=0))
    text = str(info.value)
    assert "no data for 0.3 s (the read timeout)" in text and "timeout=<seconds>" in text
    assert server.base_url in text
    server.default = Reply(frames, delay=1.0)  # output started, then silence
    with pytest.raises(IncompleteStreamError) as late:
        ask(Client(api_key="sk", base_url=server.base_url, timeout=0.3, max_retries=0))
    assert "no data for 0.3 s (the read timeout)" in str(late.value)
    assert "timeout=<seconds>" in str(late.value)


def test_a_connect_timeout_names_its_cap() -> None:
    from qwen_ci.client import _timeout_message

    text = _timeout_message(httpx.ConnectTimeout("x"), 300.0, 10.0)
    assert "no connection within 10 s (the connect timeout" in text


def test_the_missing_key_hint_is_one_working_fix(server: ReplayServer) -> None:
    """Following the hint as written gives a working client, not a second error."""
    import re

    with pytest.raises(InvalidRequestError) as info:
        Client(api_key=None)
    text = str(info.value)
    fix = re.search(r"pass both base_url='([^']+)' and api_key='([^']+)'", text)
    assert fix is not None, text
    assert "DASHSCOPE_API_KEY" in text and "api_key='sk-...'" in text
    Client(base_url=fix.group(1), api_key=fix.group(2))  # no second error
    # the same pair against a local server that takes any key answers
    server.default = Reply(native_stream([{"content": "ok", "finish": "stop"}]))
    ask(Client(base_url=server.base_url, api_key=fix.group(2)))
    assert server.requests[0].headers["authorization"] == "Bearer sk-local"
