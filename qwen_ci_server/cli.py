"""The server side of the ``qwen-ci`` command: ``qwen-ci emulator`` and ``qwen-ci serve``.

The client's :mod:`qwen_ci.cli` loads this module lazily to add the two commands. Building
the parsers needs no server dependency (the defaults come from the settings dataclasses,
:class:`~qwen_ci_server.emulator.config.EmulatorConfig` and
:class:`~qwen_ci_server.selfhost.config.ServeConfig`); running a command without the
``emulator`` extra prints the install line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from qwen_ci_server import EXTRA_HINT, is_missing_extra
from qwen_ci_server.emulator.config import EmulatorConfig
from qwen_ci_server.emulator.service import API_KEY_ENV, BASE_URL_ENV
from qwen_ci_server.sandbox.limits import Limits
from qwen_ci_server.selfhost.config import serve_defaults

COMMANDS = ("emulator", "serve")
LOCAL_KEY = "sk-local"
"""The key the banner suggests for a server started without one (any key works)."""
_LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


def add_commands(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``emulator`` and ``serve`` to the ``qwen-ci`` subcommands ``sub``."""
    emu = sub.add_parser("emulator", help="run the local DashScope emulator",
                         description="Serve DashScope's code interpreter endpoints locally.",
                         formatter_class=formatter_class)
    defaults = EmulatorConfig()
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emu.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    _key_options(emu)
    emu.add_argument("--script", default=None,
                     help="YAML/JSON scenario file (default: the built-in scripted model)")
    emu.add_argument("--frame-delay", type=float, default=0.02,
                     help="seconds between frames (0 for fastest)")
    emu.add_argument("--log-level", default="info", choices=_LOG_LEVELS,
                     help="log level (info: one line per request)")
    emu.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                     help="seconds a client has to send its body (then 408)")
    _sandbox_options(emu, defaults.pool_size, defaults.limits, defaults.isolation)

    serve = sub.add_parser(
        "serve", help="serve the code interpreter with your own model (self-hosted)",
        description="DashScope's code interpreter endpoints backed by any OpenAI-compatible "
                    "model with function calling, and a local sandbox.",
        formatter_class=formatter_class)
    values = serve_defaults()
    _upstream_options(serve.add_argument_group("upstream model"), values)
    _front_door_options(serve.add_argument_group("server"), values)
    _sandbox_options(serve.add_argument_group("sandbox"), values["pool_size"],
                     values["limits"], values["isolation"], cpus=True)


def _upstream_options(up: Any, values: dict[str, Any]) -> None:
    up.add_argument("--upstream-base-url", required=True,
                    help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    up.add_argument("--upstream-model", required=True, help="the upstream's model name")
    up.add_argument("--upstream-api-key-env", default=None, metavar="VAR",
                    help="environment variable holding the upstream's API key (default: send none)")
    up.add_argument("--upstream-timeout", type=float, default=values["upstream.timeout"],
                    help="seconds to wait for the upstream's next byte")
    up.add_argument("--upstream-max-retries", type=int, default=values["upstream.max_retries"],
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


def _front_door_options(srv: Any, values: dict[str, Any]) -> None:
    mib = 1 << 20
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    _key_options(srv)
    srv.add_argument("--max-rounds", type=int, default=values["max_rounds"],
                     help="code runs per request at most")
    srv.add_argument("--max-concurrency", type=int, default=values["max_concurrency"],
                     help="requests served at once")
    srv.add_argument("--max-queue", type=int, default=values["max_queue"],
                     help="requests waiting for a slot; beyond: 429 Throttling")
    srv.add_argument("--queue-timeout", type=float, default=values["queue_timeout"],
                     help="seconds a request may wait for a slot")
    srv.add_argument("--max-body-mb", type=float, default=values["max_body_bytes"] / mib,
                     help="largest request body in MiB")
    srv.add_argument("--graceful-timeout", type=int, default=values["graceful_timeout"],
                     help="on SIGTERM, seconds in-flight requests get to finish")
    srv.add_argument("--max-buffered-mb", type=float,
                     default=values["max_buffered_bytes"] / mib,
                     help="request body MiB held at once, all requests")
    srv.add_argument("--body-timeout", type=float, default=values["body_timeout"],
                     help="seconds a client has to send its body")
    srv.add_argument("--header-timeout", type=float, default=values["header_timeout"],
                     help="seconds a connection has to send its headers")
    srv.add_argument("--max-connections", type=int, default=values["max_connections"],
                     help="open connections at most; beyond: 503 and closed")
    srv.add_argument("--request-timeout", type=float, default=values["request_timeout"],
                     help="seconds a request may run in all")
    srv.add_argument("--public-health", action="store_true",
                     help="/health details for anyone (default: only with the key)")
    srv.add_argument("--log-level", default="info", choices=_LOG_LEVELS,
                     help="log level (info: one line per request)")
    srv.add_argument("--log-format", default="json", choices=["json", "text"],
                     help="log lines as JSON objects or as text")
    srv.add_argument("--log-content", action="store_true",
                     help="log what is sent upstream (prompts, code) at debug level")


KEY_ON_COMMAND_LINE = (
    "--api-key on the command line is refused: every local user can read a command line "
    "(/proc/<pid>/cmdline, ps). Put the key in an environment variable and pass "
    "--api-key-env VAR, or in a file only you can read and pass --api-key-file PATH."
)


def _key_options(parser: Any) -> None:
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="refused, no default: a key on a command line is public; use "
                             "--api-key-env or --api-key-file")
    parser.add_argument("--api-key-env", default=None, metavar="VAR",
                        help="require the key held by this environment variable "
                             "(default: accept any key)")
    parser.add_argument("--api-key-file", default=None, metavar="PATH",
                        help="require the key held in this file (default: accept any key)")


def api_key_from_args(args: argparse.Namespace) -> str | None:
    """The key clients must send, from ``--api-key-env`` or ``--api-key-file``; raises
    ``ValueError`` naming the fix for ``--api-key KEY`` (a key on a command line) or an
    unset variable, an unreadable or empty file.

    Example:
        >>> api_key_from_args(argparse.Namespace(api_key=None, api_key_env=None,
        ...                                      api_key_file=None)) is None
        True
    """
    import os
    from pathlib import Path

    if getattr(args, "api_key", None):
        raise ValueError(KEY_ON_COMMAND_LINE)
    env, path = getattr(args, "api_key_env", None), getattr(args, "api_key_file", None)
    if env and path:
        raise ValueError("give --api-key-env or --api-key-file, not both.")
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ValueError(f"--api-key-env: the environment variable {env} is not set or "
                             "empty.")
        return value
    if path:
        try:
            value = Path(path).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--api-key-file: cannot read {path} ({exc}).") from None
        if not value or "\n" in value:
            raise ValueError(f"--api-key-file: {path} must hold the key alone on one line.")
        return value
    return None


def _sandbox_options(box: Any, pool_size: int, limits: Limits, isolation: str, *,
                     cpus: bool = False) -> None:
    box.add_argument("--pool-size", type=int, default=pool_size, help="warm kernels")
    box.add_argument("--timeout", type=float, default=limits.timeout,
                     help="wall-clock seconds per code run")
    box.add_argument("--memory-mb", type=int, default=limits.memory >> 20,
                     help="memory of one request's sandbox in MiB: all its processes and "
                          "files (per process without a cgroup)")
    box.add_argument("--cpu", type=int, default=limits.cpu, help="CPU seconds per kernel")
    if cpus:
        box.add_argument("--cpus", type=float, default=limits.cpus,
                         help="CPUs one request's sandbox may use at once")
    box.add_argument("--isolation", choices=["auto", "bwrap", "none"], default=isolation,
                     help="sandbox isolation (auto: bubblewrap when it works; serve and a "
                          "non-loopback emulator refuse to start without it unless 'none')")


def run(args: argparse.Namespace) -> int:
    """Run ``qwen-ci emulator`` or ``qwen-ci serve``; the exit status."""
    try:
        if args.command == "serve":
            from qwen_ci_server.selfhost.cli import run as run_serve

            return run_serve(args)
        return _run_emulator(args)
    except ImportError as exc:
        if not is_missing_extra(exc):
            raise
        print(f"qwen-ci {args.command} needs the emulator extra ({exc.name} is missing): "
              f"{EXTRA_HINT}", file=sys.stderr)
        return 2


class _Stopped(Exception):
    """SIGTERM, re-raised by uvicorn after its graceful shutdown."""


def _stopped(signum: int, frame: Any) -> None:
    raise _Stopped


def _run_emulator(args: argparse.Namespace) -> int:
    import signal

    from qwen_ci_server.emulator.app import create_app
    from qwen_ci_server.emulator.server import bind_socket, uvicorn_server
    from qwen_ci_server.sandbox.cgroups import cgroup_support
    from qwen_ci_server.sandbox.isolation import detect_isolation

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    try:
        api_key = api_key_from_args(args)
        limits = Limits(timeout=args.timeout, memory=args.memory_mb << 20, cpu=args.cpu)
        isolation = detect_isolation(args.isolation)
        # fail closed on every host, like serve: only --isolation none runs code unisolated
        refusal = isolation.refusal(f"qwen-ci emulator on {args.host}")
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
        config = EmulatorConfig(
            api_key=api_key, script=args.script, pool_size=args.pool_size,
            limits=limits, isolation=args.isolation, frame_delay=args.frame_delay,
            body_timeout=args.body_timeout,
        )
        app = create_app(config)
        sock = bind_socket(args.host, args.port)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"qwen-ci emulator: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    url = f"http://{args.host}:{port}"
    model = "script " + str(args.script) if args.script else "scripted (deterministic)"
    cgroups = cgroup_support()
    resources = "a cgroup per request" if cgroups.available else (
        f"rlimits per process (no cgroup: {cgroups.reason})")
    print(f"qwen-ci emulator on {url}  model: {model}  sandbox: {isolation.mode}, "
          f"{resources}", flush=True)
    for warning in startup_warnings(isolation.warning, cgroups):
        print(f"  WARNING: {warning}", flush=True)
    key = "<your key>" if api_key else LOCAL_KEY  # never echo a real key
    print(f"  export {BASE_URL_ENV}={url} {API_KEY_ENV}={key}", flush=True)
    server = uvicorn_server(app, args.log_level, header_timeout=config.header_timeout,
                            max_connections=config.max_connections)
    # uvicorn re-raises Ctrl-C and SIGTERM after its graceful shutdown: end normally (the
    # pool is closed by then and the parent groups are removed at exit)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        with contextlib.suppress(KeyboardInterrupt, _Stopped):
            server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def startup_warnings(isolation_warning: str | None, cgroups: Any) -> list[str]:
    """What a server must say loudly at start: no isolation, no cgroup, unbounded
    socket buffers (see docs/SECURITY.md)."""
    warnings = [isolation_warning] if isolation_warning else []
    if not cgroups.available:
        warnings.append(
            f"no cgroup per sandbox ({cgroups.reason}): --memory-mb bounds each process, "
            "not the request; a request can use several times it (docs/SECURITY.md).")
    elif not str(cgroups.sockets).startswith(("bounded", "counted")):
        warnings.append(
            f"socket buffers of the sandbox are {cgroups.sockets}: code can hold host "
            "memory in TCP buffers on its loopback beyond --memory-mb (docs/SECURITY.md).")
    return warnings


def main(argv: list[str] | None = None) -> int:
    """``python -m qwen_ci_server.emulator``: the emulator command alone."""
    parser = argparse.ArgumentParser(prog="python -m qwen_ci_server.emulator")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, argparse.ArgumentDefaultsHelpFormatter)
    return run(parser.parse_args(["emulator", *(sys.argv[1:] if argv is None else argv)]))
