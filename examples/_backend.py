"""Where the examples send their requests: a DashScope service, or the local emulator.

With ``DASHSCOPE_API_KEY`` set (or ``--base-url`` given) the examples call that service;
without either they start the local emulator in-process (a deterministic scripted model
that really runs its code in a sandbox), so every example works offline.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def backend(base_url: str | None = None, region: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the model settings (``base_url``, ``region``, ``api_key``) and say which it is."""
    key = os.environ.get("DASHSCOPE_API_KEY")
    if key or base_url:
        where = base_url or os.environ.get("DASHSCOPE_BASE_URL") or f"region {region}"
        print(f"backend: DashScope service ({where})")
        settings: dict[str, Any] = {"base_url": base_url}
        if region:
            settings["region"] = region
        if not key:
            settings["api_key"] = "sk-local"  # a local server that checks no key
        yield settings
        return
    from qwen_ci.emulator import Emulator

    with Emulator() as emulator:
        print(f"backend: local emulator at {emulator.base_url} (no DASHSCOPE_API_KEY set)")
        yield {"base_url": emulator.base_url, "api_key": "sk-local"}
