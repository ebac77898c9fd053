"""A frame server for the benchmarks: HTTP/1.1 on 127.0.0.1 in its own process.

It streams prepared frames as fast as the socket allows, so that the client is what is
measured: each body is encoded once (one HTTP chunk per SSE event, as the service
flushes them) and written with a single ``sendall``. Keep-alive is honoured, so pool
reuse shows in the connection count.

Routes (whatever follows the prefix is ignored, so any client path works below it):

- ``POST /s/<native|compat|responses>/<n>/...``: the ``n``-frame stream of that protocol;
- ``GET /_stats``: ``{"connections": accepted so far, "requests": served so far}``.

Run as a script it prints ``PORT <port>`` and serves until its standard input closes
(so it never outlives the benchmark). :class:`FrameServer` does that from the parent.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from frames import PROTOCOLS, frames  # noqa: E402

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream;charset=UTF-8\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"x-request-id: 0c1f6a55-7d1c-9e62-a3b1-5f0d4f7e9a10\r\n"
    b"\r\n"
)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.stats_connections = 0  # connections made to read the stats: not counted
        self.bodies: dict[tuple[str, int], bytes] = {}

    def body(self, protocol: str, n: int) -> bytes:
        key = (protocol, n)
        with self.lock:
            cached = self.bodies.get(key)
        if cached is not None:
            return cached
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames(protocol, n))
        encoded += b"0\r\n\r\n"
        with self.lock:
            self.bodies[key] = encoded
        return encoded


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _serve_connection(conn: socket.socket, state: _State) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].decode("latin-1").split(" ", 2)
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"connection" and value.strip().lower() == b"close":
                    close = True
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[length:]
            parts = path.split("/")
            if method == "GET" and path.startswith("/_stats"):
                with state.lock:
                    state.stats_connections += 1
                    stats = {
                        "connections": state.connections - state.stats_connections,
                        "requests": state.requests,
                    }
                conn.sendall(_response("200 OK", json.dumps(stats).encode()))
            elif len(parts) > 3 and parts[1] == "s" and parts[2] in PROTOCOLS:
                with state.lock:
                    state.requests += 1
                body = state.body(parts[2], int(parts[3]))
                conn.sendall(_SSE_HEAD)
                conn.sendall(body)
            else:
                msg = b'{"code":"NotFound","message":"benchmark server: unknown path"}'
                conn.sendall(_response("404 Not Found", msg))
            if close:
                return


def serve(sock: socket.socket, state: _State) -> None:
    """Accept connections until the socket is closed, one thread each."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with state.lock:
            state.connections += 1
        threading.Thread(target=_guarded, args=(conn, state), daemon=True).start()


def _guarded(conn: socket.socket, state: _State) -> None:
    with contextlib.suppress(OSError, ValueError):
        _serve_connection(conn, state)


def main() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    state = _State()
    for spec in sys.argv[1:]:  # prebuild bodies: "native:10000"
        protocol, _, n = spec.partition(":")
        state.body(protocol, int(n))
    threading.Thread(target=serve, args=(sock, state), daemon=True).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    sock.close()


class FrameServer:
    """The frame server in a child process; use as a context manager.

    Example:
        >>> with FrameServer(["native:1000"]) as srv:  # doctest: +SKIP
        ...     url = srv.url("native", 1000)
    """

    def __init__(self, prebuild: list[str] | None = None) -> None:
        self._prebuild = prebuild or []
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FrameServer:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *self._prebuild],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the frame server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, protocol: str, n: int) -> str:
        """The base URL under which every path serves the ``n``-frame ``protocol`` stream."""
        return f"{self.root}/s/{protocol}/{n}"

    def stats(self) -> dict[str, Any]:
        """Connections accepted and requests served so far."""
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"GET /_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        result: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
        return result


if __name__ == "__main__":
    main()
