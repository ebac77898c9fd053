"""Regions, hosts, the model table and environment variables.

Everything here is data: which host serves a region, which native endpoint a model
belongs to and what its limits are. Update the tables, not the code, when the service
changes its model list.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from qwen_ci.errors import InvalidRequestError

API_KEY_ENV = "DASHSCOPE_API_KEY"
BASE_URL_ENV = "DASHSCOPE_BASE_URL"

DEFAULT_REGION = "cn-beijing"
DEFAULT_MODEL = "qwen3-max-preview"

Protocol = Literal["dashscope", "openai"]
PROTOCOLS: tuple[Protocol, ...] = ("dashscope", "openai")
Endpoint = Literal["text", "multimodal"]

#: region name -> service root (scheme://host)
REGION_HOSTS: dict[str, str] = {
    "cn-beijing": "https://dashscope.aliyuncs.com",
    "ap-southeast-1": "https://dashscope-intl.aliyuncs.com",
    "us-east-1": "https://dashscope-us.aliyuncs.com",
}

#: paths appended to the service root
NATIVE_PATHS: dict[Endpoint, str] = {
    "text": "/api/v1/services/aigc/text-generation/generation",
    "multimodal": "/api/v1/services/aigc/multimodal-generation/generation",
}
COMPATIBLE_PREFIX = "/compatible-mode/v1"
COMPATIBLE_PATH = COMPATIBLE_PREFIX + "/chat/completions"

# Suffixes users paste from the docs; the root is what is left.
_PASTED_SUFFIXES = (
    COMPATIBLE_PATH,
    COMPATIBLE_PREFIX,
    NATIVE_PATHS["text"],
    NATIVE_PATHS["multimodal"],
    "/api/v1",
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the client needs to know about a model.

    ``endpoint`` picks the native path; the limits are the documented thinking-mode
    limits (``None`` where the documentation gives none).
    """

    endpoint: Endpoint
    context_window: int
    max_output_tokens: int
    max_input_tokens: int | None = None
    max_thinking_tokens: int | None = None
    code_interpreter: bool = True


_QWEN3_MAX = ModelInfo("text", 262_144, 32_768, 258_048, 81_920)
_QWEN35_PLUS = ModelInfo("multimodal", 1_000_000, 65_536)
_QWEN3_VL = ModelInfo("multimodal", 262_144, 32_768, code_interpreter=False)
_UNKNOWN_TEXT = ModelInfo("text", 131_072, 8_192, code_interpreter=False)

#: exact model names (checked first)
MODELS: dict[str, ModelInfo] = {
    "qwen3-max-preview": _QWEN3_MAX,
    "qwen3-max": _QWEN3_MAX,
    "qwen3-max-2026-01-23": _QWEN3_MAX,
    "qwen3.5-plus": _QWEN35_PLUS,
    "qwen3.5-plus-2026-02-15": _QWEN35_PLUS,
}

#: patterns for model families whose members are not all listed (first match wins)
MODEL_PATTERNS: tuple[tuple[str, ModelInfo], ...] = (
    (r"qwen3-max(-[\w.-]+)?", _QWEN3_MAX),
    # qwen3.5-plus and later Plus models (qwen3.6-plus, qwen4-plus, ...) are multimodal
    (r"qwen(3\.[5-9]|[4-9](\.\d+)?)-plus(-[\w.-]+)?", _QWEN35_PLUS),
    (r"qwen3-vl[\w.-]*", _QWEN3_VL),
)
_COMPILED_PATTERNS = tuple((re.compile(p), info) for p, info in MODEL_PATTERNS)


#: models the service serves without the code interpreter (refused before sending)
_NO_CODE_INTERPRETER = re.compile(
    r"(?:qwen-(?:plus|max|turbo|flash|long|coder-plus)|qwen3-vl[\w.-]*|qwen2(?:\.5)?-[\w.-]+"
    r"|qwen3-(?:\d+b|coder)[\w.-]*|qwq[\w.-]*|qvq[\w.-]*)(?:-latest|-\d{4}-\d{2}-\d{2})?"
)


def code_interpreter_refusal(model: str) -> str | None:
    """Why ``model`` cannot run the code interpreter, for models known not to; else None.

    Unknown names pass (the service's list moves; self-hosted servers have their own).

    Example:
        >>> code_interpreter_refusal("qwen-plus").split(";")[0]
        "Model 'qwen-plus' has no code interpreter"
        >>> code_interpreter_refusal("qwen3-max-preview") is None
        True
    """
    if not _NO_CODE_INTERPRETER.fullmatch(model) or model in MODELS:
        return None
    supported = ", ".join(MODELS)
    return (
        f"Model {model!r} has no code interpreter; use one that has: {supported} "
        "(and later qwen3-max / Plus models)."
    )


def is_loopback(url: str | None) -> bool:
    """True when ``url`` points at this machine (a local emulator or server).

    Example:
        >>> is_loopback("http://127.0.0.1:8765"), is_loopback("https://dashscope.aliyuncs.com")
        (True, False)
        >>> is_loopback("http://[::1]:8765"), is_loopback("http://127.example.com")
        (True, False)
    """
    host = urlsplit(url).hostname if url else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost
        return False


def model_info(model: str) -> ModelInfo:
    """Return the table entry for ``model``; unknown models are text models."""
    info = MODELS.get(model)
    if info is not None:
        return info
    for pattern, candidate in _COMPILED_PATTERNS:
        if pattern.fullmatch(model):
            return candidate
    return _UNKNOWN_TEXT


def known_model_info(model: str) -> ModelInfo | None:
    """The table entry for ``model`` when the table knows it (by name or family), else None.

    Example:
        >>> known_model_info("qwen3-max").max_output_tokens, known_model_info("my-model")
        (32768, None)
    """
    info = model_info(model)
    return None if info is _UNKNOWN_TEXT else info


def closest_models(model: str, n: int = 3) -> list[str]:
    """The known model names closest to ``model`` (for a mistyped name), best first.

    Example:
        >>> closest_models("qwen3-max-preveiw")[0]
        'qwen3-max-preview'
    """
    return difflib.get_close_matches(model, list(MODELS), n=n, cutoff=0.6)


def normalize_base_url(url: str) -> str:
    """Reduce ``url`` to the service root ``scheme://host[:port]`` (plus any proxy prefix).

    A URL pasted with ``/compatible-mode/v1`` or ``/api/v1`` (or a full endpoint path)
    at the end is cut back to the root.
    """
    raw = url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequestError(
            f"base_url {url!r} is not an http(s) URL; pass the service root, for example "
            "'https://dashscope.aliyuncs.com' or 'http://127.0.0.1:8765'."
        )
    if parts.query or parts.fragment:
        raise InvalidRequestError(
            f"base_url {url!r} has a query or fragment; pass the service root only."
        )
    path = parts.path.rstrip("/")
    for suffix in _PASTED_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}"


def resolve_base_url(base_url: str | None, region: str | None) -> str:
    """The service root: explicit ``base_url``, then ``DASHSCOPE_BASE_URL``, then region."""
    chosen = base_url or os.environ.get(BASE_URL_ENV) or None
    if chosen:
        return normalize_base_url(chosen)
    name = region or DEFAULT_REGION
    try:
        return REGION_HOSTS[name]
    except KeyError:
        known = ", ".join(REGION_HOSTS)
        raise InvalidRequestError(
            f"Unknown region {name!r}; use one of {known}, or pass base_url."
        ) from None


def region_of(base_url: str) -> str | None:
    """The region whose host is ``base_url``, if it is one of the known hosts."""
    for name, host in REGION_HOSTS.items():
        if base_url == host:
            return name
    return None


def check_protocol(protocol: str) -> Protocol:
    """Validate a protocol name."""
    if protocol == "dashscope":
        return "dashscope"
    if protocol == "openai":
        return "openai"
    raise InvalidRequestError(
        f"Unknown protocol {protocol!r}; use 'dashscope' (native, returns the executed code) "
        "or 'openai' (OpenAI-compatible chat completions, no executed code)."
    )

