"""The ``qwen-ci`` command: ``ask`` (one question), and the servers' commands
``emulator`` (a local DashScope) and ``serve`` (self-hosted: any OpenAI-compatible model
with a local sandbox), which :mod:`qwen_ci_server.cli` adds when it is installed.

::

    qwen-ci ask "123的21次方是多少？" [--base-url URL] [--protocol responses|dashscope|openai]
    qwen-ci emulator [--host 127.0.0.1] [--port 8765] [--api-key-env VAR] [--script FILE]
    qwen-ci serve --upstream-base-url URL --upstream-model NAME [--upstream-api-key-env VAR]

The server commands need the ``emulator`` extra; ``ask`` renders with rich when installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from qwen_ci.version import __version__

LOCAL_KEY = "sk-local"
"""Key ``ask`` sends to a local URL when none is configured."""


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
    parser.add_argument("--version", action="version", version=f"qwen-ci {__version__}")
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
    ask.add_argument("--protocol", choices=list(PROTOCOLS), default=None,
                     help="responses (the code and what it printed), dashscope (native, "
                          "the code) or openai (chat completions, no code) (default: the "
                          "best one the model supports)")
    ask.add_argument("--model", default=DEFAULT_MODEL, help="a model with the code interpreter")
    ask.add_argument("--timeout", type=float, default=None,
                     help="seconds to wait for the next byte (default: 300)")

    _server_commands(sub)
    return parser


def _server_commands(sub: Any) -> None:
    """Add ``emulator`` and ``serve`` from the servers' package, when it is installed."""
    try:
        from qwen_ci_server.cli import add_commands
    except ModuleNotFoundError as exc:
        if exc.name != "qwen_ci_server":
            raise
        return  # the servers are not installed: qwen-ci offers only ask
    add_commands(sub, _FORMAT)


# ---------------------------------------------------------------------- ask

NO_KEY = (
    "qwen-ci ask: no API key. Pass --api-key KEY or set {env} (a key of the region you "
    "call), or add --emulator to ask a local emulator in this process (no key needed)."
)
NO_KEY_LOCAL = (
    " {url} is local: an emulator started without --api-key-env/--api-key-file "
    "accepts any key (--api-key sk-local); one started with them wants that key."
)
OPENAI_NO_CODE = (
    "code runs: unknown (--protocol openai does not return the executed code; "
    "--protocol dashscope and --protocol responses do)"
)


class _Wrap:
    """Streamed text for a plain terminal, wrapped at word boundaries to ``width``
    (a word is held until it is complete; lines inside ``` code blocks are not wrapped).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> wrap = _Wrap(out, 12)
        >>> wrap.write("The quick brown fox jumps")
        >>> wrap.end()
        >>> out.getvalue()
        'The quick\\nbrown fox\\njumps\\n'
    """

    def __init__(self, out: TextIO, width: int) -> None:
        self.out, self.width = out, max(width, 10)
        self.column = 0  # characters on the current line
        self.word = ""  # a word not yet written (it may go on)
        self.space = ""  # spaces after the last word written, not yet written
        self.line = ""  # the current line's text (to see a ``` fence)
        self.code = False  # inside a ``` code block

    def write(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self._flush()
                self.out.write(self.space if self.code else "")
                self.out.write("\n")
                self.space = ""
                if self.line.lstrip().startswith("```"):
                    self.code = not self.code
                self.column, self.line = 0, ""
                continue
            self.line += char
            if self.code:
                self.out.write(self.space + char)
                self.space = ""
                self.column += 1
            elif char in " \t":
                self._flush()
                self.space += char  # written before the next word if it fits the line
            else:
                self.word += char
                if len(self.word) >= self.width:  # longer than a line: cut it
                    self._flush()

    def _flush(self) -> None:
        if not self.word:
            return
        if self.column and self.column + len(self.space) + len(self.word) > self.width:
            self.out.write("\n")  # the spaces before the word become the line break
            self.column, self.space = 0, ""
        self.out.write(self.space + self.word)
        self.column += len(self.space) + len(self.word)
        self.word = self.space = ""

    def end(self) -> None:
        """End the segment: write the held word and a line break."""
        self._flush()
        self.out.write("\n")
        self.column, self.line, self.code, self.space = 0, "", False, ""


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

            # thinking and answer wrap at word boundaries; the last lines never wrap
            self.console = Console(file=out, highlight=False, soft_wrap=False,
                                   force_terminal=force_terminal)
            self.live = Live(console=self.console, refresh_per_second=12,
                             vertical_overflow="visible")
        except ImportError:
            self.console = None
        self.mode = ""  # "thinking", "running" or "answer": what the live region shows
        self.buffer = ""  # the current segment's text
        self.usage: Any = None
        self.request_id: str | None = None
        self.wrap = _Wrap(out, shutil.get_terminal_size().columns)  # without rich

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
            self.wrap.end()
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
            self.code(event.index, event.code, event.output, event.ok)
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

    def code(self, index: int, code: str, output: str | None = None, ok: bool = True) -> None:
        """Print a final run: its code panel and, when the protocol returns it, what it
        printed under it."""
        if self.mode != "running":
            self._settle()
        self.mode, self.buffer = "", ""
        self._show()
        title = f"output of run {index + 1}" + ("" if ok else " (failed)")
        if self.console is not None:
            from rich.panel import Panel
            from rich.syntax import Syntax
            from rich.text import Text

            self.console.print(Panel(Syntax(code, "python", theme="ansi_dark"),
                                     title=f"code run {index + 1}", title_align="left"))
            if output is not None:
                self.console.print(Panel(Text(output.rstrip("\n") or "(no output)"),
                                         title=title, title_align="left", style="dim"))
        else:
            self.out.write(f"[code run {index + 1}]\n{code}\n")
            if output is not None:
                self.out.write(f"[{title}]\n{output.rstrip(chr(10)) or '(no output)'}\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self._enter("answer", "answer")
        self._append(text)

    def _append(self, text: str) -> None:
        self.buffer += text
        if self.console is None:
            self.wrap.write(text)
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
                self.console.print(line, style="dim", markup=False, soft_wrap=True)
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
            from qwen_ci_server.emulator import Emulator

            emulator = Emulator(pool_size=1).start()
        except ImportError as exc:  # the servers' package or its extra is not installed
            print(f"--emulator needs the local emulator: {exc}", file=sys.stderr)
            return 2
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
    renderer.finish(request.protocol)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``qwen-ci`` console script."""
    args = _parser().parse_args(argv)
    if args.command != "ask":
        from qwen_ci_server.cli import run

        return run(args)
    return _ask(args, out or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
