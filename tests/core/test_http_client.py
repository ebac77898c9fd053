"""Your own HTTP client: ``http_client`` / ``http_async_client`` (the names langchain-openai
uses) in the core and both adapters, used for every request, retries included.

The clients here carry a real httpx transport that sends each request to the 127.0.0.1
replay server, the way a proxy or gateway would: the models point at a host that does not
exist (``.invalid``), so a request that bypassed the given client could not succeed.
"""

from __future__ import annotations

import gc
import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.llms import ChatMessage
from pydantic import ValidationError

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from qwen_ci import APITimeoutError, AsyncClient, Client, Options, acollect, build, collect
from qwen_ci.errors import InvalidRequestError
from qwen_ci.session import Session
from tests.replay import ReplayServer, Reply, SilentServer, native_stream

GATEWAY = "https://qwen-gateway.invalid"
ANSWER = native_stream([{"reasoning": "think"}, {"content": "42"}, {"finish": "stop"}])
UNAVAILABLE = Reply([json.dumps({"code": "ModelUnavailable", "message": "busy"}).encode()],
                    status=503, headers={"Content-Type": "application/json"})
REQUEST = build([{"role": "user", "content": "q"}], Options(), "dashscope")


def _reroute(request: httpx.Request, target: httpx.URL, seen: list[str]) -> None:
    seen.append(f"{request.method} {request.url}")
    request.url = request.url.copy_with(scheme=target.scheme, host=target.host,
                                        port=target.port)


class Reroute(httpx.HTTPTransport):
    """Sends every request to ``target`` (a gateway, say) and lists what passed."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = httpx.URL(target)
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _reroute(request, self.target, self.seen)
        return super().handle_request(request)


class AsyncReroute(httpx.AsyncHTTPTransport):
    """The async :class:`Reroute`."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = httpx.URL(target)
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _reroute(request, self.target, self.seen)
        return await super().handle_async_request(request)


def clients(server: ReplayServer) -> tuple[httpx.Client, httpx.AsyncClient]:
    headers = {"X-Gateway": "g1"}
    return (httpx.Client(transport=Reroute(server.base_url), headers=headers),
            httpx.AsyncClient(transport=AsyncReroute(server.base_url), headers=headers))


def seen(client: httpx.Client | httpx.AsyncClient) -> list[str]:
    transport = client._transport
    assert isinstance(transport, Reroute | AsyncReroute)
    return transport.seen


def test_the_core_client_sends_every_attempt_through_it(server: ReplayServer) -> None:
    sync, _ = clients(server)
    server.queue(UNAVAILABLE, Reply(ANSWER))  # a retry goes the same way
    client = Client(api_key="sk-test", base_url=GATEWAY, http_client=sync, backoff=0.01)
    assert collect(client.stream(REQUEST)).text == "42"
    url = f"POST {GATEWAY}{REQUEST.path}"
    assert seen(sync) == [url, url]
    assert [r.headers["x-gateway"] for r in server.requests] == ["g1", "g1"]
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
    client.close()
    assert not sync.is_closed  # yours to close
    sync.close()


async def test_the_async_core_client_sends_every_attempt_through_it(
    server: ReplayServer,
) -> None:
    _, async_client = clients(server)
    server.queue(UNAVAILABLE, Reply(ANSWER))
    client = AsyncClient(api_key="sk-test", base_url=GATEWAY, http_client=async_client,
                         backoff=0.01)
    assert (await acollect(client.stream(REQUEST))).text == "42"
    assert len(seen(async_client)) == 2 and len(server.requests) == 2
    await client.aclose()
    assert not async_client.is_closed
    await async_client.aclose()


def make(kind: str, server: ReplayServer, sync: httpx.Client,
         async_client: httpx.AsyncClient, **fields: Any) -> Any:
    cls: Any = ChatQwenCodeInterpreter if kind == "langchain" else QwenCodeInterpreter
    return cls(api_key="sk-test", base_url=GATEWAY, http_client=sync,
               http_async_client=async_client, max_retries=0, **fields)


def call(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return "".join(str(c.content) for c in model.stream([HumanMessage("q")]))
    return str(model.chat([ChatMessage(role="user", content="q")]).message.content)


async def acall(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str((await model.ainvoke([HumanMessage("q")])).content)
    chunks = [c async for c in await model.astream_chat([ChatMessage(role="user",
                                                                     content="q")])]
    return str(chunks[-1].message.content)


@pytest.mark.parametrize("kind", ["langchain", "llamaindex"])
async def test_the_adapters_use_them_for_every_call_and_never_close_them(
    server: ReplayServer, kind: str
) -> None:
    server.chooser = lambda _: Reply(ANSWER)
    sync, async_client = clients(server)
    model = make(kind, server, sync, async_client)
    for _ in range(2):
        assert call(model) == "42"
        assert await acall(model) == "42"
    assert len(seen(sync)) == 2 and len(seen(async_client)) == 2
    assert len(server.requests) == 4
    assert {r.headers["x-gateway"] for r in server.requests} == {"g1"}

    model.timeout = 30.0  # new transport settings: the session is replaced, not the client
    assert call(model) == "42" and await acall(model) == "42"
    del model
    gc.collect()
    assert not sync.is_closed and not async_client.is_closed
    sync.close()
    await async_client.aclose()


@pytest.mark.parametrize("kind", ["langchain", "llamaindex"])
def test_instances_given_one_client_share_its_pool(server: ReplayServer, kind: str) -> None:
    server.chooser = lambda _: Reply(ANSWER)
    sync, async_client = clients(server)
    first = make(kind, server, sync, async_client, temperature=0.1)
    models = [first, make(kind, server, sync, async_client, temperature=0.5),
              first.model_copy(update={"temperature": 0.9})]
    for _ in range(3):
        for model in models:
            assert call(model) == "42"
    assert len(server.requests) == 9
    assert server.connections == 1  # one warm connection for all three
    sync.close()


@pytest.mark.parametrize("kind", ["langchain", "llamaindex", "core"])
def test_the_models_timeout_applies_through_a_given_client(kind: str) -> None:
    with SilentServer() as silent, httpx.Client(timeout=None) as sync:
        if kind == "core":
            client = Client(api_key="sk-test", base_url=silent.base_url, timeout=0.3,
                            max_retries=0, http_client=sync)
            with pytest.raises(APITimeoutError):
                collect(client.stream(REQUEST))
            return
        cls: Any = ChatQwenCodeInterpreter if kind == "langchain" else QwenCodeInterpreter
        model = cls(api_key="sk-test", base_url=silent.base_url, timeout=0.3, max_retries=0,
                    http_client=sync)
        with pytest.raises(APITimeoutError):
            call(model)


def test_the_wrong_kind_of_client_is_refused_before_any_request() -> None:
    async_client = httpx.AsyncClient()
    with pytest.raises(InvalidRequestError, match=r"http_client must be an httpx\.Client"):
        Client(api_key="sk-test", http_client=async_client)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match=r"must be an httpx\.AsyncClient"):
        AsyncClient(api_key="sk-test", http_client=httpx.Client())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match=r"http_client must be an httpx\.Client"):
        Session(api_key="sk-test", http_client=async_client).client()  # type: ignore[arg-type]
    for cls in (ChatQwenCodeInterpreter, QwenCodeInterpreter):
        with pytest.raises(ValidationError, match="http_client"):
            cls(api_key="sk-test", http_client=async_client)
        with pytest.raises(ValidationError, match="http_async_client"):
            cls(api_key="sk-test", http_async_client=httpx.Client())


def test_a_given_client_is_never_serialized() -> None:
    from langchain_core.load import dumps

    sync = httpx.Client()
    lc = ChatQwenCodeInterpreter(api_key="sk-test", http_client=sync)
    li = QwenCodeInterpreter(api_key="sk-test", http_client=sync)
    assert "http_client" not in dumps(lc)
    assert "http_client" not in li.to_json() and "http_client" not in li.model_dump()
    sync.close()
