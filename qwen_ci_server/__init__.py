"""The servers: a local emulator of DashScope's code interpreter and ``qwen-ci serve``.

- :mod:`qwen_ci_server.emulator`: the service's endpoints, framing and errors, with a
  deterministic scripted model whose code really runs in the sandbox;
- :mod:`qwen_ci_server.selfhost`: the same endpoints backed by any OpenAI-compatible model;
- :mod:`qwen_ci_server.sandbox`: stateful Python in a Jupyter kernel, isolated with
  bubblewrap, cgroups and seccomp.

This package is apart from the client (:mod:`qwen_ci`): the client never imports it, and
it imports only the client modules named in ``CLIENT_MODULES`` (never the client's wire
facts: the emulator is an independent oracle of the service). The servers need the
``emulator`` extra; importing this package itself needs nothing.
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'qwen-code-interpreter[emulator]'"
"""How to install what the servers need (starlette, uvicorn, jupyter-client, ...)."""

EXTRA_MODULES = frozenset(
    {"starlette", "uvicorn", "jupyter_client", "ipykernel", "yaml", "anyio", "zmq", "rich"}
)
"""Top-level modules the ``emulator`` extra brings: a missing one means a missing extra."""

CLIENT_MODULES = ("qwen_ci.errors", "qwen_ci.protocols.sse", "qwen_ci.retry")
"""The only client modules the servers import (checked by ``tests/test_architecture.py``):
the exception family, the SSE decoder and the retry policy towards an upstream."""


def missing_extra(what: str, missing: str) -> ModuleNotFoundError:
    """The error for ``what`` needing the ``emulator`` extra, of which ``missing`` is absent.

    Example:
        >>> str(missing_extra("qwen_ci_server.emulator", "starlette")).split(":")[0]
        'qwen_ci_server.emulator needs the emulator extra (starlette is missing)'
    """
    return ModuleNotFoundError(
        f"{what} needs the emulator extra ({missing} is missing): {EXTRA_HINT}", name=missing)


def is_missing_extra(exc: ImportError) -> bool:
    """True when ``exc`` is a package of the ``emulator`` extra not being installed.

    Example:
        >>> is_missing_extra(ModuleNotFoundError("x", name="starlette.routing"))
        True
        >>> is_missing_extra(ModuleNotFoundError("x", name="numpy"))
        False
    """
    return (getattr(exc, "name", None) or "").split(".")[0] in EXTRA_MODULES



__all__ = ["CLIENT_MODULES", "EXTRA_HINT", "EXTRA_MODULES", "is_missing_extra", "missing_extra"]
