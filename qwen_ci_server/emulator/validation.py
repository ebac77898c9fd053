"""Request bodies of both protocols -> a :class:`Generation`, or the service's error.

The checks and messages are the real service's where they are known (PROTOCOL.md,
section 5); where they are not, the message starts with ``qwen-ci emulator:``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from qwen_ci_server.emulator.engine import Generation
from qwen_ci_server.emulator.model import Message, Role
from qwen_ci_server.emulator.service import Api, Endpoint, ServedModel, served
from qwen_ci_server.emulator.wire import (
    URL_ERROR,
    ServiceError,
    emulator_invalid,
    invalid_parameter,
    model_not_found,
)

MISSING = "Required parameter(s) missing or invalid, please check the request parameters."
BAD_MESSAGES = "Role must be user or assistant and Content length must be greater than 0"
NOT_STREAMING = "parameter.enable_thinking must be set to false for non-streaming calls"
NOT_INCREMENTAL = 'The incremental_output parameter must be "true" when enable_thinking is true'
JSON_MODE = "Json mode response is not supported when enable_thinking is true"
RESULT_FORMAT = 'The result_format parameter must be "message" when enable_thinking is true'
_JSON_FORMATS = ("json_object", "json_schema")
_ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid request: what to generate and how to send it.

    Example:
        >>> body = {"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}],
        ...         "stream": True}
        >>> parse_compatible(body).generation.messages[0].text
        'hi'
    """

    generation: Generation
    stream: bool
    incremental: bool = True
    multimodal: bool = False
    include_usage: bool = True
    text_format: bool = False
    """Native ``result_format: "text"``: frames carry ``output.text``."""


def known_model(model: str) -> bool:
    """True for the exact model names the service accepts (the emulator's own table)."""
    return served(model) is not None


MAX_BODY_BYTES = 16 << 20
"""Largest request body accepted (the emulator's own limit; the service's is unknown)."""
MAX_MESSAGES = 1024
"""Most messages in one request (the emulator's own limit)."""
MAX_DEPTH = 32
"""Deepest JSON nesting accepted; real request bodies are about 7 levels deep."""


def too_large(size: int, limit: int = MAX_BODY_BYTES) -> ServiceError:
    """400 for a body over the limit."""
    return emulator_invalid(
        f"the request body has {size} bytes, more than the limit of {limit} bytes; "
        "send fewer or shorter messages."
    )


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def load_body(raw: bytes, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The JSON object of a request body, or a 400: the service's where the case is known,
    the emulator's own for oversized or too deeply nested bodies."""
    if len(raw) > max_bytes:
        raise too_large(len(raw), max_bytes)
    try:
        body = json.loads(raw.decode("utf-8-sig") or "null")
    except RecursionError:
        raise emulator_invalid(
            f"the request body is nested more than {MAX_DEPTH} levels deep."
        ) from None
    except ValueError:
        raise invalid_parameter(MISSING) from None
    if not isinstance(body, dict):
        raise invalid_parameter(MISSING)
    if _depth(body) > MAX_DEPTH:
        raise emulator_invalid(f"the request body is nested more than {MAX_DEPTH} levels deep.")
    return body


def _text_of(content: Any) -> str | None:
    """Text of a message's content in either protocol's shape; None when malformed."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif any(key in part for key in ("image", "image_url", "video", "audio")):
                texts.append("[image]")
            else:
                return None
        else:
            return None
    return "".join(texts)


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise invalid_parameter(BAD_MESSAGES)
    if len(raw) > MAX_MESSAGES:
        raise emulator_invalid(
            f"the request has {len(raw)} messages, more than the limit of {MAX_MESSAGES}."
        )
    messages: list[Message] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise invalid_parameter(BAD_MESSAGES)
        role = item.get("role")
        text = _text_of(item.get("content", ""))
        if role not in _ROLES or text is None:
            raise invalid_parameter(BAD_MESSAGES)
        if role == "user" and not text.strip():
            raise invalid_parameter(BAD_MESSAGES)
        messages.append(Message(role, text))
    if not any(m.role == "user" for m in messages):
        raise invalid_parameter(BAD_MESSAGES)
    return tuple(messages)


def _model(
    body: Mapping[str, Any], extra_models: Collection[str] = ()
) -> tuple[str, ServedModel]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_parameter(MISSING)
    entry = served(model, extra_models)
    if entry is None:
        raise model_not_found(model)
    return model, entry


def _stop(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        # token-id stops ([[37763, 367]]) cannot apply to the emulator's text: ignored
        return tuple(s for s in value if isinstance(s, str) and s)
    return ()


def _positive(name: str, value: Any, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (
        maximum is not None and value > maximum
    ):
        if name == "thinking_budget" and maximum is not None:
            raise invalid_parameter(
                "The thinking_budget parameter must be a positive integer and not greater "
                f"than {maximum}"
            )
        raise emulator_invalid(f"{name} must be a positive integer (got {value!r}).")
    return value


def _thinking(model: str, entry: ServedModel, value: Any) -> bool:
    """Thinking on or off: ``enable_thinking`` if sent, else the model's default."""
    if value is None or entry.thinking == "always":
        return entry.thinking_default or entry.thinking == "always"
    if not isinstance(value, bool):
        raise emulator_invalid(f"enable_thinking must be true or false (got {value!r}).")
    if value and entry.thinking == "never":
        raise emulator_invalid(
            f"the model {model} has no thinking mode; leave enable_thinking unset or use a "
            "thinking model such as qwen3-max (the real service's answer is unknown)."
        )
    return value


_PASSED = ("temperature", "top_p", "seed", "enable_search")
"""Options handed to the model as they are."""


def _common(
    model: str, entry: ServedModel, options: Mapping[str, Any], stream: bool, api: Api
) -> tuple[bool, bool]:
    """Checks shared by both protocols; returns (thinking, code_interpreter)."""
    thinking = _thinking(model, entry, options.get("enable_thinking"))
    code_interpreter = options.get("enable_code_interpreter") is True
    if thinking and not stream and not entry.non_streaming_thinking:
        raise invalid_parameter(NOT_STREAMING)
    response_format = options.get("response_format")
    if (
        thinking
        and isinstance(response_format, Mapping)
        and response_format.get("type") in _JSON_FORMATS
    ):
        raise invalid_parameter(JSON_MODE)
    if code_interpreter:
        if not entry.code_interpreter:
            raise emulator_invalid(
                f"the model {model} does not support the code interpreter; use qwen3-max, "
                "qwen3-max-preview or qwen3.5-plus."
            )
        if api not in entry.interpreter_apis:
            raise emulator_invalid(
                f"the model {model} has the code interpreter only through the Responses API "
                "(POST /compatible-mode/v1/responses with tools=[{\"type\": "
                "\"code_interpreter\"}]); the real service's message is unknown."
            )
        if options.get("tools"):
            raise emulator_invalid(
                "enable_code_interpreter cannot be combined with tools (function calling); "
                "the real service rejects this too, with a message the emulator does not know."
            )
        if not thinking:
            raise emulator_invalid(
                "enable_code_interpreter needs enable_thinking=true (the real service "
                "requires thinking mode; its exact message is unknown)."
            )
        if not stream:
            raise emulator_invalid(
                "enable_code_interpreter needs a streaming call (the real service supports "
                "only streaming output here; its exact message is unknown)."
            )
    return thinking, code_interpreter


def _budget(entry: ServedModel, value: Any) -> int | None:
    return _positive("thinking_budget", value, entry.max_thinking_tokens)


def _result_format(entry: ServedModel, value: Any, endpoint: Endpoint, thinking: bool) -> bool:
    """Whether the answer goes out as ``output.text``; thinking needs ``message``."""
    result_format = entry.result_format_default if value is None else value
    if result_format not in ("text", "message"):
        raise emulator_invalid(
            f"result_format must be 'message' or 'text' (got {result_format!r})."
        )
    if thinking and result_format == "text":
        raise invalid_parameter(RESULT_FORMAT)
    # the multimodal endpoint answers in the message shape (its text format is unknown)
    return result_format == "text" and endpoint == "text"


def parse_native(
    body: Mapping[str, Any], endpoint: Endpoint, stream: bool, extra_models: Collection[str] = ()
) -> Parsed:
    """Validate a native request sent to the ``endpoint`` generation path.

    ``extra_models`` are accepted besides the service's model table (self-hosted mode).
    """
    model, entry = _model(body, extra_models)
    if entry.endpoint != endpoint:
        raise URL_ERROR
    source = body.get("input")
    if not isinstance(source, Mapping):
        raise invalid_parameter(MISSING)
    if "messages" in source:
        messages = _messages(source.get("messages"))
    elif isinstance(source.get("prompt"), str) and source["prompt"].strip():
        messages = (Message("user", source["prompt"]),)
    else:
        raise invalid_parameter(MISSING)
    params = body.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise invalid_parameter(MISSING)
    thinking, code_interpreter = _common(model, entry, params, stream, "native")
    sent = params.get("incremental_output")
    incremental = entry.incremental_default if sent is None else sent is True
    if thinking and stream and not incremental:
        raise invalid_parameter(NOT_INCREMENTAL)
    text_format = _result_format(entry, params.get("result_format"), endpoint, thinking)
    generation = Generation(
        model=model,
        messages=messages,
        code_interpreter=code_interpreter,
        thinking=thinking,
        max_tokens=_positive("max_tokens", params.get("max_tokens")),
        thinking_budget=_budget(entry, params.get("thinking_budget")),
        stop=_stop(params.get("stop")),
        options={k: v for k, v in params.items() if k in _PASSED},
    )
    return Parsed(generation, stream, incremental, endpoint == "multimodal",
                  text_format=text_format)


def parse_compatible(body: Mapping[str, Any], extra_models: Collection[str] = ()) -> Parsed:
    """Validate a compatible-mode chat completion request (``extra_models``: as above)."""
    model, entry = _model(body, extra_models)
    if "messages" not in body:
        raise invalid_parameter(MISSING)
    messages = _messages(body.get("messages"))
    stream = body.get("stream") is True
    thinking, code_interpreter = _common(model, entry, body, stream, "compatible")
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, Mapping) and stream_options.get(
        "include_usage"
    ) is True
    generation = Generation(
        model=model,
        messages=messages,
        code_interpreter=code_interpreter,
        thinking=thinking,
        max_tokens=_positive("max_tokens", body.get("max_tokens")),
        thinking_budget=_budget(entry, body.get("thinking_budget")),
        stop=_stop(body.get("stop")),
        options={k: v for k, v in body.items() if k in _PASSED},
    )
    return Parsed(generation, stream, True, False, include_usage)


__all__ = ["Parsed", "ServiceError", "known_model", "load_body", "parse_compatible",
           "parse_native"]
