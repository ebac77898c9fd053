"""Request limits of the emulator: oversized bodies, too many messages and deeply nested
JSON get a clear 400, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.validation import MAX_DEPTH, MAX_MESSAGES
from tests.emulator.conftest import COMPAT, NATIVE, compat_body, native_body

HEADERS = {"Authorization": "Bearer k", "X-DashScope-SSE": "enable"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(pool_size=0, max_body_bytes=LIMIT) as emulator:
        yield emulator


def post(emu: Emulator, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(emu.base_url + path, content=content, headers=HEADERS, timeout=30)


def still_serving(emu: Emulator) -> None:
    answer = post(emu, NATIVE, json.dumps(native_body("hello")).encode())
    assert answer.status_code == 200 and "finish_reason" in answer.text


def error_of(response: httpx.Response) -> dict[str, object]:
    """The error of a 400, or of an SSE error frame marked 400 (the service's shape for
    parameter errors on streaming native requests)."""
    text = response.text
    assert response.status_code == 400 or ":HTTP_STATUS/400" in text, text[:300]
    payload = json.loads(text[text.index("{"):].splitlines()[0])
    inner = payload.get("error", payload)
    assert isinstance(inner, dict)
    return inner


@pytest.mark.parametrize("path", [NATIVE, COMPAT])
def test_oversized_body_is_a_clear_400(emu: Emulator, path: str) -> None:
    builder = native_body if path == NATIVE else compat_body
    big = json.dumps(builder("x" * (2 * LIMIT))).encode()
    for content in (big, iter([big[i:i + 4096] for i in range(0, len(big), 4096)])):
        response = post(emu, path, content)  # with Content-Length, then chunked
        error = error_of(response)
        assert error["code"] in ("InvalidParameter", "invalid_parameter_error")
        assert "more than the limit of 65536 bytes" in str(error["message"])
    still_serving(emu)


@pytest.mark.parametrize("path", [NATIVE, COMPAT])
def test_too_many_messages_is_a_clear_400(emu: Emulator, path: str) -> None:
    body = native_body("hi") if path == NATIVE else compat_body("hi")
    many = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)
    if path == NATIVE:
        body["input"]["messages"] = many
    else:
        body["messages"] = many
    response = post(emu, path, json.dumps(body).encode())
    assert f"more than the limit of {MAX_MESSAGES}" in str(error_of(response)["message"])
    still_serving(emu)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 5, 10_000])
def test_deeply_nested_json_is_a_clear_400(emu: Emulator, levels: int) -> None:
    nested = "[" * levels + "]" * levels
    raw = ('{"model":"qwen3-max-preview","input":{"messages":[{"role":"user","content":"hi",'
           f'"x":{nested}}}]}}}}').encode()
    response = post(emu, NATIVE, raw)
    assert f"nested more than {MAX_DEPTH} levels" in str(error_of(response)["message"])
    still_serving(emu)


# ------------------------------------------------------------------ #22: the front door


def test_a_json_breadth_bomb_is_refused_before_parsing(emu: Emulator) -> None:
    """Finding 2: an 8 MiB body of ``{}`` cost about 410 MiB and 8 s of event loop. The
    values are counted with byte scans and the body refused before any parse."""
    with Emulator(pool_size=0) as big:  # the default body limit (16 MiB)
        bomb = (b'{"model":"qwen3-max","input":{"messages":['
                + b"{}," * ((8 << 20) // 3) + b"{}]}}")
        response = post(big, NATIVE, bomb)
        error = error_of(response)
        assert "JSON values" in str(error["message"])
        assert httpx.get(big.base_url + "/health", timeout=30).json()["status"] == "ok"
        still_serving(big)


def test_text_full_of_commas_is_not_mistaken_for_a_bomb(emu: Emulator) -> None:
    csv = "\n".join(",".join(["1", "2", "3", "4"]) for _ in range(5000))  # 15,000 commas
    body = native_body("sum the columns:\n" + csv[: LIMIT // 2])
    response = post(emu, NATIVE, json.dumps(body).encode())
    assert "JSON values" not in response.text


def test_a_stalled_body_gets_a_408(emu: Emulator) -> None:
    """Finding 8: the emulator held stalled bodies with no body timeout."""
    import socket

    with Emulator(pool_size=0, body_timeout=1) as slow:
        with socket.create_connection(("127.0.0.1", slow.port), timeout=60) as sock:
            sock.sendall(b"POST " + NATIVE.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_idle_connections_cannot_keep_clients_out() -> None:
    """Finding 6: idle sockets reopened as the header timeout closed them kept
    --max-connections full, and real requests got 503."""
    import socket

    with Emulator(pool_size=0, max_connections=8) as small:
        idle = [socket.create_connection(("127.0.0.1", small.port), timeout=30)
                for _ in range(8)]
        try:
            for _ in range(3):
                answer = httpx.get(small.base_url + "/health", timeout=30)
                assert answer.status_code == 200, answer.text
                idle.append(socket.create_connection(("127.0.0.1", small.port), timeout=30))
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize("path", [NATIVE, COMPAT])
def test_a_lone_surrogate_is_a_clear_400(emu: Emulator, path: str) -> None:
    """Finding 9: a lone surrogate in a prompt gave a 500 with a traceback (``serve``
    could not encode it for the upstream)."""
    body = native_body("hi \ud800 there") if path == NATIVE else compat_body("hi \ud800 there")
    raw = json.dumps(body).encode()  # ensure_ascii: "\\ud800"
    assert b"\\ud800" in raw
    assert "lone UTF-16 surrogate" in str(error_of(post(emu, path, raw))["message"])
    paired = native_body("smile \U0001f600") if path == NATIVE else compat_body("smile \U0001f600")
    assert "surrogate" not in post(emu, path, json.dumps(paired).encode()).text


def test_content_length_with_transfer_encoding_is_refused_and_closed(emu: Emulator) -> None:
    """Finding 9: both framings on one request were framed by Transfer-Encoding and the
    connection kept open (RFC 9112 says close it)."""
    import socket

    with socket.create_connection(("127.0.0.1", emu.port), timeout=30) as sock:
        sock.sendall(f"POST {COMPAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):  # ends: the server closed the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"connection: close" in answer.lower()
