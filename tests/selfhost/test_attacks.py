"""The self-hosted server's front door, attacked as in issue #14 (loopback only).

Each test is one row of the issue and failed before the fix: fail-open isolation, memory
before authentication, slowloris and idle connections, the fault header, the request
deadline. Sizes are bounded for a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_ci_server.emulator.faults import parse_faults
from qwen_ci_server.emulator.wire import ServiceError
from qwen_ci_server.sandbox import isolation as iso
from qwen_ci_server.selfhost import SelfHost
from tests.emulator.conftest import COMPAT, NATIVE, compat_body, native_body
from tests.sandbox.test_attacks import peak_rss, peak_rss_reset
from tests.selfhost.conftest import KEY, selfhost
from tests.selfhost.upstream import MODEL, FakeUpstream, stream

HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable",
           "Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstream) -> Iterator[None]:
    upstream.reset(lambda body, n: stream(content=["fine"]))
    yield
    upstream.reset()


def raw_request(server: SelfHost, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.sendall(head.encode() + body)
    return sock


def read_status(sock: socket.socket, within: float) -> int | None:
    """The HTTP status the server answered within ``within`` seconds (None: nothing;
    0: closed without an answer)."""
    sock.settimeout(within)
    try:
        data = sock.recv(4096)
    except (TimeoutError, ConnectionResetError):
        return None
    if not data:
        return 0
    return int(data.split(b" ", 2)[1])


def closed_within(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


# ---------------------------------------------------------------- row 1: fail closed


def serve_command(upstream: FakeUpstream, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qwen_ci.cli", "serve", "--upstream-base-url",
            upstream.base_url, "--upstream-model", MODEL, "--port", "0", "--pool-size", "0",
            *extra]


def without_bwrap(tmp_path: Path, script: str | None = None) -> dict[str, str]:
    """An environment whose PATH has no bwrap, or a fake one printing ``script``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if script is not None:
        fake = bin_dir / "bwrap"
        fake.write_text(script)
        fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["PATH"] = str(bin_dir)
    return env


def test_serve_refuses_to_start_without_isolation(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Row 1: without bubblewrap `serve` started anyway (one warning line) and the code ran
    as the server's user, able to read its keys. It refuses now, naming the reason."""
    done = subprocess.run(serve_command(upstream), env=without_bwrap(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refuses to start" in done.stderr and "bwrap is not installed" in done.stderr
    assert "--isolation none" in done.stderr and "qwen-ci serve on" not in done.stdout


def test_serve_names_the_real_reason_bubblewrap_fails(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Row 1: bubblewrap present but unable to start (as in a default Docker container)."""
    broken = "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    done = subprocess.run(serve_command(upstream), env=without_bwrap(tmp_path, broken),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "No permissions to create new namespace" in done.stderr


def test_serve_runs_unisolated_only_when_asked(upstream: FakeUpstream, tmp_path: Path) -> None:
    """`--isolation none` is the explicit way to run without a sandbox, with a warning."""
    proc = subprocess.Popen(serve_command(upstream, "--isolation", "none"),
                            env=without_bwrap(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline() + proc.stdout.readline()
        assert "qwen-ci serve on http://127.0.0.1:" in banner and "sandbox: rlimits" in banner
        assert "WARNING" in banner and "keys" in banner
    finally:
        proc.terminate()
        proc.wait(30)


def test_emulator_on_a_network_address_refuses_without_isolation(tmp_path: Path) -> None:
    """Row 1: the emulator bound to a non-loopback address fails closed too. The address
    is TEST-NET-1 (never on this machine): the check comes before any bind."""
    command = [sys.executable, "-m", "qwen_ci.cli", "emulator", "--host", "192.0.2.1",
               "--port", "0", "--pool-size", "0"]
    done = subprocess.run(command, env=without_bwrap(tmp_path), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "refuses to start" in done.stderr and "bwrap is not installed" in done.stderr


def test_programmatic_server_fails_closed(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 1: `SelfHost` (and `create_serve_app`) refuse an unisolated sandbox as well."""
    iso._detect_bwrap.cache_clear()
    monkeypatch.setattr(iso.shutil, "which", lambda name: None)
    try:
        with pytest.raises(RuntimeError, match="refuses to start"), \
                selfhost(upstream.base_url):
            pass
    finally:
        iso._detect_bwrap.cache_clear()


# ---------------------------------------------------------------- row 4: before the key


def test_wrong_key_is_refused_before_the_body(upstream: FakeUpstream) -> None:
    """Row 4: the body (up to 8 MB) was read in full before the key was checked. Now the
    401 comes from the headers while the client still holds its body."""
    with selfhost(upstream.base_url) as server:
        head = (f"POST {NATIVE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-wrong\r\n"
                "Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n")
        with contextlib.closing(raw_request(server, head, b"{" + b" " * 1000)) as sock:
            assert read_status(sock, 3) == 401


@pytest.mark.timeout(120)
def test_unauthenticated_bodies_cost_no_memory(upstream: FakeUpstream) -> None:
    """Row 4: 100 connections with a wrong key each sending 7.9 MB took the server from
    88 MiB to 1.1 GiB. Here 40 x 4 MB (160 MB) on the in-process server."""
    with selfhost(upstream.base_url, max_body_bytes=8 << 20) as server:
        head = (f"POST {COMPAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-wrong\r\n"
                "Content-Type: application/json\r\nContent-Length: 7900000\r\n\r\n")
        chunk = b" " * (1 << 20)
        base = peak_rss_reset()
        sockets = []
        try:
            for _ in range(40):
                sock = socket.create_connection((server.host, server.port), timeout=5)
                sockets.append(sock)
                sock.sendall(head.encode())
                with contextlib.suppress(OSError):  # the server may answer and close first
                    for _ in range(4):
                        sock.sendall(chunk)
            time.sleep(1)
            grew = peak_rss() - base
        finally:
            for sock in sockets:
                sock.close()
    assert grew < 64 << 20, f"the server grew by {grew >> 20} MiB"


def test_bodies_held_at_once_are_bounded(upstream: FakeUpstream) -> None:
    """Row 4 (with the key): request bodies being received count against one budget."""
    with selfhost(upstream.base_url, max_body_bytes=2 << 20,
                  max_buffered_bytes=3 << 20) as server:
        head = (f"POST {NATIVE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n")
        first = raw_request(server, head, b" " * 1_900_000)
        second = raw_request(server, head, b" " * 1_900_000)
        with first, second:
            statuses = [read_status(first, 2), read_status(second, 2)]
        assert 429 in statuses


def test_a_stalled_body_times_out(upstream: FakeUpstream) -> None:
    """Row 6: a client that stops sending its body gets 408 after ``body_timeout``."""
    with selfhost(upstream.base_url, body_timeout=1.0) as server:
        head = (f"POST {NATIVE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.closing(raw_request(server, head, b"{")) as sock:
            assert read_status(sock, 5) == 408


# ---------------------------------------------------------------- row 6: connections


def test_slowloris_headers_are_cut_off(upstream: FakeUpstream) -> None:
    """Row 6: 300 slowloris connections were never closed."""
    with selfhost(upstream.base_url, header_timeout=1.0) as server:
        sockets = [raw_request(server, f"POST {NATIVE} HTTP/1.1\r\nHost: x\r\n")
                   for _ in range(20)]
        try:
            assert all(closed_within(sock, 4) for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()


def test_connections_beyond_the_limit_push_out_idle_ones(upstream: FakeUpstream) -> None:
    """Row 6: 1,000 idle connections starved accept() (EMFILE) and a real request timed
    out; then (#22 finding 6) idle sockets reopened as fast as the header timeout closed
    them kept ``max_connections`` full and real requests got 503. Beyond the limit a new
    connection now pushes out the connection idle the longest (503 only when every
    connection is serving a request); idle ones are closed after ``header_timeout``."""
    with selfhost(upstream.base_url, max_connections=20, max_concurrency=2, max_queue=2,
                  header_timeout=1.5) as server:
        idle = [socket.create_connection((server.host, server.port)) for _ in range(20)]
        try:
            time.sleep(0.3)
            answer = httpx.post(server.base_url + COMPAT, json=compat_body("hi"),
                                headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            assert answer.status_code == 200 and "fine" in answer.text
            assert closed_within(idle[0], 5)  # the oldest made room
            assert all(closed_within(sock, 5) for sock in idle)
        finally:
            for sock in idle:
                sock.close()


# ---------------------------------------------------------------- row 9


def test_the_fault_header_is_ignored_by_serve(upstream: FakeUpstream) -> None:
    """Row 9: `X-Emulator-Fault` was honoured by serve (`slow=15000` held a slot 45 s)."""
    with selfhost(upstream.base_url) as server:
        answer = httpx.post(server.base_url + COMPAT, json=compat_body("hi"),
                            headers={"Authorization": f"Bearer {KEY}",
                                     "X-Emulator-Fault": "server-error, slow=15000"},
                            timeout=30)
    assert answer.status_code == 200 and '"content":"fine"' in answer.text.replace(" ", "")


def test_the_emulator_caps_the_slow_fault() -> None:
    """Row 9: the emulator keeps the fault header (a test tool) but caps its delay."""
    assert parse_faults("slow=5000").slow == 5.0
    with pytest.raises(ServiceError, match="at most slow=5000"):
        parse_faults("slow=15000")


def test_a_request_has_a_deadline(upstream: FakeUpstream) -> None:
    """Row 9: no per-request deadline (8 rounds x 30 s). Now a request ends with an error
    frame at ``request_timeout`` and its upstream call and sandbox are released."""
    words = [f"w{i} " for i in range(40)]
    upstream.reset(lambda body, n: stream(content=words, delay=0.25))  # about 10 s
    with selfhost(upstream.base_url, request_timeout=2.0) as server:
        started = time.monotonic()
        with httpx.stream("POST", server.base_url + NATIVE, json=native_body("slow"),
                          headers=HEADERS, timeout=30) as response:
            text = "".join(response.iter_text())
        took = time.monotonic() - started
    assert took < 6, took
    events = [line[5:] for line in text.splitlines() if line.startswith("data:")]
    last = json.loads(events[-1])
    assert last["code"] == "RequestTimeOut" and "2 s" in last["message"]


def test_a_deadline_before_any_output_is_a_504(upstream: FakeUpstream) -> None:
    """Row 9: a request silent until its deadline gets a 504 in the protocol's shape."""
    upstream.reset(lambda body, n: stream(content=["late"], delay=4.0))
    with selfhost(upstream.base_url, request_timeout=1.0) as server:
        answer = httpx.post(server.base_url + COMPAT, json=compat_body("x"),
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert answer.status_code == 504
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == "request_timeout"


# ---------------------------------------------------------------- #22 finding 9


def test_requests_without_the_key_cannot_flood_the_access_log(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """About 480 bytes of access log per request without the key, with no rate limit:
    anyone could fill the disk. Now at most 10 lines a second (a burst of 10), and the
    next line says how many were left out."""
    import logging

    from qwen_ci_server.selfhost.gate import UNAUTHORIZED_LOG_RATE

    caplog.set_level(logging.INFO, logger="qwen_ci_server.selfhost.access")
    with selfhost(upstream.base_url) as server, httpx.Client(timeout=30) as client:
        started = time.monotonic()
        for _ in range(200):
            answer = client.post(server.base_url + COMPAT, json=compat_body("hi"),
                                 headers={"Authorization": "Bearer sk-wrong"})
            assert answer.status_code == 401
        elapsed = time.monotonic() - started
        time.sleep(1.2)
        client.post(server.base_url + COMPAT, json=compat_body("hi"),
                    headers={"Authorization": "Bearer sk-wrong"})
    lines = [r for r in caplog.records if r.name == "qwen_ci_server.selfhost.access"]
    assert len(lines) <= UNAUTHORIZED_LOG_RATE * (elapsed + 2) + 1
    left_out = sum(getattr(r, "fields", {}).get("unauthorized_not_logged", 0) for r in lines)
    assert left_out + len(lines) == 201  # every request counted, logged or left out
    assert left_out > 0 or elapsed > 200 / UNAUTHORIZED_LOG_RATE - 2
