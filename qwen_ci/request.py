"""Messages and options -> the wire body of each protocol, with local validation.

Everything that can be checked without the network is checked here, before any I/O.
Adapters pass messages in the core's neutral shape::

    {"role": "system" | "user" | "assistant",
     "content": "text" | [{"type": "text", "text": ...}, {"type": "image", "url": ...}]}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from qwen_ci.config import (
    COMPATIBLE_PATH,
    DEFAULT_MODEL,
    NATIVE_PATHS,
    RESPONSES_PATH,
    Protocol,
    code_interpreter_refusal,
    known_model_info,
    model_info,
    protocol_for,
)
from qwen_ci.errors import InvalidRequestError
from qwen_ci.events import BUILTIN_TOOLS, TOOL_NAME, WEB_EXTRACTOR, WEB_SEARCH

NO_FUNCTION_CALLING = (
    "the Qwen code interpreter cannot be combined with function calling: DashScope "
    "rejects a request that enables both (enable_code_interpreter and tools are mutually "
    "exclusive)."
)
"""Why function calling is refused: the one wording, used by every refusal."""
TOOLS_ERROR = (
    NO_FUNCTION_CALLING[0].upper() + NO_FUNCTION_CALLING[1:] + " Remove {what}. To combine "
    "the interpreter with your own tools, use a ReAct-style agent, which describes tools in "
    "text and needs no function calling."
)
STRUCTURED_ERROR = (
    "Structured output / JSON mode ({what}) is not available: the code interpreter needs "
    "thinking mode, and DashScope rejects JSON mode when enable_thinking is true. Ask for "
    "JSON in the prompt and parse the answer (for example with a LangChain output parser)."
)

#: argument names that mean function calling
TOOL_KEYS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")
#: argument names that mean structured output
STRUCTURED_KEYS = ("response_format",)
#: flags the interpreter needs, with the value it needs and why
_REQUIRED_FLAGS: dict[str, tuple[Any, str]] = {
    "enable_code_interpreter": (True, "this model class exists to run the code interpreter"),
    "enable_thinking": (True, "the code interpreter only works in thinking mode"),
    "incremental_output": (True, "thinking mode requires incremental output"),
    "stream": (True, "the code interpreter only works on streaming calls"),
    "result_format": ("message", "thinking mode requires result_format 'message'"),
}
_ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class Options:
    """Generation options; ``None`` means "let the service decide".

    The one definition of the service options: the adapters' fields, their per-call
    arguments and the wire body are all derived from these fields.

    Example:
        >>> Options(temperature=0.2).temperature
        0.2
        >>> SERVICE_OPTIONS[-2:]
        ('builtin_tools', 'extra_body')
    """

    model: str = DEFAULT_MODEL
    temperature: float | None = None
    """Sampling temperature, 0 <= t < 2."""
    top_p: float | None = None
    """Nucleus sampling, 0 < top_p <= 1."""
    max_tokens: int | None = None
    """Maximum answer tokens."""
    seed: int | None = None
    stop: Sequence[str] | None = None
    """Stop sequences."""
    thinking_budget: int | None = None
    """Maximum thinking tokens."""
    builtin_tools: Sequence[str] | None = None
    """Built-in tools to enable beside the interpreter: ``"web_search"`` (every protocol;
    native and chat completions send it as ``enable_search``) and ``"web_extractor"``
    (Responses only; needs ``web_search``)."""
    extra_body: Mapping[str, Any] | None = None
    """More service parameters, deep-merged into the body (native: into ``parameters``)."""


#: the service options: every :class:`Options` field but the model
SERVICE_OPTIONS: tuple[str, ...] = tuple(f.name for f in fields(Options) if f.name != "model")
#: the options sent as parameters as they are (the others are translated per protocol)
_PARAMETERS = tuple(name for name in SERVICE_OPTIONS
                    if name not in ("extra_body", "builtin_tools"))


@dataclass(frozen=True, slots=True)
class WireRequest:
    """A request ready to send: its protocol, the path below the service root, the body."""

    protocol: Protocol
    model: str
    path: str
    body: dict[str, Any]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested dicts merge, other values replace."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_no_tools(kwargs: Mapping[str, Any], where: str) -> None:
    """Refuse function-calling and structured-output arguments."""
    for key in TOOL_KEYS:
        if kwargs.get(key) not in (None, [], {}):
            raise InvalidRequestError(TOOLS_ERROR.format(what=f"'{key}' from {where}"))
    for key in STRUCTURED_KEYS:
        if kwargs.get(key) is not None:
            raise InvalidRequestError(STRUCTURED_ERROR.format(what=f"'{key}' in {where}"))


def _check_extra_body(extra: Mapping[str, Any]) -> None:
    check_no_tools(extra, "extra_body")
    for key, (needed, why) in _REQUIRED_FLAGS.items():
        if key in extra and extra[key] != needed:
            raise InvalidRequestError(
                f"extra_body sets {key}={extra[key]!r}, but {why}; remove it "
                f"(the client always sends {key}={needed!r})."
            )
    params = extra.get("parameters")
    if isinstance(params, Mapping):
        _check_extra_body(params)


def _check_options(opts: Options) -> None:
    if not isinstance(opts.model, str) or not opts.model.strip():
        raise InvalidRequestError("model must be a non-empty string such as 'qwen3-max-preview'.")
    if (refusal := code_interpreter_refusal(opts.model)) is not None:
        raise InvalidRequestError(refusal)
    if opts.temperature is not None and not 0 <= opts.temperature < 2:
        raise InvalidRequestError(
            f"temperature={opts.temperature} is out of range; DashScope takes 0 <= t < 2."
        )
    if opts.top_p is not None and not 0 < opts.top_p <= 1:
        raise InvalidRequestError(f"top_p={opts.top_p} is out of range; use 0 < top_p <= 1.")
    for name in ("max_tokens", "thinking_budget"):
        value = getattr(opts, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value <= 0):
            raise InvalidRequestError(f"{name}={value!r} must be a positive integer.")
    _check_limits(opts)
    if opts.seed is not None and (isinstance(opts.seed, bool) or not isinstance(opts.seed, int)
                                  or opts.seed < 0):
        raise InvalidRequestError(f"seed={opts.seed!r} must be a non-negative integer.")
    if opts.stop is not None and (
        isinstance(opts.stop, str) or not all(isinstance(s, str) for s in opts.stop)
    ):
        raise InvalidRequestError("stop must be a list of strings.")
    if opts.extra_body:
        _check_extra_body(opts.extra_body)
    _check_builtin_tools(opts.builtin_tools)


def _check_builtin_tools(tools: Sequence[str] | None) -> None:
    if tools is None:
        return
    if isinstance(tools, str) or not all(isinstance(t, str) for t in tools):
        raise InvalidRequestError(
            f"builtin_tools must be a list of names such as ['web_search'], not {tools!r}."
        )
    unknown = [t for t in tools if t not in BUILTIN_TOOLS]
    if unknown:
        what = "the interpreter is always on" if unknown == [TOOL_NAME] else (
            "function tools cannot be combined with the interpreter" if "function" in unknown
            else "others are not supported")
        raise InvalidRequestError(
            f"builtin_tools has {', '.join(map(repr, unknown))}; the built-in tools that can "
            f"be enabled beside the interpreter are {', '.join(map(repr, BUILTIN_TOOLS))} "
            f"({what})."
        )
    if WEB_EXTRACTOR in tools and WEB_SEARCH not in tools:
        raise InvalidRequestError(
            "builtin_tools has 'web_extractor' without 'web_search'; the service needs "
            "web_search for web_extractor: pass ['web_search', 'web_extractor']."
        )


def _check_limits(opts: Options) -> None:
    """``max_tokens`` and ``thinking_budget`` within the model's documented limits."""
    info = known_model_info(opts.model)
    if info is None:
        return  # a name the table does not know (a self-hosted model): its server decides
    for name, limit in (("max_tokens", info.max_output_tokens),
                        ("thinking_budget", info.max_thinking_tokens)):
        value = getattr(opts, name)
        if value is not None and limit is not None and value > limit:
            raise InvalidRequestError(
                f"{name}={value} is above {opts.model!r}'s limit of {limit}; use at most {limit}."
            )


def _parts(content: Any, index: int) -> list[dict[str, str]]:
    """Normalize content to a list of ``text`` / ``image`` parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequestError(
            f"messages[{index}].content must be a string or a list of parts, "
            f"not {type(content).__name__}."
        )
    parts: list[dict[str, str]] = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
            continue
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image" and isinstance(part.get("url"), str):
            parts.append({"type": "image", "url": part["url"]})
        else:
            raise InvalidRequestError(
                f"messages[{index}] has a content part this client cannot send "
                f"({kind!r}); supported parts are text and images."
            )
    return parts


def _normalize(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[dict[str, str]]]]:
    """Validate roles, merge system messages into one leading system message."""
    if not messages:
        raise InvalidRequestError("messages is empty; pass at least one user message.")
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, str]]]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in ("tool", "function") or message.get("tool_calls"):
            raise InvalidRequestError(
                TOOLS_ERROR.format(
                    what=f"the tool call / tool result at messages[{index}] from the history"
                )
            )
        if role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{index}] has role {role!r}; use system, user or assistant."
            )
        parts = _parts(message.get("content", ""), index)
        if role == "system":
            if any(p["type"] != "text" for p in parts):
                raise InvalidRequestError(f"messages[{index}]: system messages take text only.")
            system.append("".join(p["text"] for p in parts))
        elif role == "assistant":
            # thinking and tool_info are not sent back: the answer text only
            turns.append(("assistant", [p for p in parts if p["type"] == "text"]))
        else:
            turns.append((role, parts))
    if not turns:
        raise InvalidRequestError(
            "messages has only system messages; add a user message with the question."
        )
    merged = [("system", [{"type": "text", "text": "\n\n".join(system)}])] if system else []
    return merged + turns


def _text(parts: list[dict[str, str]]) -> str:
    return "".join(p["text"] for p in parts if p["type"] == "text")


def build(
    messages: Sequence[Mapping[str, Any]], options: Options, protocol: str | None = None
) -> WireRequest:
    """Validate and build the wire request; raises :class:`InvalidRequestError`.

    ``protocol`` ``None`` takes the best protocol the model supports (the model table,
    :func:`~qwen_ci.config.protocol_for`); one the model does not support is refused.
    """
    _check_options(options)
    proto = protocol_for(options.model, protocol)
    tools = list(options.builtin_tools or ())
    if WEB_EXTRACTOR in tools and proto != "responses":
        raise InvalidRequestError(
            f"builtin_tools 'web_extractor' needs protocol 'responses' (this call uses "
            f"{proto!r}); on the other protocols only 'web_search' can be enabled."
        )
    turns = _normalize(messages)
    info = model_info(options.model)
    has_images = any(p["type"] == "image" for _, parts in turns for p in parts)
    if has_images and info.endpoint != "multimodal":
        raise InvalidRequestError(
            f"Model {options.model!r} is a text model and cannot take images; use a "
            "multimodal model such as 'qwen3.5-plus', or send text only."
        )
    if proto == "openai":
        return _compatible(turns, options)
    if proto == "responses":
        return _responses(turns, options)
    return _native(turns, options, info.endpoint == "multimodal")


def _sampling(options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _PARAMETERS:
        value = getattr(options, name)
        if name == "stop":
            if value:
                out["stop"] = list(value)
        elif value is not None:
            out[name] = value
    return out


def _native(
    turns: list[tuple[str, list[dict[str, str]]]], options: Options, multimodal: bool
) -> WireRequest:
    wire_messages: list[dict[str, Any]] = []
    for role, parts in turns:
        if multimodal:
            content: Any = [
                {"text": p["text"]} if p["type"] == "text" else {"image": p["url"]}
                for p in parts
            ]
        else:
            content = _text(parts)
        wire_messages.append({"role": role, "content": content})
    parameters: dict[str, Any] = {
        "enable_code_interpreter": True,
        "enable_thinking": True,
        "result_format": "message",
        "incremental_output": True,
        **_sampling(options),
        **_search(options),
    }
    extra = dict(options.extra_body or {})
    nested = extra.pop("parameters", None)
    if extra:
        parameters = deep_merge(parameters, extra)
    if isinstance(nested, Mapping):
        parameters = deep_merge(parameters, nested)
    body = {
        "model": options.model,
        "input": {"messages": wire_messages},
        "parameters": parameters,
    }
    path = NATIVE_PATHS["multimodal" if multimodal else "text"]
    return WireRequest("dashscope", options.model, path, body)


def _compatible(turns: list[tuple[str, list[dict[str, str]]]], options: Options) -> WireRequest:
    wire_messages: list[dict[str, Any]] = []
    for role, parts in turns:
        if all(p["type"] == "text" for p in parts):
            content: Any = _text(parts)
        else:
            content = [
                {"type": "text", "text": p["text"]}
                if p["type"] == "text"
                else {"type": "image_url", "image_url": {"url": p["url"]}}
                for p in parts
            ]
        wire_messages.append({"role": role, "content": content})
    body: dict[str, Any] = {
        "model": options.model,
        "messages": wire_messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "enable_thinking": True,
        "enable_code_interpreter": True,
        **_sampling(options),
        **_search(options),
    }
    if options.extra_body:
        body = deep_merge(body, options.extra_body)
    return WireRequest("openai", options.model, COMPATIBLE_PATH, body)


def _search(options: Options) -> dict[str, Any]:
    """``web_search`` on the native and chat-completions protocols: ``enable_search``."""
    return {"enable_search": True} if WEB_SEARCH in (options.builtin_tools or ()) else {}


def _responses(turns: list[tuple[str, list[dict[str, str]]]], options: Options) -> WireRequest:
    """The Responses body: system text as ``instructions``, the turns as ``input``, the
    interpreter (and the chosen built-in tools) in ``tools``.

    ``max_tokens`` is sent as ``max_output_tokens`` (the Responses name); ``seed``,
    ``stop`` and ``thinking_budget`` are sent as in chat completions (the Responses
    reference does not list them: whether the service honours them is unknown).
    """
    wire_input: list[dict[str, Any]] = []
    instructions: str | None = None
    for role, parts in turns:
        if role == "system":
            instructions = _text(parts)
            continue
        content: Any
        if role == "assistant" or all(p["type"] == "text" for p in parts):
            content = _text(parts)
        else:
            content = [
                {"type": "input_text", "text": p["text"]}
                if p["type"] == "text"
                else {"type": "input_image", "image_url": p["url"]}
                for p in parts
            ]
        wire_input.append({"role": role, "content": content})
    sampling = _sampling(options)
    if "max_tokens" in sampling:
        sampling["max_output_tokens"] = sampling.pop("max_tokens")
    tools = [{"type": TOOL_NAME}] + [{"type": t} for t in options.builtin_tools or ()]
    body: dict[str, Any] = {"model": options.model, "input": wire_input}
    if instructions is not None:
        body["instructions"] = instructions
    body.update({"tools": tools, "enable_thinking": True, "stream": True, **sampling})
    if options.extra_body:
        body = deep_merge(body, options.extra_body)
    return WireRequest("responses", options.model, RESPONSES_PATH, body)
