"""``qwen-ci serve`` with an upstream that is down: checked at start (warn or refuse), the
upstream named in errors, and retries not multiplied between client and server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from qwen_ci import Client, Options, ServiceUnavailableError, build, collect
from tests.replay import ReplayServer, Reply

UNAVAILABLE = Reply([b'{"error": {"message": "overloaded", "type": "server_error"}}'],
                    status=503, headers={"Content-Type": "application/json"})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(upstream: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "qwen_ci.cli", "serve", "--upstream-base-url", upstream,
         "--upstream-model", "m", "--port", "0", "--pool-size", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_refuse_names_the_upstream_and_exits() -> None:
    upstream = f"http://127.0.0.1:{closed_port()}/v1"
    proc = serve(upstream, "--upstream-check", "refuse")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert f"the upstream at {upstream} is unreachable" in err
    assert "--upstream-check warn" in err


def test_warn_starts_and_requests_name_the_upstream() -> None:
    upstream = f"http://127.0.0.1:{closed_port()}/v1"
    proc = serve(upstream)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert url
        request = build([{"role": "user", "content": "2**10?"}], Options(model="m"),
                        "dashscope")
        with pytest.raises(ServiceUnavailableError) as info, Client(
            api_key="sk", base_url=url.group(1), max_retries=0
        ) as client:
            collect(client.stream(request))
        assert f"upstream unreachable at {upstream}" in str(info.value)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert f"warning: the upstream at {upstream} is unreachable" in err


def test_retries_are_not_multiplied() -> None:
    """The client retries (2); the server by default does not retry on top of it."""
    with ReplayServer() as upstream:
        upstream.default = UNAVAILABLE
        proc = serve(upstream.base_url + "/v1")
        posts = _attempts(proc, upstream)
    assert posts == 3  # one upstream call per client attempt (was 3 x 3)


def _attempts(proc: subprocess.Popen[str], server: ReplayServer) -> int:
    try:
        assert proc.stdout is not None
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert url
        request = build([{"role": "user", "content": "2**10?"}], Options(model="m"),
                        "dashscope")
        with pytest.raises(ServiceUnavailableError), Client(
            api_key="sk", base_url=url.group(1), max_retries=2, backoff=0.01
        ) as client:
            collect(client.stream(request))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    return len([r for r in server.requests if r.path.endswith("/chat/completions")])
