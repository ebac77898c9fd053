"""A client that lives for days: each bug a long-running worker would hit, one test each.

- a garbage-collection pass inside ``session_for`` ran a dropped model's finalizer, which
  waited on the lock its own thread held: the thread hung forever;
- ``asyncio.run`` per job on one model kept each loop's pool (and socket) alive;
- a LlamaIndex model collected before its stream was read left the pool that stream
  reopened open;
- replacing a session left the pools of other, still running, loops open.

Connections are counted on the 127.0.0.1 replay server.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.llms import ChatMessage

from langchain_qwen_ci import ChatQwenCodeInterpreter
from llamaindex_qwen_ci import QwenCodeInterpreter
from tests.replay import ReplayServer, Reply, native_stream

ROOT = Path(__file__).resolve().parents[2]
ANSWER = native_stream([{"reasoning": "think"}, {"content": "42"}, {"finish": "stop"}])
KINDS = ["langchain", "llamaindex"]


def make(kind: str, server: ReplayServer, **fields: Any) -> Any:
    cls: Any = ChatQwenCodeInterpreter if kind == "langchain" else QwenCodeInterpreter
    return cls(api_key="sk-long", base_url=server.base_url, max_retries=0, **fields)


def call(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str(model.invoke([HumanMessage("q")]).content)
    return str(model.chat([ChatMessage(role="user", content="q")]).message.content)


async def acall(model: Any) -> str:
    if isinstance(model, ChatQwenCodeInterpreter):
        return str((await model.ainvoke([HumanMessage("q")])).content)
    return str((await model.achat([ChatMessage(role="user", content="q")])).message.content)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def answering(server: ReplayServer) -> ReplayServer:
    server.chooser = lambda _: Reply(ANSWER)
    return server


# ---------------------------------------------------------------- the deadlock


DEADLOCK = textwrap.dedent("""
    import faulthandler, sys
    faulthandler.dump_traceback_later(30, exit=True)  # a hang prints where, then exits 1
    from qwen_ci.session import session_for

    class Model:  # what session_for needs of a model: an identity
        pass

    for i in range(5000):
        model = Model()
        model.cycle = model  # only a garbage-collection pass frees it
        session_for(model, "sk-long", {"timeout": 30.0})
        del model
    print("done")
""")


def test_a_collection_inside_session_for_does_not_deadlock() -> None:
    # Models in reference cycles (held by an exception's traceback, a callback, a job
    # record) are freed by garbage-collection passes, which start at any allocation:
    # often inside session_for. Their finalizer must not wait on session_for's lock.
    # On a hang the child prints its stack and exits 1 after 30 s.
    done = subprocess.run([sys.executable, "-c", DEADLOCK], cwd=ROOT, capture_output=True,
                          text=True, timeout=90, check=False)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]


# ---------------------------------------------------------------- one loop per job


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_event_loop_per_job_leaves_nothing_open(answering: ReplayServer,
                                                      kind: str) -> None:
    model = make(kind, answering)
    assert asyncio.run(acall(model)) == "42"  # warm-up
    assert answering.wait_open_connections(0) == 0
    fds = open_fds()
    for _ in range(30):
        assert asyncio.run(acall(model)) == "42"
    assert answering.connections == 31  # a loop's pool cannot outlive its loop...
    assert answering.wait_open_connections(0) == 0  # ...and is closed when the loop ends
    assert open_fds() <= fds + 2
    assert model._get_session().closed


@pytest.mark.parametrize("kind", KINDS)
def test_loops_run_by_hand_close_their_pools_at_shutdown(answering: ReplayServer,
                                                          kind: str) -> None:
    model = make(kind, answering)
    for _ in range(5):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(acall(model)) == "42"
        assert answering.open_connections == 1  # warm while the loop lives
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        assert answering.wait_open_connections(0) == 0
    with asyncio.Runner() as runner:
        assert runner.run(acall(model)) == "42"
        assert runner.run(acall(model)) == "42"
    assert answering.connections == 6  # the runner's two calls shared one connection
    assert answering.wait_open_connections(0) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_replacing_a_session_closes_pools_on_other_running_loops(answering: ReplayServer,
                                                                 kind: str) -> None:
    loop = asyncio.new_event_loop()
    worker = threading.Thread(target=loop.run_forever, daemon=True)
    worker.start()
    try:
        model = make(kind, answering)
        assert asyncio.run_coroutine_threadsafe(acall(model), loop).result(10) == "42"
        assert answering.open_connections == 1
        model.timeout = 60.0  # new transport settings: the session is replaced
        assert call(model) == "42"  # from this thread, on the new session
        assert answering.wait_open_connections(1) == 1  # the other loop's pool closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        worker.join(5)
        loop.close()


# ---------------------------------------------------------------- dropped before reading


def resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_llamaindex_model_collected_before_its_stream_is_read(
    answering: ReplayServer,
) -> None:
    # stream_chat's generator does not hold the model: the model can be collected (its
    # session retired) before the stream sends anything
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        model = make("llamaindex", answering)
        stream = model.stream_chat([ChatMessage(role="user", content="q")])
        del model
        gc.collect()
        assert [c.message.content for c in stream][-1] == "42"
        assert answering.wait_open_connections(0) == 0  # the pool it opened is closed
        del stream
        gc.collect()
    assert resource_warnings(caught) == []


async def test_a_llamaindex_model_collected_before_its_async_stream_is_read(
    answering: ReplayServer,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        model = make("llamaindex", answering)
        stream = await model.astream_chat([ChatMessage(role="user", content="q")])
        del model
        gc.collect()
        await asyncio.sleep(0.01)  # the retired session's scheduled close runs
        assert [c.message.content async for c in stream][-1] == "42"
        assert await asyncio.to_thread(answering.wait_open_connections, 0) == 0
        del stream
        gc.collect()
    assert resource_warnings(caught) == []


# ---------------------------------------------------------------- shared pools


@pytest.mark.parametrize("kind", KINDS)
async def test_instances_with_the_same_settings_share_one_pool(answering: ReplayServer,
                                                               kind: str) -> None:
    base = make(kind, answering)
    assert call(base) == "42" and await acall(base) == "42"  # the pools live as long as it
    for i in range(10):  # a copy per request (LangGraph's configurable fields do this)
        copy = base.model_copy(update={"temperature": i / 10})
        assert call(copy) == "42" and await acall(copy) == "42"
        assert call(make(kind, answering, temperature=0.5)) == "42"  # a new instance
    assert answering.connections == 2  # one sync, one async: all warm
    other = make(kind, answering, timeout=30.0)  # other transport settings: its own pool
    assert call(other) == "42"
    assert answering.connections == 3
    assert other._get_session() is not base._get_session()
    assert base.model_copy()._get_session() is base._get_session()


# ---------------------------------------------------------------- DASHSCOPE_BASE_URL changes


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_made_after_the_base_url_env_changed_calls_the_new_server(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models without ``base_url`` read ``DASHSCOPE_BASE_URL``. A session made while it
    named another server (kept alive by an earlier model) was handed to a model made after
    it changed, which then called the old server (found by `make test-fast`: a docstring
    test reached a replay server an earlier test had stopped)."""
    cls: Any = ChatQwenCodeInterpreter if kind == "langchain" else QwenCodeInterpreter
    with ReplayServer() as old, ReplayServer() as new:
        old.chooser = new.chooser = lambda _: Reply(ANSWER)
        monkeypatch.setenv("DASHSCOPE_BASE_URL", old.base_url)
        earlier = cls(api_key="sk-long", max_retries=0)
        assert call(earlier) == "42"
        monkeypatch.setenv("DASHSCOPE_BASE_URL", new.base_url)
        later = cls(api_key="sk-long", max_retries=0)
        assert call(later) == "42"
        assert (len(old.requests), len(new.requests)) == (1, 1)
