"""What the hosted service accepts, model by model: the emulator's own table.

Written from the service's documentation and recorded traffic (each entry names its
source), not taken from the client's tables in :mod:`qwen_ci.config`: a wrong entry there
must not be reproduced here, and ``tests/emulator/test_service_table.py`` compares the two.
Only exact names are accepted, as the service does (no family patterns: a typo such as
``qwen3-max-preveiw`` gets ``Model not exist.``). The endpoint paths are the emulator's own
copy too: a wrong path in the client must fail against its oracle.

Sources (short names used in the table):

- ``seed``: the code-interpreter page of 2025-11-04 (``shared/seed``): qwen3-max-preview,
  thinking mode and streaming required.
- ``ci-page``: the newest code-interpreter page (help.aliyun.com / alibabacloud.com
  ``model-studio/qwen-code-interpreter``, docs.qwencloud.com ``code-interpreter``): models
  qwen3-max, qwen3-max-2026-01-23 ("requires thinking mode"), qwen3.5-plus(-2026-02-15),
  qwen3.6-plus(-2026-04-02); qwen3.5-plus called through ``MultiModalConversation``
  without ``incremental_output``, answered incrementally.
- ``api-ref``: the DashScope API reference: ``incremental_output`` defaults to true for
  Qwen3-Max, Qwen3-VL, Qwen3 open-source, QwQ and QVQ models, false for the rest;
  non-streaming thinking supported for qwen3-max-preview and qwen3.5-plus.
- ``visual-reasoning``: the visual-reasoning page: qwen3.5-plus and later Plus models think
  by default (hybrid), qwen3-vl-plus / qwen3-vl-flash do not; both allow non-streaming
  calls; QVQ streams only.
- ``deep-thinking``: the deep-thinking page: qwen-plus, qwen-flash, qwen-turbo are hybrid
  thinking models (``enable_thinking`` switches per request, off by default); QwQ thinks
  always; thinking mode of these models streams only
  (``parameter.enable_thinking must be set to false for non-streaming calls``).
- ``responses-ref``: Model Studio's Responses API reference and the code-interpreter
  page's Responses tab (summarised in ``shared/PROTOCOL.md`` section 6): the new path and
  the legacy one, the request fields, built-in tools, output items, events and usage.
- ``recorded``: ``shared/fixtures/recorded``: qwen-max and qwen-plus answer ordinary
  requests, qwen-plus-latest thinks with ``thinking_budget``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Endpoint = Literal["text", "multimodal"]
Api = Literal["native", "compatible", "responses"]
"""The service's three ways to call the interpreter."""
ALL_APIS: tuple[Api, ...] = ("native", "compatible", "responses")
RESPONSES_ONLY: tuple[Api, ...] = ("responses",)

NATIVE_PATHS: dict[Endpoint, str] = {
    "text": "/api/v1/services/aigc/text-generation/generation",
    "multimodal": "/api/v1/services/aigc/multimodal-generation/generation",
}
"""The native protocol's paths (seed, api-ref): text models and multimodal (Plus, VL)
models; a model sent to the other one gets ``url error, please check url!``."""
COMPATIBLE_PATH = "/compatible-mode/v1/chat/completions"
"""OpenAI-compatible chat completions (seed, api-ref)."""
RESPONSES_PATH = "/compatible-mode/v1/responses"
"""The OpenAI-compatible Responses API (ci-page, responses-ref): the only protocol that
returns what the code printed."""
LEGACY_RESPONSES_PATH = "/api/v2/apps/protocols/compatible-mode/v1/responses"
"""The Responses API's older path, which "will be deprecated soon" (responses-ref); the
emulator serves both alike."""
RESPONSES_PATHS = (RESPONSES_PATH, LEGACY_RESPONSES_PATH)
OPENAI_PATHS = (COMPATIBLE_PATH, *RESPONSES_PATHS)
"""Paths whose errors take the OpenAI-compatible shape (``{"error": {...}}``)."""

API_KEY_ENV = "DASHSCOPE_API_KEY"
BASE_URL_ENV = "DASHSCOPE_BASE_URL"
"""The environment variables DashScope's SDKs read (api-ref); the banner tells users to
set them to the emulator's address."""
ThinkingMode = Literal["never", "hybrid", "always"]
"""No thinking mode; thinking switched by ``enable_thinking``; thinking that cannot be
turned off."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What the service accepts for one model.

    Example:
        >>> SERVED["qwen3.5-plus"].thinking_default
        True
        >>> SERVED["qwen3-max"].endpoint
        'text'
    """

    endpoint: Endpoint
    """Native path that serves it (the other gets ``url error, please check url!``)."""
    code_interpreter: bool
    """``enable_code_interpreter`` accepted."""
    thinking: ThinkingMode
    thinking_default: bool
    """Thinking when ``enable_thinking`` is not sent."""
    non_streaming_thinking: bool
    """Thinking allowed in a non-streaming call (else the documented 400)."""
    incremental_default: bool
    """``incremental_output`` when not sent (native protocol)."""
    result_format_default: Literal["text", "message"]
    """``result_format`` when not sent (native text endpoint)."""
    max_thinking_tokens: int | None
    """Largest ``thinking_budget`` (None: not documented, the emulator does not cap it)."""
    source: str
    interpreter_apis: tuple[Api, ...] = ALL_APIS
    """Where the interpreter is served. The pages disagree over time (PROTOCOL.md section
    6); a model is limited only where no page offers it elsewhere, so the emulator is
    lenient where they conflict (its own choice)."""


_QWEN3_MAX = ServedModel("text", True, "hybrid", False, False, True, "message", 81_920,
                         "seed, ci-page, api-ref")
_QWEN3_MAX_PREVIEW = ServedModel("text", True, "hybrid", False, True, True, "message",
                                 81_920, "seed, api-ref (non-streaming thinking)")
_PLUS_MULTIMODAL = ServedModel("multimodal", True, "hybrid", True, True, True, "message",
                               None, "ci-page, visual-reasoning, api-ref")
_QWEN3_VL = ServedModel("multimodal", False, "hybrid", False, True, True, "message", None,
                        "visual-reasoning, api-ref")
_HYBRID_TEXT = ServedModel("text", False, "hybrid", False, False, False, "text", None,
                           "deep-thinking, api-ref, recorded")
_PLAIN_TEXT = ServedModel("text", False, "never", False, False, False, "text", None,
                          "api-ref, recorded")
_RESPONSES_MAX = ServedModel("text", True, "hybrid", False, False, True, "message", None,
                             "responses-ref (newest ZH page: Responses only)", RESPONSES_ONLY)
_RESPONSES_TEXT = ServedModel("text", True, "hybrid", False, False, True, "message", None,
                              "responses-ref (newest ZH page; early-2026 EN page for "
                              "qwen3-coder-next: Responses only)", RESPONSES_ONLY)
_QWQ = ServedModel("text", False, "always", True, False, True, "message", None,
                   "deep-thinking, api-ref")

SERVED: dict[str, ServedModel] = {
    # the code interpreter's models
    "qwen3-max-preview": _QWEN3_MAX_PREVIEW,
    "qwen3-max": _QWEN3_MAX,
    "qwen3-max-2026-01-23": _QWEN3_MAX,
    "qwen3.5-plus": _PLUS_MULTIMODAL,
    "qwen3.5-plus-2026-02-15": _PLUS_MULTIMODAL,
    "qwen3.6-plus": _PLUS_MULTIMODAL,
    "qwen3.6-plus-2026-04-02": _PLUS_MULTIMODAL,
    "qwen3.7-plus": _PLUS_MULTIMODAL,  # responses-ref; newest EN page: native, chat too
    # the interpreter through the Responses API only
    "qwen3.7-max": _RESPONSES_MAX,
    "qwen3.8-max": _RESPONSES_MAX,
    "qwen3-coder-next": _RESPONSES_TEXT,
    "deepseek-v4-flash": _RESPONSES_TEXT,
    # common models without the interpreter (recorded traffic and everyday clients)
    "qwen3-vl-plus": _QWEN3_VL,
    "qwen3-vl-flash": _QWEN3_VL,
    "qwen-max": _PLAIN_TEXT,
    "qwen-max-latest": _PLAIN_TEXT,
    "qwen-plus": _HYBRID_TEXT,
    "qwen-plus-latest": _HYBRID_TEXT,
    "qwen-flash": _HYBRID_TEXT,
    "qwen-turbo": _HYBRID_TEXT,
    "qwen-turbo-latest": _HYBRID_TEXT,
    "qwq-plus": _QWQ,
}
"""Exact model names the emulator serves, as the service accepts them."""

EXTRA_MODEL = ServedModel("text", True, "hybrid", False, False, False, "message", None,
                          "the emulator's own: a self-hosted upstream model")
"""How a model added with ``extra_models`` (self-hosted mode) is served."""


def served(model: str, extra_models: Collection[str] = ()) -> ServedModel | None:
    """The entry for ``model``; None when the service does not know it. A name in
    ``extra_models`` is the self-hosted upstream model, even when the service has a model
    of that name (``qwen-plus`` behind ``qwen-ci serve`` gets the interpreter)."""
    if model in extra_models:
        return EXTRA_MODEL
    return SERVED.get(model)


__all__ = [
    "ALL_APIS",
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "COMPATIBLE_PATH",
    "EXTRA_MODEL",
    "LEGACY_RESPONSES_PATH",
    "NATIVE_PATHS",
    "OPENAI_PATHS",
    "RESPONSES_ONLY",
    "RESPONSES_PATH",
    "RESPONSES_PATHS",
    "SERVED",
    "Api",
    "Endpoint",
    "ServedModel",
    "ThinkingMode",
    "served",
]
