"""Names of a subpackage imported on first use, so that a missing ``emulator`` extra is
reported with the install line instead of a bare traceback."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from qwen_ci_server import is_missing_extra, missing_extra


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a submodule of
    ``package``) when ``name`` is first read, and caches it in ``namespace``.

    Example:
        >>> get = lazy_exports("qwen_ci_server", {"EXTRA_HINT": ""}, {})
        >>> get("nothing")
        Traceback (most recent call last):
        AttributeError: module 'qwen_ci_server' has no attribute 'nothing'
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = f"{package}.{module}" if module else package
        try:
            loaded = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if is_missing_extra(exc):
                raise missing_extra(package, exc.name or "?") from exc
            raise
        value = getattr(loaded, name)
        namespace[name] = value
        return value

    return __getattr__
