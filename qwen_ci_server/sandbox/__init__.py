"""Stateful, isolated Python execution: a Jupyter kernel per request.

Needs the ``emulator`` extra (``jupyter_client``, ``ipykernel``); names are imported on
first use. See :class:`KernelPool` for the entry point and ``docs/emulator.md`` for the
limits and the isolation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen_ci_server._lazy import lazy_exports

if TYPE_CHECKING:
    from qwen_ci_server.sandbox.isolation import Isolation, detect_isolation
    from qwen_ci_server.sandbox.kernel import Kernel, SandboxError
    from qwen_ci_server.sandbox.limits import ExecutionResult, Limits
    from qwen_ci_server.sandbox.pool import KernelPool, SandboxSession

_EXPORTS = {
    "Isolation": "isolation", "detect_isolation": "isolation",
    "Kernel": "kernel", "SandboxError": "kernel",
    "ExecutionResult": "limits", "Limits": "limits",
    "KernelPool": "pool", "SandboxSession": "pool",
}

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ExecutionResult",
    "Isolation",
    "Kernel",
    "KernelPool",
    "Limits",
    "SandboxError",
    "SandboxSession",
    "detect_isolation",
]
