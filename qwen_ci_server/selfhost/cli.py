"""``qwen-ci serve``: from command-line options to a running self-hosted server."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qwen_ci_server.cli import LOCAL_KEY, api_key_from_args, startup_warnings
from qwen_ci_server.emulator.service import API_KEY_ENV, BASE_URL_ENV
from qwen_ci_server.sandbox.cgroups import cgroup_support
from qwen_ci_server.sandbox.isolation import detect_isolation
from qwen_ci_server.sandbox.limits import Limits
from qwen_ci_server.selfhost.app import bind_socket, serve
from qwen_ci_server.selfhost.config import (
    INSTRUCTIONS,
    ServeConfig,
    UpstreamConfig,
    safe_url,
    serve_defaults,
)
from qwen_ci_server.selfhost.logs import configure_logging


class UsageError(ValueError):
    """A command-line option that cannot work (exit status 2).

    Example:
        >>> str(UsageError("no model"))
        'no model'
    """


def _env_secret(name: str | None, option: str) -> str | None:
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise UsageError(f"{option}: the environment variable {name} is not set or empty.")
    return value


_FLAGS = {"max_body_bytes": "--max-body-mb", "max_buffered_bytes": "--max-buffered-mb",
          "graceful_timeout": "--graceful-timeout"}


def _flag(message: str) -> str:
    """A :class:`ServeConfig` error in the words of the command line's options."""
    numeric = [name for name, value in serve_defaults().items() if "." not in name
               and isinstance(value, int | float) and not isinstance(value, bool)]
    for name in numeric:
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        message = re.sub(rf"\b{name}\b", flag, message)
    return message


def _read_options(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The ``--upstream-extra-body`` object and the instructions text."""
    extra: Any = {}
    if args.upstream_extra_body:
        try:
            extra = json.loads(args.upstream_extra_body)
        except ValueError as exc:
            raise UsageError(f"--upstream-extra-body is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise UsageError("--upstream-extra-body must be a JSON object.")
    instructions = INSTRUCTIONS
    if args.instructions_file:
        try:
            instructions = Path(args.instructions_file).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"--instructions-file: {exc}") from None
    return extra, instructions


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the ``serve`` options describe; raises :class:`UsageError`
    (the checks are :class:`ServeConfig`'s own, worded with the options' names)."""
    extra, instructions = _read_options(args)
    try:
        upstream = UpstreamConfig(
            args.upstream_base_url, args.upstream_model,
            api_key=_env_secret(args.upstream_api_key_env, "--upstream-api-key-env"),
            timeout=args.upstream_timeout, max_retries=args.upstream_max_retries,
            extra_body=extra, echo_reasoning=not args.no_echo_reasoning,
        )
        limits = Limits(timeout=args.timeout, memory=args.memory_mb << 20, cpu=args.cpu,
                        cpus=args.cpus)
        return ServeConfig(
            upstream,
            api_key=api_key_from_args(args),
            max_rounds=args.max_rounds, max_concurrency=args.max_concurrency,
            max_queue=args.max_queue, queue_timeout=args.queue_timeout,
            max_body_bytes=int(args.max_body_mb * (1 << 20)),
            max_buffered_bytes=int(args.max_buffered_mb * (1 << 20)),
            body_timeout=args.body_timeout, header_timeout=args.header_timeout,
            max_connections=args.max_connections, request_timeout=args.request_timeout,
            public_health=args.public_health, pool_size=args.pool_size,
            limits=limits, isolation=args.isolation, graceful_timeout=args.graceful_timeout,
            instructions=instructions, log_content=args.log_content,
        )
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(_flag(str(exc))) from None


def check_upstream(upstream: UpstreamConfig, timeout: float = 5.0) -> str | None:
    """Why the upstream cannot be reached, or None (a TCP connection to its host, no request).

    Example:
        >>> check_upstream(UpstreamConfig("http://127.0.0.1:9/v1", "m"), timeout=1)[:40]
        'the upstream at http://127.0.0.1:9/v1 is'
    """
    url = safe_url(upstream.base_url)
    parts = urlsplit(upstream.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except TimeoutError:
        return f"the upstream at {url} did not accept a connection within {timeout:g} s"
    except OSError as exc:
        return f"the upstream at {url} is unreachable ({exc.strerror or exc})"


def run(args: argparse.Namespace) -> int:
    """Run ``qwen-ci serve`` until interrupted; the exit status."""
    try:
        config = config_from_args(args)
        isolation = detect_isolation(args.isolation)
        # fail closed: no unisolated sandbox unless --isolation none was given
        refusal = isolation.refusal("qwen-ci serve")
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
    except (UsageError, RuntimeError, OSError) as exc:
        print(f"qwen-ci serve: {exc}", file=sys.stderr)
        return 2
    check = getattr(args, "upstream_check", "warn")
    if check != "off" and (problem := check_upstream(config.upstream)) is not None:
        if check == "refuse":
            print(f"qwen-ci serve: {problem}. Start the upstream first, fix "
                  "--upstream-base-url, or pass --upstream-check warn.", file=sys.stderr)
            return 2
        print(f"qwen-ci serve: warning: {problem}; requests fail until it is up "
              "(--upstream-check refuse makes this fatal).", file=sys.stderr, flush=True)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"qwen-ci serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}"
    cgroups = cgroup_support()
    resources = "a cgroup per request" if cgroups.available else (
        f"rlimits per process (no cgroup: {cgroups.reason})")
    print(f"qwen-ci serve on {url}  upstream: {config.upstream.model} at "
          f"{safe_url(config.upstream.base_url)}  sandbox: {isolation.mode}, {resources}",
          flush=True)
    for warning in startup_warnings(isolation.warning, cgroups):
        print(f"  WARNING: {warning}", flush=True)
    key = "<your key>" if config.api_key else LOCAL_KEY
    print(f"  export {BASE_URL_ENV}={url} {API_KEY_ENV}={key}", flush=True)
    serve(config, sock, args.log_level)
    return 0
