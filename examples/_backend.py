"""Shared by the examples: where requests go, and how a stream is printed.

``--base-url`` (or ``DASHSCOPE_BASE_URL``) names the server; ``DASHSCOPE_API_KEY`` the key.
With neither, the examples start the local emulator in-process (a deterministic scripted
model that really runs its code in a sandbox), so every example works offline.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from qwen_ci.config import REGION_HOSTS, is_loopback

COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
DIM, BOLD, RESET = ("\033[2m", "\033[1m", "\033[0m") if COLOR else ("", "", "")


def describe(url: str | None, region: str | None) -> str:
    """What is at ``url`` (or the region's host), in words."""
    if url is None:
        name = region or "cn-beijing"
        return f"DashScope service (region {name}, {REGION_HOSTS.get(name, '?')})"
    root = url.rstrip("/")
    for name, host in REGION_HOSTS.items():
        if root.startswith(host):
            return f"DashScope service (region {name}, {host})"
    if is_loopback(url):
        return f"local server at {url} (a qwen-ci emulator or qwen-ci serve)"
    return f"server at {url}"


@contextlib.contextmanager
def backend(base_url: str | None = None, region: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the model settings (``base_url``, ``region``, ``api_key``) and say which it is."""
    key = os.environ.get("DASHSCOPE_API_KEY")
    url = base_url or os.environ.get("DASHSCOPE_BASE_URL")
    if key or url:
        print(f"backend: {describe(url, region)}")
        settings: dict[str, Any] = {"base_url": url}
        if region:
            settings["region"] = region
        if not key and is_loopback(url):
            settings["api_key"] = "sk-local"  # a local emulator started without --api-key
        yield settings
        return
    from qwen_ci_server.emulator import Emulator

    with Emulator() as emulator:
        print(f"backend: local emulator at {emulator.base_url}, in this process "
              "(no DASHSCOPE_API_KEY or DASHSCOPE_BASE_URL set)")
        yield {"base_url": emulator.base_url, "api_key": "sk-local"}


class StreamPrinter:
    """Prints thinking (dim), each executed code block and the answer, one blank line
    between the thinking and the answer and no other empty lines."""

    def __init__(self) -> None:
        self.section = ""

    def thinking(self, text: str) -> None:
        if self.section != "thinking":
            text = text.lstrip("\n")
            self.section = "thinking"
        print(f"{DIM}{text}{RESET}", end="", flush=True)

    def code(self, code: str) -> None:
        if self.section in ("thinking", "answer"):
            print()
        print(f"{BOLD}[code executed]{RESET}\n{code}", flush=True)
        self.section = "code"

    def answer(self, text: str) -> None:
        if self.section != "answer":
            print("\n" if self.section == "thinking" else "", end="")
            print()
            text = text.lstrip("\n")
            self.section = "answer"
        print(text, end="", flush=True)

    def end(self) -> None:
        if self.section in ("thinking", "answer"):
            print()
        self.section = ""


def tracing_extra_missing(missing: ImportError, extra: str) -> str:
    """What to install when a tracing example's OpenTelemetry packages are missing."""
    return (
        f"This example needs OpenTelemetry and OpenInference ({missing.name or missing} is "
        f"missing): pip install 'qwen-code-interpreter[{extra},emulator]' (from a checkout: "
        f"pip install -e '.[{extra},emulator]'; the emulator extra runs it offline)."
    )
