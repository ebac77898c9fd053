"""A function-calling chat model on 127.0.0.1, speaking OpenAI's chat completions.

It drives the agent recipes in tests: a real HTTP server that real clients (langchain-
openai's ``ChatOpenAI``) talk to unchanged. Its policy is scripted: for a currency
question it calls the rate tool, then the interpreter tool with the product to compute,
then answers with the interpreter's result; with no matching tool it answers in text.
Streaming requests get the same message as one chunk.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_QUESTION = re.compile(r"how many euros are ([\d.]+) ([A-Za-z]{3})", re.IGNORECASE)


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]


def decide(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message for a chat completions request."""
    messages = body["messages"]
    tools = _tool_names(body)
    question = next((m["content"] for m in messages if m["role"] == "user"), "")
    results = [m for m in messages if m["role"] == "tool"]
    match = _QUESTION.search(question if isinstance(question, str) else "")
    rate_tool = next((t for t in tools if "rate" in t), None)
    compute_tool = next((t for t in tools if "python" in t or "interpreter" in t), None)
    if match is None or rate_tool is None or compute_tool is None:
        return {"role": "assistant", "content": "I have no tool for this."}
    amount, currency = match.group(1), match.group(2).upper()
    if not results:
        return _call(rate_tool, {"currency": currency})
    if len(results) == 1:
        rate = results[0]["content"]
        return _call(compute_tool, {"task": f"What is {amount} * {rate}? Use code."})
    return {"role": "assistant",
            "content": f"{amount} {currency} is {results[-1]['content']} (in euros)."}


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)}}]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.owner.requests.append(body)
        message = decide(body)
        reason = "tool_calls" if message.get("tool_calls") else "stop"
        base = {"id": f"chatcmpl-{uuid.uuid4()}", "created": int(time.time()),
                "model": body.get("model", "fake"), "system_fingerprint": None}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if body.get("stream"):
            delta = dict(message)
            if delta.get("tool_calls"):
                delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(delta["tool_calls"])]
            chunks = [
                {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]},
            ]
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(data.encode(), "text/event-stream")
            return
        payload = {**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}]}
        self._send(json.dumps(payload).encode(), "application/json")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FunctionCallingServer


class FunctionCallingServer:
    """Serve the scripted function-calling model; ``base_url`` ends with ``/v1``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FunctionCallingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
