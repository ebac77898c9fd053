"""Settings of a framework model checked when it is built, as its first call would check them.

The adapters run :func:`check_settings` in a pydantic validator, so a model without the
code interpreter, an out-of-range ``temperature``, ``extra_body={"enable_thinking": False}``
or an unknown region fails at construction (pydantic wraps the
:class:`~qwen_ci.errors.InvalidRequestError` in its ``ValidationError``, a ``ValueError``),
not on the first call. Nothing is sent and the key is not needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qwen_ci.config import resolve_base_url
from qwen_ci.errors import InvalidRequestError
from qwen_ci.request import build
from qwen_ci.session import call_options

_PROBE = [{"role": "user", "content": "?"}]


def check_settings(
    model: str, fields: Mapping[str, Any], protocol: Any, transport: Mapping[str, Any]
) -> None:
    """Raise :class:`InvalidRequestError` for settings every call would refuse.

    ``fields`` holds the service options by name (:data:`qwen_ci.request.SERVICE_OPTIONS`),
    ``protocol`` is the model's field as :func:`qwen_ci.request.build` takes it,
    ``transport`` the connection settings (:data:`qwen_ci.session.TRANSPORT_FIELDS`).

    Example:
        >>> check_settings("qwen3-max", {"temperature": 0.5}, "dashscope", {})
        >>> check_settings("qwen3-max", {"temperature": 5}, "dashscope", {})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qwen_ci.errors.InvalidRequestError: temperature=5 is out of range; ...
    """
    # the request a call would build, with a placeholder question: options, model, protocol
    build(_PROBE, call_options(model, fields), protocol)
    resolve_base_url(transport.get("base_url"), transport.get("region"))
    timeout = transport.get("timeout")
    if timeout is not None and timeout <= 0:
        raise InvalidRequestError(f"timeout={timeout} must be a positive number of seconds.")
    retries = transport.get("max_retries")
    if retries is not None and retries < 0:
        raise InvalidRequestError(f"max_retries={retries} must be >= 0.")
