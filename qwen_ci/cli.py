"""The ``qwen-ci`` command: ``emulator`` (a local DashScope), ``serve`` (self-hosted: any
OpenAI-compatible model with a local sandbox) and ``ask`` (one question).

::

    qwen-ci emulator [--host 127.0.0.1] [--port 8765] [--api-key KEY] [--script FILE]
    qwen-ci serve --upstream-base-url URL --upstream-model NAME [--upstream-api-key-env VAR]
    qwen-ci ask "123的21次方是多少？" [--base-url URL] [--protocol dashscope|openai]

The emulator and ``serve`` need the ``emulator`` extra; ``ask`` renders with rich when
installed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

from qwen_ci.config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_MODEL, PROTOCOLS, REGION_HOSTS

EXTRA_HINT = "pip install 'qwen-code-interpreter[emulator]'"
LOCAL_KEY = "sk-emulator"
"""Key ``ask`` sends to a local URL when none is configured."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-ci", description="Qwen's code interpreter: local emulator and CLI."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    emu = sub.add_parser("emulator", help="run the local DashScope emulator",
                         description="Serve DashScope's code interpreter endpoints locally.")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8765)
    emu.add_argument("--api-key", default=None,
                     help="require this key (default: accept any key)")
    emu.add_argument("--script", default=None, help="YAML/JSON scenario file")
    emu.add_argument("--pool-size", type=int, default=2, help="warm kernels (default 2)")
    emu.add_argument("--timeout", type=float, default=30.0,
                     help="wall-clock seconds per code run (default 30)")
    emu.add_argument("--memory-mb", type=int, default=2048,
                     help="address space per sandbox process in MiB (default 2048)")
    emu.add_argument("--cpu", type=int, default=120,
                     help="CPU seconds per kernel (default 120)")
    emu.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto",
                     help="sandbox isolation (default: bubblewrap when it works)")
    emu.add_argument("--frame-delay", type=float, default=0.02,
                     help="seconds between frames (default 0.02; 0 for fastest)")
    emu.add_argument("--log-level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"])

    _serve_parser(sub)

    ask = sub.add_parser("ask", help="ask one question and render the stream",
                         description="Ask a question; show thinking, code and answer.")
    ask.add_argument("prompt")
    ask.add_argument("--base-url", default=None,
                     help=f"service root (default: ${BASE_URL_ENV} or the region's host)")
    ask.add_argument("--region", default=None, choices=sorted(REGION_HOSTS))
    ask.add_argument("--protocol", choices=list(PROTOCOLS), default="dashscope")
    ask.add_argument("--model", default=DEFAULT_MODEL)
    ask.add_argument("--api-key", default=None, help=f"default: ${API_KEY_ENV}")
    ask.add_argument("--emulator", action="store_true",
                     help="start an emulator in this process and ask it")
    ask.add_argument("--timeout", type=float, default=None)
    return parser


def _serve_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="serve the code interpreter with your own model (self-hosted)",
        description="DashScope's code interpreter endpoints backed by any OpenAI-compatible "
                    "model with function calling, and a local sandbox.")
    up = serve.add_argument_group("upstream model")
    up.add_argument("--upstream-base-url", required=True,
                    help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    up.add_argument("--upstream-model", required=True, help="the upstream's model name")
    up.add_argument("--upstream-api-key-env", default=None, metavar="VAR",
                    help="environment variable holding the upstream's API key")
    up.add_argument("--upstream-timeout", type=float, default=600.0,
                    help="seconds to wait for the upstream's next byte (default 600)")
    up.add_argument("--upstream-max-retries", type=int, default=2,
                    help="retries of an upstream call before its first byte (default 2)")
    up.add_argument("--upstream-extra-body", default=None, metavar="JSON",
                    help="JSON object merged into every upstream request")
    up.add_argument("--no-echo-reasoning", action="store_true",
                    help="do not send a round's reasoning back with its tool call")
    up.add_argument("--instructions-file", default=None,
                    help="system instruction on using the tool (default: built in)")
    srv = serve.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8765)
    srv.add_argument("--api-key", default=None, help="require this key (default: any key)")
    srv.add_argument("--api-key-env", default=None, metavar="VAR",
                     help="require the key held by this environment variable")
    srv.add_argument("--max-rounds", type=int, default=8,
                     help="code runs per request at most (default 8)")
    srv.add_argument("--max-concurrency", type=int, default=8,
                     help="requests served at once (default 8)")
    srv.add_argument("--max-queue", type=int, default=32,
                     help="requests waiting for a slot; beyond: 429 Throttling (default 32)")
    srv.add_argument("--queue-timeout", type=float, default=60.0,
                     help="seconds a request may wait for a slot (default 60)")
    srv.add_argument("--max-body-mb", type=float, default=8.0,
                     help="largest request body in MiB (default 8)")
    srv.add_argument("--graceful-timeout", type=int, default=30,
                     help="on SIGTERM, seconds in-flight requests get to finish (default 30)")
    srv.add_argument("--log-level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"])
    srv.add_argument("--log-format", default="json", choices=["json", "text"])
    srv.add_argument("--log-content", action="store_true",
                     help="log what is sent upstream (prompts, code) at debug level")
    box = serve.add_argument_group("sandbox")
    box.add_argument("--pool-size", type=int, default=2, help="warm kernels (default 2)")
    box.add_argument("--timeout", type=float, default=30.0,
                     help="wall-clock seconds per code run (default 30)")
    box.add_argument("--memory-mb", type=int, default=2048,
                     help="address space per sandbox process in MiB (default 2048)")
    box.add_argument("--cpu", type=int, default=120, help="CPU seconds per kernel (default 120)")
    box.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto")


# ---------------------------------------------------------------------- emulator


def _emulator(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401

        from qwen_ci.emulator.app import EmulatorConfig, create_app
        from qwen_ci.emulator.server import bind_socket, uvicorn_server
        from qwen_ci.sandbox import Limits, detect_isolation
    except ImportError as exc:
        print(f"qwen-ci emulator needs the emulator extra ({exc.name} is missing): "
              f"{EXTRA_HINT}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    try:
        limits = Limits(timeout=args.timeout, memory=args.memory_mb << 20, cpu=args.cpu)
        isolation = detect_isolation(args.isolation)
        config = EmulatorConfig(
            api_key=args.api_key, script=args.script, pool_size=args.pool_size,
            limits=limits, isolation=args.isolation, frame_delay=args.frame_delay,
        )
        app = create_app(config)
        sock = bind_socket(args.host, args.port)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"qwen-ci emulator: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    url = f"http://{args.host}:{port}"
    model = "script " + str(args.script) if args.script else "scripted (deterministic)"
    print(f"qwen-ci emulator on {url}  model: {model}  sandbox: {isolation.mode}", flush=True)
    print(f"  export {BASE_URL_ENV}={url} {API_KEY_ENV}={args.api_key or LOCAL_KEY}",
          flush=True)
    server = uvicorn_server(app, args.log_level)
    # uvicorn re-raises Ctrl-C after its graceful shutdown
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from qwen_ci.selfhost.cli import run
    except ImportError as exc:
        print(f"qwen-ci serve needs the emulator extra ({exc.name} is missing): {EXTRA_HINT}",
              file=sys.stderr)
        return 2
    return run(args)


# ---------------------------------------------------------------------- ask


def _is_local(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    return host in ("127.0.0.1", "localhost", "::1")


class _Renderer:
    """Thinking dimmed, code highlighted, answer as Markdown (rich), else plain text."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.console: Any = None
        try:
            from rich.console import Console

            self.console = Console(file=out, highlight=False, soft_wrap=True)
        except ImportError:
            self.console = None
        self.thinking = False
        self.answer: list[str] = []

    def reasoning(self, text: str) -> None:
        if not self.thinking:
            self._print("[thinking]", style="dim bold")
            self.thinking = True
        self._print(text, style="dim", end="")

    def code(self, index: int, code: str) -> None:
        self._print("")
        self.thinking = False
        if self.console is not None:
            from rich.panel import Panel
            from rich.syntax import Syntax

            self.console.print(Panel(Syntax(code, "python", theme="ansi_dark"),
                                     title=f"code run {index + 1}", title_align="left"))
        else:
            self.out.write(f"[code run {index + 1}]\n{code}\n")

    def text(self, text: str) -> None:
        if self.thinking:
            self._print("")
            self.thinking = False
        self.answer.append(text)

    def finish(self, usage: Any, request_id: str | None) -> None:
        answer = "".join(self.answer)
        if self.console is not None:
            from rich.markdown import Markdown
            from rich.rule import Rule

            self.console.print(Rule("answer", style="bold"))
            self.console.print(Markdown(answer))
        else:
            self.out.write(f"[answer]\n{answer}\n")
        if usage is not None:
            runs = usage.plugins.get("code_interpreter", {}).get("count", 0)
            line = (
                f"tokens: input {usage.input_tokens}, output {usage.output_tokens} "
                f"(reasoning {usage.reasoning_tokens}), total {usage.total_tokens}; "
                f"code runs: {runs}"
            )
            if request_id:
                line += f"; request_id {request_id}"
            self._print(line, style="dim")

    def _print(self, text: str, style: str = "", end: str = "\n") -> None:
        if self.console is not None:
            self.console.print(text, style=style, end=end, markup=False)
        else:
            self.out.write(text + end)
        self.out.flush()


def _ask(args: argparse.Namespace, out: TextIO) -> int:
    from qwen_ci import (
        Client,
        CodeRun,
        Finish,
        Options,
        QwenCIError,
        ReasoningDelta,
        TextDelta,
        build,
    )
    from qwen_ci import Usage as UsageEvent

    emulator: Any = None
    base_url = args.base_url
    if args.emulator:
        try:
            from qwen_ci.emulator import Emulator
        except ImportError as exc:
            print(f"--emulator needs the emulator extra ({exc.name} is missing): {EXTRA_HINT}",
                  file=sys.stderr)
            return 2
        emulator = Emulator(pool_size=1).start()
        base_url = emulator.base_url
    key = args.api_key or os.environ.get(API_KEY_ENV)
    if not key and (args.emulator or _is_local(base_url or os.environ.get(BASE_URL_ENV))):
        key = LOCAL_KEY
    renderer = _Renderer(out)
    usage = None
    request_id = None
    try:
        client = Client(api_key=key, base_url=base_url, region=args.region,
                        timeout=args.timeout)
        request = build([{"role": "user", "content": args.prompt}],
                        Options(model=args.model), args.protocol)
        with client:
            for event in client.stream(request):
                if isinstance(event, ReasoningDelta):
                    renderer.reasoning(event.text)
                elif isinstance(event, CodeRun):
                    renderer.code(event.index, event.code)
                elif isinstance(event, TextDelta):
                    renderer.text(event.text)
                elif isinstance(event, UsageEvent):
                    usage = event
                elif isinstance(event, Finish):
                    request_id = event.request_id
    except QwenCIError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()
    renderer.finish(usage, request_id)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``qwen-ci`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "serve":
        return _serve(args)
    return _ask(args, out or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
