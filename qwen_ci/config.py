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

Protocol = Literal["dashscope", "openai", "responses"]
PROTOCOLS: tuple[Protocol, ...] = ("dashscope", "openai", "responses")
#: what each protocol returns besides thinking and answer (the wording of refusals)
PROTOCOL_RETURNS: dict[Protocol, str] = {
    "dashscope": "native, returns the executed code",
    "responses": "OpenAI-compatible Responses API, returns the code and its output",
    "openai": "OpenAI-compatible chat completions, no executed code",
}

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
RESPONSES_PATH = COMPATIBLE_PREFIX + "/responses"
#: the legacy Responses path, documented as "will be deprecated soon" (accepted when pasted)
LEGACY_RESPONSES_PATH = "/api/v2/apps/protocols/compatible-mode/v1/responses"

# Suffixes users paste from the docs; the root is what is left.
_PASTED_SUFFIXES = (
    LEGACY_RESPONSES_PATH,
    COMPATIBLE_PATH,
    RESPONSES_PATH,
    COMPATIBLE_PREFIX,
    NATIVE_PATHS["text"],
    NATIVE_PATHS["multimodal"],
    "/api/v1",
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the client needs to know about a model.

    ``endpoint`` picks the native path; the limits are the documented thinking-mode
    limits (``None`` where the documentation gives none); ``protocols`` are the protocols
    that serve this model's code interpreter, best first (the one that returns the most:
    Responses, then native, then chat completions); the first is the default.
    """

    endpoint: Endpoint
    context_window: int
    max_output_tokens: int
    max_input_tokens: int | None = None
    max_thinking_tokens: int | None = None
    code_interpreter: bool = True
    protocols: tuple[Protocol, ...] = ("dashscope", "openai")


# Which protocols serve the interpreter, per model. The sources disagree over time
# (../shared/PROTOCOL.md section 6); each row says which source it follows:
#   ZH-new  the newest Chinese page (Qwen3.8 era): Responses recommended for Qwen3.8-Max,
#           Qwen3.7-Max, Qwen3.7-Plus, Qwen3.6-Plus, the Qwen3.5-Plus series,
#           deepseek-v4-flash; Responses only for the Flash series (3.5-3.8) and the open
#           Qwen3.5/3.6 models; native and chat completions only for the Qwen3-Max series
#           (thinking) and the Qwen3.5-Plus series.
#   EN-new  the newest English page: qwen3.7-plus in the native and chat-completions
#           examples.
#   EN-2026 the early-2026 English page: Responses "only for qwen3-coder-next and
#           qwen3-max-2026-01-23 in thinking mode" (its China tab: not supported yet).
_NATIVE_COMPAT: tuple[Protocol, ...] = ("dashscope", "openai")
_ALL: tuple[Protocol, ...] = ("responses", "dashscope", "openai")
_RESPONSES_ONLY: tuple[Protocol, ...] = ("responses",)

# ZH-new: native + chat completions for the Qwen3-Max series; no Responses listed for it
_QWEN3_MAX = ModelInfo("text", 262_144, 32_768, 258_048, 81_920, protocols=_NATIVE_COMPAT)
# EN-2026: Responses for this snapshot too; ZH-new lists only native + chat completions
_QWEN3_MAX_0123 = ModelInfo("text", 262_144, 32_768, 258_048, 81_920, protocols=_ALL)
# ZH-new: Responses recommended, native + chat completions too
_QWEN35_PLUS = ModelInfo("multimodal", 1_000_000, 65_536, protocols=_ALL)
# ZH-new: Responses recommended (native/chat completions listed only for 3.5-Plus);
# EN-new: qwen3.7-plus in the native and chat-completions examples: all three kept
_QWEN37_PLUS = ModelInfo("multimodal", 1_000_000, 65_536, protocols=_ALL)
# ZH-new: Responses recommended; native/chat completions listed only for 3.5-Plus
_QWEN36_PLUS = ModelInfo("multimodal", 1_000_000, 65_536, protocols=_RESPONSES_ONLY)
# ZH-new: Responses recommended for Qwen3.7-Max and Qwen3.8-Max; native/chat completions
# named only for "the Qwen3-Max series" (whether that includes 3.7/3.8-Max is not said)
_QWEN3X_MAX = ModelInfo("text", 262_144, 32_768, protocols=_RESPONSES_ONLY)
# ZH-new: Responses only (the Flash series 3.5-3.8, the open Qwen3.5/3.6 models,
# deepseek-v4-flash); limits not documented on the interpreter page (the defaults below)
_RESPONSES_TEXT = ModelInfo("text", 131_072, 8_192, protocols=_RESPONSES_ONLY)
# EN-2026: Responses only for qwen3-coder-next
_CODER_NEXT = ModelInfo("text", 262_144, 65_536, protocols=_RESPONSES_ONLY)
_QWEN3_VL = ModelInfo("multimodal", 262_144, 32_768, code_interpreter=False)
# not in the table: any protocol may be asked for (self-hosted servers have their own);
# native by default, as before the table knew protocols
_UNKNOWN_TEXT = ModelInfo("text", 131_072, 8_192, code_interpreter=False,
                          protocols=("dashscope", "openai", "responses"))

#: exact model names (checked first)
MODELS: dict[str, ModelInfo] = {
    "qwen3-max-preview": _QWEN3_MAX,
    "qwen3-max": _QWEN3_MAX,
    "qwen3-max-2026-01-23": _QWEN3_MAX_0123,
    "qwen3.5-plus": _QWEN35_PLUS,
    "qwen3.5-plus-2026-02-15": _QWEN35_PLUS,
    "qwen3.6-plus": _QWEN36_PLUS,
    "qwen3.7-plus": _QWEN37_PLUS,
    "qwen3.7-max": _QWEN3X_MAX,
    "qwen3.8-max": _QWEN3X_MAX,
    "qwen3-coder-next": _CODER_NEXT,
    "deepseek-v4-flash": _RESPONSES_TEXT,
}

#: patterns for model families whose members are not all listed (first match wins)
MODEL_PATTERNS: tuple[tuple[str, ModelInfo], ...] = (
    (r"qwen3-max(-[\w.-]+)?", _QWEN3_MAX),
    (r"qwen3\.5-plus(-[\w.-]+)?", _QWEN35_PLUS),
    (r"qwen3\.6-plus(-[\w.-]+)?", _QWEN36_PLUS),
    (r"qwen3\.7-plus(-[\w.-]+)?", _QWEN37_PLUS),
    (r"qwen3\.[78]-max(-[\w.-]+)?", _QWEN3X_MAX),
    (r"qwen3\.[5-8]-flash(-[\w.-]+)?", _RESPONSES_TEXT),
    (r"qwen3\.[56]-\d+b(-a\d+b)?[\w.-]*", _RESPONSES_TEXT),
    # later Plus models (qwen3.8-plus, qwen4-plus, ...): multimodal, protocols as 3.7-Plus
    (r"qwen(3\.[89]|[4-9](\.\d+)?)-plus(-[\w.-]+)?", _QWEN37_PLUS),
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
    for name in PROTOCOLS:
        if protocol == name:
            return name
    known = "; ".join(f"{name!r} ({PROTOCOL_RETURNS[name]})" for name in PROTOCOLS)
    raise InvalidRequestError(f"Unknown protocol {protocol!r}; use {known}.")


def protocol_for(model: str, protocol: str | None = None) -> Protocol:
    """The protocol of a call: ``protocol`` if ``model`` supports it, else refused; with
    none given, the best one the model supports (the one that returns the most).

    Example:
        >>> protocol_for("qwen3-max-preview"), protocol_for("qwen3.5-plus")
        ('dashscope', 'responses')
        >>> protocol_for("qwen3.6-flash", "dashscope")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qwen_ci.errors.InvalidRequestError: Model 'qwen3.6-flash' does not serve ... 'responses' ...
    """
    supported = model_info(model).protocols
    if protocol is None:
        return supported[0]
    proto = check_protocol(protocol)
    if proto not in supported:
        names = " or ".join(f"{name!r} ({PROTOCOL_RETURNS[name]})" for name in supported)
        raise InvalidRequestError(
            f"Model {model!r} does not serve the code interpreter on protocol {proto!r}; "
            f"use protocol {names}, or leave protocol unset to get the best one."
        )
    return proto
