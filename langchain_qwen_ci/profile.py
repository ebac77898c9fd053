"""The LangChain model profile and an approximate token count, from the one model table.

:func:`model_profile` reads :mod:`qwen_ci.config`'s table (limits, image input), so
``llm.profile`` and the limits the client enforces never disagree. :func:`count_tokens`
is an estimate without a tokenizer (no ``transformers``): every CJK character counts as
one token, other text as one token per four characters, plus a few tokens per message. It
tends to over-count, which is the safe side for ``trim_messages(token_counter=llm)``; the
exact count of a call is in ``usage_metadata``.

Example:
    >>> model_profile("qwen3-max")["max_input_tokens"], model_profile("qwen3-max")["tool_calling"]
    (258048, False)
    >>> count_tokens("123的21次方是多少？")  # 7 wide characters + 5 others
    9
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage

from qwen_ci.config import known_model_info

# CJK ideographs, kana, hangul and full-width forms: about one token each
_WIDE = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff00-\uffef]"
)
#: tokens added per message (role and separators), as chat templates do
PER_MESSAGE = 4
#: tokens counted for an image block (the service bills images by size; this is a floor)
PER_IMAGE = 256


def model_profile(model: str) -> ModelProfile:
    """The LangChain profile of ``model``: capabilities, and limits when the table knows it.

    Tool calling, tool choice and structured output are ``False`` (the interpreter rules
    them out); reasoning output is ``True`` (thinking mode is always on).
    """
    profile = ModelProfile(
        text_inputs=True,
        text_outputs=True,
        reasoning_output=True,
        tool_calling=False,
        tool_choice=False,
        structured_output=False,
        temperature=True,
        image_outputs=False,
        audio_inputs=False,
        video_inputs=False,
        pdf_inputs=False,
    )
    info = known_model_info(model)
    if info is not None:
        profile["max_input_tokens"] = info.max_input_tokens or info.context_window
        profile["max_output_tokens"] = info.max_output_tokens
        profile["image_inputs"] = info.endpoint == "multimodal"
        profile["image_url_inputs"] = info.endpoint == "multimodal"
    return profile


def count_tokens(text: str) -> int:
    """Approximate token count of ``text`` (see the module docstring)."""
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)


def _content_tokens(content: str | list[Any]) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for block in content:
        if isinstance(block, str):
            total += count_tokens(block)
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text":
                total += count_tokens(str(block.get("text", "")))
            elif kind in ("image", "image_url"):
                total += PER_IMAGE
            # reasoning and code blocks of earlier answers are not sent back
    return total


def count_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """Approximate tokens of ``messages`` as sent: the content only (an earlier answer's
    thinking and code are not sent back), plus :data:`PER_MESSAGE` each."""
    total = 0
    for message in messages:
        total += PER_MESSAGE + _content_tokens(message.content)
        if isinstance(message, AIMessage) and message.tool_calls:
            total += count_tokens(str(message.tool_calls))
    return total
