"""A replay server: real HTTP on 127.0.0.1 serving prepared frames, recording requests.

Each request takes the next queued :class:`Reply` (or the default one). Bodies are sent
with chunked transfer encoding, one HTTP chunk per piece, with optional pauses, so the
client sees the stream arrive the way the service sends it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared"
RECORDED = SHARED / "fixtures" / "recorded"


@dataclass
class Reply:
    """What the server answers to one request."""

    chunks: Sequence[bytes] = ()
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "text/event-stream;charset=UTF-8"}
    )
    delay: float = 0.0  # seconds between pieces
    cut_after: int | None = None  # drop the connection after this many pieces


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    client_port: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each frame leaves at once (no 40 ms delayed-ACK stall)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.owner.changed:
            self.server.owner.connections += 1
            self.server.owner.open_connections += 1
            self.server.owner.sockets.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.owner.changed:
            self.server.owner.open_connections -= 1
            self.server.owner.sockets.discard(self.connection)
            self.server.owner.changed.notify_all()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(
                Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw,
                         self.client_address[1])
            )
            if owner.replies:
                reply: Reply | None = owner.replies.popleft()
            elif owner.chooser is not None:
                reply = owner.chooser(owner.requests[-1])
            else:
                reply = owner.default
        if reply is None:
            reply = Reply([b'{"code":"NoReply","message":"replay server has no reply queued"}'],
                          status=500, headers={"Content-Type": "application/json"})
        try:
            self._send(reply, owner)
        except (BrokenPipeError, ConnectionResetError):
            with owner.changed:
                owner.disconnects += 1
                owner.changed.notify_all()
            self.close_connection = True

    def _send(self, reply: Reply, owner: ReplayServer) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for index, piece in enumerate(reply.chunks):
            if reply.cut_after is not None and index >= reply.cut_after:
                self._drop()
                return
            if reply.delay and index:
                owner.stopped.wait(reply.delay)
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
        if reply.cut_after is not None and reply.cut_after >= len(reply.chunks):
            self._drop()
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_POST

    def _drop(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ReplayServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients going away mid-request are part of the tests; anything else is shown."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


class ReplayServer:
    """Serve queued replies on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.disconnects = 0  # replies cut short because the client went away
        self.connections = 0  # TCP connections accepted so far
        self.open_connections = 0  # TCP connections open now
        self.sockets: set[socket.socket] = set()  # the open connections, closed by stop()
        self.chooser: Callable[[Recorded], Reply] | None = None  # picks a reply per request
        self.replies: deque[Reply] = deque()
        self.default: Reply | None = None
        self.lock = threading.Lock()
        self.changed = threading.Condition()
        self.stopped = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def wait_open_connections(self, at_most: int, timeout: float = 3.0) -> int:
        """Wait until at most ``at_most`` connections are open; return the count."""
        with self.changed:
            self.changed.wait_for(lambda: self.open_connections <= at_most, timeout)
            return self.open_connections

    def wait_disconnects(self, count: int, timeout: float = 3.0) -> int:
        """Wait until ``count`` replies were cut short by the client going away."""
        with self.changed:
            self.changed.wait_for(lambda: self.disconnects >= count, timeout)
            return self.disconnects

    def queue(self, *replies: Reply) -> ReplayServer:
        with self.lock:
            self.replies.extend(replies)
        return self

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the open connections too: a stopped server must not
        keep answering on a client's pooled keep-alive connection (a later server on the
        same port would then miss that client's requests)."""
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()
        with self.changed:
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- frame builders


def native_frame(payload: dict[str, Any], *, index: int = 1, status: int = 200,
                 event: str = "result") -> bytes:
    """One native SSE event, byte for byte as the service frames it."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id:{index}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


def compat_chunk(payload: dict[str, Any] | str) -> bytes:
    """One compatible-mode SSE chunk."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


REQUEST_ID = "0c1f6a55-7d1c-9e62-a3b1-5f0d4f7e9a10"


def native_stream(
    steps: Iterable[dict[str, Any]],
    *,
    request_id: str = REQUEST_ID,
    input_tokens: int = 100,
) -> list[bytes]:
    """Frames for a scripted native stream.

    Each step is a dict with optional ``reasoning``, ``content`` (str or list of parts),
    ``tool_info`` (list of codes: the snapshot), ``finish`` (finish reason) and
    ``input_tokens``. Usage is cumulative, as the service sends it.
    """
    frames: list[bytes] = []
    out = reasoning_tokens = 0
    inp = input_tokens
    for index, step in enumerate(steps, start=1):
        reasoning = step.get("reasoning", "")
        content = step.get("content", "")
        out += 1 + len(str(reasoning)) // 4 + len(str(content)) // 4
        if reasoning:
            reasoning_tokens += 1 + len(reasoning) // 4
        inp = step.get("input_tokens", inp)
        output: dict[str, Any] = {
            "choices": [
                {
                    "message": {"content": content, "reasoning_content": reasoning,
                                "role": "assistant"},
                    "finish_reason": step.get("finish", "null"),
                }
            ]
        }
        usage: dict[str, Any] = {
            "total_tokens": inp + out,
            "output_tokens": out,
            "input_tokens": inp,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if step.get("tool_info") is not None:
            codes = step["tool_info"]
            output["tool_info"] = [
                {"code_interpreter": {"code": code}, "type": "code_interpreter"} for code in codes
            ]
            usage["plugins"] = {"code_interpreter": {"count": len(codes)}}
        frames.append(
            native_frame({"output": output, "usage": usage, "request_id": request_id},
                         index=index)
        )
    return frames


CI = "single-generation-message-with-code-interpreter-sse"
QUESTION = "123的21次方是多少？"
TOOL_INFO = [{"type": "code_interpreter", "code_interpreter": {"code": "123**21"}}]

# two code runs, each first announced with empty code, thinking before/between/after them
TWO_RUNS = native_stream([
    {"reasoning": "First "},
    {"reasoning": "compute."},
    {"tool_info": [""]},
    {"tool_info": ["x = 2**10"]},
    {"reasoning": "Then ", "tool_info": ["x = 2**10"], "input_tokens": 180},
    {"tool_info": ["x = 2**10", ""]},
    {"tool_info": ["x = 2**10", "print(x // 4)"]},
    {"reasoning": "done.", "tool_info": ["x = 2**10", "print(x // 4)"], "input_tokens": 260},
    {"content": "x is 1024", "tool_info": ["x = 2**10", "print(x // 4)"]},
    {"content": "; x//4 is 256.", "tool_info": ["x = 2**10", "print(x // 4)"]},
    {"finish": "stop", "tool_info": ["x = 2**10", "print(x // 4)"]},
])
TWO_RUNS_INFO = [
    {"type": "code_interpreter", "code_interpreter": {"code": "x = 2**10"}},
    {"type": "code_interpreter", "code_interpreter": {"code": "print(x // 4)"}},
]


COMPAT_ID = "chatcmpl-2f96ef0b-5924-4dfc-b768-4d53ec538b4e"


def compat_stream(
    reasoning: Sequence[str],
    content: Sequence[str],
    *,
    model: str = "qwen3-max-2026-01-23",
    usage: dict[str, Any] | None = None,
    done: bool = True,
    finish: str = "stop",
) -> list[bytes]:
    """Chunks of a compatible-mode stream, ending with the usage chunk and [DONE]."""
    base = {"object": "chat.completion.chunk", "created": 1761899724,
            "system_fingerprint": None, "model": model, "id": COMPAT_ID}
    chunks = [compat_chunk({**base, "usage": None, "choices": [
        {"delta": {"content": None, "role": "assistant", "reasoning_content": ""},
         "index": 0, "logprobs": None, "finish_reason": None}]})]
    for piece in reasoning:
        chunks.append(compat_chunk({**base, "usage": None, "choices": [
            {"finish_reason": None, "logprobs": None,
             "delta": {"content": None, "reasoning_content": piece}, "index": 0}]}))
    for piece in content:
        chunks.append(compat_chunk({**base, "usage": None, "choices": [
            {"delta": {"content": piece, "reasoning_content": None}, "finish_reason": None,
             "index": 0, "logprobs": None}]}))
    chunks.append(compat_chunk({**base, "usage": None, "choices": [
        {"finish_reason": finish, "delta": {"content": "", "reasoning_content": None},
         "index": 0, "logprobs": None}]}))
    chunks.append(compat_chunk({**base, "choices": [], "usage": usage or {
        "prompt_tokens": 719, "completion_tokens": 245, "total_tokens": 964,
        "completion_tokens_details": {"reasoning_tokens": 153}}}))
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return chunks


# ---------------------------------------------------------------- recorded traffic


def recorded_body(name: str) -> bytes:
    """A recorded response body, with the event separators the service sends.

    The reasoning recording was saved without blank lines between events; they are
    re-inserted. A leading byte-order mark is kept (the client must cope with it).
    """
    raw = (RECORDED / f"{name}.response.body.txt").read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw[3:] if bom else raw
    lines = text.replace(b"\r\n", b"\n").split(b"\n")
    out: list[bytes] = []
    for line in lines:
        if line.startswith(b"id:") and out and out[-1] != b"":
            out.append(b"")
        out.append(line)
    while out and out[0] == b"":
        out.pop(0)
    body = b"\n".join(out).rstrip(b"\n") + b"\n\n"
    return (b"\xef\xbb\xbf" if bom else b"") + body


def recorded_status(name: str) -> int:
    head = (RECORDED / f"{name}.response.header.txt").read_bytes().lstrip(b"\xef\xbb\xbf")
    return int(head.split(b" ", 2)[1])


def split_events(body: bytes) -> list[bytes]:
    """Cut a body into one piece per SSE event (how the service flushes)."""
    pieces = body.split(b"\n\n")
    return [p + b"\n\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def recorded_reply(name: str, *, per_event: bool = True, delay: float = 0.0) -> Reply:
    body = recorded_body(name)
    status = recorded_status(name)
    ctype = "text/event-stream;charset=UTF-8" if b"data:" in body else "application/json"
    return Reply(split_events(body) if per_event else [body], status=status,
                 headers={"Content-Type": ctype}, delay=delay)


class SilentServer:
    """Accepts TCP connections and never answers (for timeouts)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._conns:
            conn.close()
        self._sock.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def recorded_texts(name: str) -> tuple[str, str]:
    """(answer, thinking) of a recording, read naively line by line: a test oracle
    independent of the client's SSE decoder and parsers."""
    answer, thinking = [], []
    raw = (RECORDED / f"{name}.response.body.txt").read_text("utf-8-sig")
    for line in raw.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])["output"]["choices"][0]["message"]
            answer.append(message.get("content") or "")
            thinking.append(message.get("reasoning_content") or "")
    return "".join(answer), "".join(thinking)


# ---------------------------------------------------------------- Responses API frames
# Built from ../shared/PROTOCOL.md section 6: items through output_item.added/done, the
# code_interpreter_call.* events, reasoning under either event name, usage.x_tools.

RESPONSE_ID = "3b2a7c1e-8f3d-4b6a-9a51-2d7e4c6f1a08"


def responses_event(payload: dict[str, Any], *, index: int, status: int | None = 200,
                    named: bool = True) -> bytes:
    """One Responses SSE event: ``id:``, ``event:`` (the type), optionally the native
    ``:HTTP_STATUS/NNN`` comment line, and ``data:``."""
    lines = [f"id:{index}"]
    if named:
        lines.append(f"event:{payload.get('type', 'error')}")
    if status is not None:
        lines.append(f":HTTP_STATUS/{status}")
    lines.append("data:" + json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _item_id(counter: list[int]) -> str:
    counter[0] += 1
    return f"msg_{counter[0]:08x}-5d1c-4e62-a3b1-5f0d4f7e9a10"


def responses_stream(
    steps: Iterable[tuple[Any, ...]],
    *,
    model: str = "qwen3.5-plus",
    reasoning_event: str = "response.reasoning_summary_text.delta",
    http_status: bool = True,
    container_id: str = "cntr_7f3e2a",
    complete: bool = True,
    x_tools: dict[str, Any] | None = None,
    input_tokens: int = 120,
) -> list[bytes]:
    """Events of a scripted Responses stream, one piece per event.

    Steps: ``("reasoning", [pieces])``, ``("text", [pieces])``,
    ``("code", code, logs)`` (an item added with its code, the
    ``code_interpreter_call.in_progress/interpreting/completed`` events, the item done
    with ``outputs``), ``("search", query, [urls])``, ``("extract", [urls], goal, output)``.
    ``x_tools`` defaults to the counts of the tool steps (absent when there are none).
    """
    seq = [0]
    ids = [0]
    out: list[dict[str, Any]] = []
    frames: list[bytes] = []
    counts: dict[str, int] = {}
    reasoning_tokens = output_tokens = 0
    created = {"id": RESPONSE_ID, "object": "response", "created_at": 1767225600.123,
               "model": model, "status": "in_progress", "output": []}

    def emit(payload: dict[str, Any]) -> None:
        payload = {**payload, "sequence_number": seq[0]}
        frames.append(responses_event(payload, index=seq[0] + 1,
                                      status=200 if http_status else None))
        seq[0] += 1

    emit({"type": "response.created", "response": created})
    emit({"type": "response.in_progress", "response": created})
    for step in steps:
        position = len(out)
        kind = step[0]
        item_id = _item_id(ids)
        base = {"output_index": position, "item_id": item_id}
        if kind == "reasoning":
            text = "".join(step[1])
            reasoning_tokens += len(step[1])
            emit({"type": "response.output_item.added", "output_index": position,
                  "item": {"id": item_id, "type": "reasoning", "summary": []}})
            for piece in step[1]:
                emit({"type": reasoning_event, **base, "summary_index": 0, "delta": piece})
            emit({"type": reasoning_event.replace(".delta", ".done"), **base,
                  "summary_index": 0, "text": text})
            item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                                    "summary": [{"type": "summary_text", "text": text}]}
        elif kind == "text":
            text = "".join(step[1])
            output_tokens += len(step[1])
            emit({"type": "response.output_item.added", "output_index": position,
                  "item": {"id": item_id, "type": "message", "role": "assistant",
                           "status": "in_progress", "content": []}})
            emit({"type": "response.content_part.added", **base, "content_index": 0,
                  "part": {"type": "output_text", "text": "", "annotations": []}})
            for piece in step[1]:
                emit({"type": "response.output_text.delta", **base, "content_index": 0,
                      "delta": piece})
            emit({"type": "response.output_text.done", **base, "content_index": 0,
                  "text": text})
            part = {"type": "output_text", "text": text, "annotations": []}
            emit({"type": "response.content_part.done", **base, "content_index": 0,
                  "part": part})
            item = {"id": item_id, "type": "message", "role": "assistant",
                    "status": "completed", "content": [part]}
        elif kind == "code":
            _, code, logs = step
            counts["code_interpreter"] = counts.get("code_interpreter", 0) + 1
            emit({"type": "response.output_item.added", "output_index": position,
                  "item": {"id": item_id, "type": "code_interpreter_call", "code": code,
                           "outputs": [], "container_id": container_id,
                           "status": "in_progress"}})
            for phase in ("in_progress", "interpreting", "completed"):
                emit({"type": f"response.code_interpreter_call.{phase}", **base})
            item = {"id": item_id, "type": "code_interpreter_call", "code": code,
                    "outputs": [{"type": "logs", "logs": logs}],
                    "container_id": container_id, "status": "completed"}
        elif kind == "search":
            _, query, urls = step
            counts["web_search"] = counts.get("web_search", 0) + 1
            emit({"type": "response.output_item.added", "output_index": position,
                  "item": {"id": item_id, "type": "web_search_call", "status": "in_progress",
                           "action": {"type": "search", "query": query}}})
            for phase in ("in_progress", "searching", "completed"):
                emit({"type": f"response.web_search_call.{phase}", **base})
            item = {"id": item_id, "type": "web_search_call", "status": "completed",
                    "action": {"type": "search", "query": query,
                               "sources": [{"type": "url", "url": u} for u in urls]}}
        elif kind == "extract":
            _, urls, goal, output = step
            counts["web_extractor"] = counts.get("web_extractor", 0) + 1
            emit({"type": "response.output_item.added", "output_index": position,
                  "item": {"id": item_id, "type": "web_extractor_call", "urls": urls,
                           "goal": goal, "status": "in_progress"}})
            item = {"id": item_id, "type": "web_extractor_call", "urls": urls, "goal": goal,
                    "output": output, "status": "completed"}
        else:
            raise ValueError(f"unknown step {kind!r}")
        emit({"type": "response.output_item.done", "output_index": position, "item": item})
        out.append(item)
    if complete:
        usage: dict[str, Any] = {
            "input_tokens": input_tokens, "output_tokens": output_tokens + reasoning_tokens,
            "total_tokens": input_tokens + output_tokens + reasoning_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "x_details": [{"input_tokens": input_tokens,
                           "output_tokens": output_tokens + reasoning_tokens,
                           "x_billing_type": "response_api"}],
        }
        tools = x_tools if x_tools is not None else {k: {"count": v} for k, v in counts.items()}
        if tools:
            usage["x_tools"] = tools
        emit({"type": "response.completed",
              "response": {**created, "status": "completed", "output": out, "usage": usage}})
    return frames


#: one run: thinking, the code with its printed output, thinking again, the answer
RESP_CODE = "print(123**21)"
RESP_LOGS = "77269364466549865653073473388030061522211723\n"
RESP_ONE_RUN = [
    ("reasoning", ["The user wants ", "123**21."]),
    ("code", RESP_CODE, RESP_LOGS),
    ("reasoning", ["It printed the value."]),
    ("text", ["123**21 = ", "77269364466549865653073473388030061522211723."]),
]
RESP_ONE_RUN_INFO = [{"type": "code_interpreter", "code_interpreter": {
    "code": RESP_CODE, "outputs": [{"type": "logs", "logs": RESP_LOGS}],
    "container_id": "cntr_7f3e2a", "status": "completed"}}]
