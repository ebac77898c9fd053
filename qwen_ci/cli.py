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

from qwen_ci.config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_MODEL,
    DEFAULT_REGION,
    PROTOCOLS,
    REGION_HOSTS,
    is_loopback,
)

EXTRA_HINT = "pip install 'qwen-code-interpreter[emulator]'"
LOCAL_KEY = "sk-emulator"
"""Key ``ask`` sends to a local URL when none is configured."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("qwen-code-interpreter")
    except Exception:  # not installed as a distribution (a source checkout)
        return "unknown"


class _FORMAT(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (options without one say what applies)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-ci", description="Qwen's code interpreter: ask, a local emulator, "
        "self-hosting.", formatter_class=_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"qwen-ci {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser(
        "ask", help="ask one question; stream thinking, code and answer",
        description="Ask one question and watch it live: the thinking, a spinner while "
                    "code runs, each executed code block and the answer.",
        formatter_class=_FORMAT)
    ask.add_argument("prompt", help="the question")
    ask.add_argument("--api-key", default=None,
                     help=f"DashScope API key (default: ${API_KEY_ENV})")
    ask.add_argument("--emulator", action="store_true",
                     help="ask a local emulator started in this process (no key needed)")
    ask.add_argument("--base-url", default=None,
                     help=f"service root (default: ${BASE_URL_ENV}, else the region's host)")
    ask.add_argument("--region", default=None, choices=sorted(REGION_HOSTS),
                     help=f"region of the key (default: {DEFAULT_REGION})")
    ask.add_argument("--protocol", choices=list(PROTOCOLS), default="dashscope",
                     help="native (returns the executed code) or OpenAI-compatible")
    ask.add_argument("--model", default=DEFAULT_MODEL, help="a model with the code interpreter")
    ask.add_argument("--timeout", type=float, default=None,
                     help="seconds to wait for the next byte (default: 300)")

    emu = sub.add_parser("emulator", help="run the local DashScope emulator",
                         description="Serve DashScope's code interpreter endpoints locally.",
                         formatter_class=_FORMAT)
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emu.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    emu.add_argument("--api-key", default=None,
                     help="require this key (default: accept any key)")
    emu.add_argument("--script", default=None,
                     help="YAML/JSON scenario file (default: the built-in scripted model)")
    emu.add_argument("--pool-size", type=int, default=2, help="warm kernels")
    emu.add_argument("--timeout", type=float, default=30.0,
                     help="wall-clock seconds per code run")
    emu.add_argument("--memory-mb", type=int, default=2048,
                     help="address space per sandbox process in MiB")
    emu.add_argument("--cpu", type=int, default=120, help="CPU seconds per kernel")
    emu.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto",
                     help="sandbox isolation (auto: bubblewrap when it works)")
    emu.add_argument("--frame-delay", type=float, default=0.02,
                     help="seconds between frames (0 for fastest)")
    emu.add_argument("--log-level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"],
                     help="log level (info: one line per request)")

    _serve_parser(sub)
    return parser


def _serve_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="serve the code interpreter with your own model (self-hosted)",
        description="DashScope's code interpreter endpoints backed by any OpenAI-compatible "
                    "model with function calling, and a local sandbox.",
        formatter_class=_FORMAT)
    up = serve.add_argument_group("upstream model")
    up.add_argument("--upstream-base-url", required=True,
                    help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    up.add_argument("--upstream-model", required=True, help="the upstream's model name")
    up.add_argument("--upstream-api-key-env", default=None, metavar="VAR",
                    help="environment variable holding the upstream's API key (default: send none)")
    up.add_argument("--upstream-timeout", type=float, default=600.0,
                    help="seconds to wait for the upstream's next byte")
    up.add_argument("--upstream-max-retries", type=int, default=0,
                    help="retries of an upstream call before its first byte (clients of "
                    "this server retry themselves; retrying here too multiplies the waits)")
    up.add_argument("--upstream-check", choices=["warn", "refuse", "off"], default="warn",
                    help="at start, check that the upstream answers; warn or refuse to start "
                    "when it does not")
    up.add_argument("--upstream-extra-body", default=None, metavar="JSON",
                    help="JSON object merged into every upstream request (default: none)")
    up.add_argument("--no-echo-reasoning", action="store_true",
                    help="do not send a round's reasoning back with its tool call")
    up.add_argument("--instructions-file", default=None,
                    help="system instruction on using the tool (default: built in)")
    srv = serve.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    srv.add_argument("--api-key", default=None, help="require this key (default: accept any key)")
    srv.add_argument("--api-key-env", default=None, metavar="VAR",
                     help="require the key held by this environment variable (default: none)")
    srv.add_argument("--max-rounds", type=int, default=8,
                     help="code runs per request at most")
    srv.add_argument("--max-concurrency", type=int, default=8,
                     help="requests served at once")
    srv.add_argument("--max-queue", type=int, default=32,
                     help="requests waiting for a slot; beyond: 429 Throttling")
    srv.add_argument("--queue-timeout", type=float, default=60.0,
                     help="seconds a request may wait for a slot")
    srv.add_argument("--max-body-mb", type=float, default=8.0,
                     help="largest request body in MiB")
    srv.add_argument("--graceful-timeout", type=int, default=30,
                     help="on SIGTERM, seconds in-flight requests get to finish")
    srv.add_argument("--max-buffered-mb", type=float, default=64.0,
                     help="request body MiB held at once, all requests")
    srv.add_argument("--body-timeout", type=float, default=30.0,
                     help="seconds a client has to send its body")
    srv.add_argument("--header-timeout", type=float, default=10.0,
                     help="seconds a connection has to send its headers")
    srv.add_argument("--max-connections", type=int, default=512,
                     help="open connections at most; beyond: 503 and closed")
    srv.add_argument("--request-timeout", type=float, default=600.0,
                     help="seconds a request may run in all")
    srv.add_argument("--public-health", action="store_true",
                     help="/health details for anyone (default: only with the key)")
    srv.add_argument("--log-level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"],
                     help="log level (info: one line per request)")
    srv.add_argument("--log-format", default="json", choices=["json", "text"],
                     help="log lines as JSON objects or as text")
    srv.add_argument("--log-content", action="store_true",
                     help="log what is sent upstream (prompts, code) at debug level")
    box = serve.add_argument_group("sandbox")
    box.add_argument("--pool-size", type=int, default=2, help="warm kernels")
    box.add_argument("--timeout", type=float, default=30.0,
                     help="wall-clock seconds per code run")
    box.add_argument("--memory-mb", type=int, default=2048,
                     help="memory of one request's sandbox in MiB: all its processes and "
                          "files (per process without a cgroup)")
    box.add_argument("--cpu", type=int, default=120, help="CPU seconds per kernel")
    box.add_argument("--cpus", type=float, default=1.0,
                     help="CPUs one request's sandbox may use at once")
    box.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto",
                     help="bubblewrap is required unless 'none' (unisolated, on purpose)")


# ---------------------------------------------------------------------- emulator


def _emulator(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401

        from qwen_ci.emulator.app import EmulatorConfig, create_app
        from qwen_ci.emulator.server import bind_socket, is_loopback, uvicorn_server
        from qwen_ci.sandbox import Limits, detect_isolation
    except ImportError as exc:
        print(f"qwen-ci emulator needs the emulator extra ({exc.name} is missing): "
              f"{EXTRA_HINT}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    try:
        limits = Limits(timeout=args.timeout, memory=args.memory_mb << 20, cpu=args.cpu)
        isolation = detect_isolation(args.isolation)
        # fail closed: reachable from other machines, the sandbox must be isolated
        refusal = None if is_loopback(args.host) else isolation.refusal(
            f"qwen-ci emulator on {args.host}")
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
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
    key = "<your --api-key>" if args.api_key else LOCAL_KEY  # never echo a real key
    print(f"  export {BASE_URL_ENV}={url} {API_KEY_ENV}={key}",
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

NO_KEY = (
    "qwen-ci ask: no API key. Pass --api-key KEY or set {env} (a key of the region you "
    "call), or add --emulator to ask a local emulator in this process (no key needed)."
)
NO_KEY_LOCAL = (
    " {url} is local: an emulator started without --api-key accepts any key "
    "(--api-key sk-local); one started with --api-key wants that key."
)
OPENAI_NO_CODE = (
    "code runs: unknown (--protocol openai does not return the executed code; "
    "--protocol dashscope does)"
)


class _Renderer:
    """Streams thinking (dim), a spinner while code runs, each code block highlighted, and
    the answer as Markdown rendered live (rich); plain text without rich."""

    def __init__(self, out: TextIO, force_terminal: bool | None = None) -> None:
        self.out = out
        self.console: Any = None
        self.live: Any = None
        try:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=out, highlight=False, soft_wrap=True,
                                   force_terminal=force_terminal)
            self.live = Live(console=self.console, refresh_per_second=12,
                             vertical_overflow="visible")
        except ImportError:
            self.console = None
        self.mode = ""  # "thinking", "running" or "answer": what the live region shows
        self.buffer = ""  # the current segment's text
        self.usage: Any = None
        self.request_id: str | None = None

    # the live region holds the current segment; a finished one is printed for good
    def _show(self) -> None:
        if self.live is None:
            return
        from rich.markdown import Markdown
        from rich.spinner import Spinner
        from rich.text import Text

        if self.mode == "thinking":
            self.live.update(Text(self.buffer, style="dim"), refresh=True)
        elif self.mode == "answer":
            self.live.update(Markdown(self.buffer), refresh=True)
        elif self.mode == "running":
            self.live.update(Spinner("dots", text=self.buffer, style="bold"), refresh=True)
        else:
            self.live.update(Text(""), refresh=True)

    def _settle(self) -> None:
        """Print the current segment for good and empty the live region."""
        if self.console is not None and self.buffer:
            from rich.markdown import Markdown
            from rich.text import Text

            if self.mode == "thinking":
                self.console.print(Text(self.buffer.strip("\n"), style="dim"))
            elif self.mode == "answer":
                self.console.print(Markdown(self.buffer))
        elif self.console is None and self.mode in ("thinking", "answer"):
            self.out.write("\n")
        self.mode, self.buffer = "", ""
        self._show()

    def _enter(self, mode: str, header: str | None) -> None:
        if self.mode == mode:
            return
        self._settle()
        if self.live is not None and not self.live.is_started:
            self.live.start()
        if header is not None:
            if self.console is not None:
                from rich.rule import Rule

                self.console.print(Rule(header, style="dim" if mode == "thinking" else "bold"))
            else:
                self.out.write(f"[{header}]\n")
        self.mode = mode

    def on_event(self, event: Any) -> None:
        """Show one core event (usage and the request id are kept for :meth:`finish`)."""
        from qwen_ci import CodeRun, CodeStart, Finish, ReasoningDelta, TextDelta, Usage

        if isinstance(event, ReasoningDelta):
            self.reasoning(event.text)
        elif isinstance(event, CodeStart):
            self.code_start(event.index)
        elif isinstance(event, CodeRun):
            self.code(event.index, event.code)
        elif isinstance(event, TextDelta):
            self.text(event.text)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.request_id = event.request_id

    def reasoning(self, text: str) -> None:
        self._enter("thinking", "thinking")
        self._append(text)

    def code_start(self, index: int) -> None:
        self._enter("running", None)
        self.buffer = f"running code (run {index + 1})..."
        if self.console is None:
            self.out.write(self.buffer + "\n")
        self._show()

    def code(self, index: int, code: str) -> None:
        if self.mode != "running":
            self._settle()
        self.mode, self.buffer = "", ""
        self._show()
        if self.console is not None:
            from rich.panel import Panel
            from rich.syntax import Syntax

            self.console.print(Panel(Syntax(code, "python", theme="ansi_dark"),
                                     title=f"code run {index + 1}", title_align="left"))
        else:
            self.out.write(f"[code run {index + 1}]\n{code}\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self._enter("answer", "answer")
        self._append(text)

    def _append(self, text: str) -> None:
        self.buffer += text
        if self.console is None:
            self.out.write(text)
            self.out.flush()
        else:
            self._show()

    def close(self) -> None:
        """Settle what is shown and stop the live region (also after an error)."""
        self._settle()
        if self.live is not None and self.live.is_started:
            self.live.stop()

    def finish(self, protocol: str) -> None:
        """Stop the live region; print the usage and the request id."""
        self.close()
        usage, request_id = self.usage, self.request_id
        lines = []
        if usage is not None:
            count = usage.plugins.get("code_interpreter", {}).get("count", 0)
            runs = OPENAI_NO_CODE if protocol == "openai" else f"code runs: {count}"
            lines.append(
                f"tokens: input {usage.input_tokens}, output {usage.output_tokens} "
                f"(reasoning {usage.reasoning_tokens}), total {usage.total_tokens}; {runs}"
            )
        if request_id:
            lines.append(f"request_id: {request_id}")  # its own line: never wrapped inside
        for line in lines:
            if self.console is not None:
                self.console.print(line, style="dim", markup=False)
            else:
                self.out.write(line + "\n")
        self.out.flush()


def _ask_key(args: argparse.Namespace, base_url: str | None) -> str | None:
    """The key to send, or None after printing what to do."""
    key: str | None = args.api_key or os.environ.get(API_KEY_ENV)
    if key:
        return key
    if args.emulator:
        return LOCAL_KEY  # our own emulator, started without a key
    url = base_url or os.environ.get(BASE_URL_ENV)
    message = NO_KEY.format(env=API_KEY_ENV)
    if is_loopback(url):
        message += NO_KEY_LOCAL.format(url=url)
    print(message, file=sys.stderr)
    return None


def _ask(args: argparse.Namespace, out: TextIO) -> int:
    from qwen_ci import Client, Options, QwenCIError, build

    if not args.emulator and _ask_key(args, args.base_url) is None:
        return 2
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
    key = _ask_key(args, base_url)
    renderer = _Renderer(out)
    try:
        client = Client(api_key=key, base_url=base_url, region=args.region,
                        timeout=args.timeout)
        request = build([{"role": "user", "content": args.prompt}],
                        Options(model=args.model), args.protocol)
        with client:
            for event in client.stream(request):
                renderer.on_event(event)
    except QwenCIError as exc:
        renderer.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        renderer.close()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if emulator is not None:
            emulator.stop()
    renderer.finish(args.protocol)
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
