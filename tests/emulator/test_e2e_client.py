"""The core client (sync and async, both protocols) against the emulator."""

from __future__ import annotations

import asyncio

import pytest

from qwen_ci import AsyncClient, Client, CodeRun, Options, acollect, build, collect
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import KEY, leftovers

BIG = "77269364466549865653073473388030061522211723"


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_sync_client(emulator: Emulator, protocol: str) -> None:
    with Client(api_key=KEY, base_url=emulator.base_url) as client:
        request = build([{"role": "system", "content": "Be exact."},
                         {"role": "user", "content": "123的21次方是多少？"}], Options(), protocol)
        result = collect(client.stream(request))
    assert BIG in result.text and result.reasoning
    assert result.finish is not None and result.finish.model == "qwen3-max-preview"
    assert result.finish.request_id
    assert result.usage is not None and result.usage.reasoning_tokens > 0
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    if protocol == "dashscope":
        assert result.code_runs == [CodeRun(0, "123**21")]


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
def test_async_client_concurrent_requests(emulator: Emulator, protocol: str) -> None:
    async def main() -> list[str]:
        async with AsyncClient(api_key=KEY, base_url=emulator.base_url) as client:
            prompts = ["What is 2**10?", "What is 3**5?", "What is 10 factorial?"]
            results = await asyncio.gather(*(
                acollect(client.stream(build([{"role": "user", "content": p}], Options(),
                                             protocol)))
                for p in prompts
            ))
        return [r.text for r in results]

    texts = asyncio.run(main())
    assert "1024" in texts[0] and "243" in texts[1] and "3628800" in texts[2]
    assert leftovers() == set()


def test_multimodal_model_through_the_client(emulator: Emulator) -> None:
    client = Client(api_key=KEY, base_url=emulator.base_url)
    request = build([{"role": "user", "content": "What is 7 factorial?"}],
                    Options(model="qwen3.5-plus"), "dashscope")
    assert request.path.endswith("multimodal-generation/generation")
    result = collect(client.stream(request))
    assert "5040" in result.text and result.code_runs[0].code.endswith("math.factorial(7)")


def test_conversation_history_and_stop(emulator: Emulator) -> None:
    client = Client(api_key=KEY, base_url=emulator.base_url)
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "What is 2 + 3 * 4?"}]
    result = collect(client.stream(build(messages, Options(), "dashscope")))
    assert "14" in result.text
    stopped = collect(client.stream(build(messages, Options(stop=["is:"]), "dashscope")))
    assert stopped.text == result.text[: result.text.index("is:")]
