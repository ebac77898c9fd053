"""Stateful, isolated Python execution: a Jupyter kernel per request.

Needs the ``emulator`` extra (``jupyter_client``, ``ipykernel``). See
:class:`KernelPool` for the entry point and ``docs/emulator.md`` for the limits and
the isolation.
"""

from qwen_ci.sandbox.isolation import Isolation, detect_isolation
from qwen_ci.sandbox.kernel import Kernel, SandboxError
from qwen_ci.sandbox.limits import ExecutionResult, Limits
from qwen_ci.sandbox.pool import KernelPool, SandboxSession

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
