"""The Emulator class, the app, and the core's independence from the emulator extra."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx

from qwen_ci import Client, Options, build, collect
from qwen_ci_server.emulator import Emulator, create_app
from qwen_ci_server.emulator.model import Answer, Model, Turn
from tests.emulator.conftest import leftovers


def test_context_manager_free_port_and_clean_stop() -> None:
    with Emulator(pool_size=1) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:") and emu.port > 0
        health = httpx.get(emu.base_url + "/health").json()
        assert health["status"] == "ok" and health["model"] == "scripted"
        assert health["isolation"] in ("bwrap", "rlimits")
        emu.wait_warm()
        assert emu.sandbox_pids()
        port = emu.port
    assert emu._thread is not None and not emu._thread.is_alive()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # nobody listens there any more
        sock.listen()
    assert leftovers() == set()


def test_two_emulators_side_by_side() -> None:
    with Emulator(pool_size=0) as one, Emulator(pool_size=0) as two:
        assert one.port != two.port
        for emu in (one, two):
            client = Client(api_key="k", base_url=emu.base_url)
            request = build([{"role": "user", "content": "Hello"}], Options(), "dashscope")
            assert collect(client.stream(request)).text.startswith("Hello!")


class Echo:
    """A custom model through the one-method protocol."""

    name = "echo"

    async def turn(self, turn: Turn):  # type: ignore[no-untyped-def]
        yield Answer(f"echo: {turn.prompt}")


def test_a_custom_model_plugs_in() -> None:
    model: Model = Echo()
    assert isinstance(model, Model)
    with Emulator(model=model, pool_size=0) as emu:
        client = Client(api_key="k", base_url=emu.base_url)
        request = build([{"role": "user", "content": "ping"}], Options(), "openai")
        result = collect(client.stream(request))
    assert result.text == "echo: ping" and result.reasoning == ""


def test_app_routes_are_the_services_paths() -> None:
    paths = {route.path for route in create_app().routes}  # type: ignore[attr-defined]
    assert {"/api/v1/services/aigc/text-generation/generation",
            "/api/v1/services/aigc/multimodal-generation/generation",
            "/compatible-mode/v1/chat/completions"} <= paths


def test_core_does_not_import_the_emulator_extra() -> None:
    code = ("import sys, qwen_ci, qwen_ci.cli; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jupyter_client', 'zmq', "
            "'yaml', 'qwen_ci_server.emulator', 'qwen_ci_server.sandbox') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
