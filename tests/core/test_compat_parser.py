"""Compatible-mode chunks -> events."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from qwen_ci.errors import IncompleteStreamError, RateLimitError
from qwen_ci.events import Event, Finish, ReasoningDelta, TextDelta, Usage
from qwen_ci.protocols.openai_compat import OpenAICompatParser
from qwen_ci.protocols.sse import SSEDecoder
from tests.replay import compat_chunk, compat_stream


def parse(chunks: Sequence[bytes]) -> list[Event]:
    decoder, parser = SSEDecoder(), OpenAICompatParser("qwen3-max-preview")
    events: list[Event] = []
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            events.extend(parser.feed(sse))
    parser.end()
    return events


def test_stream_with_usage_chunk_and_done() -> None:
    events = parse(compat_stream(["The user", " asks"], ["2**10", " = 1024"]))
    assert events[:4] == [ReasoningDelta("The user"), ReasoningDelta(" asks"),
                          TextDelta("2**10"), TextDelta(" = 1024")]
    # no runs reported on this protocol: their count is unknown, not 0
    assert events[4] == Usage(719, 245, 964, 153, None, {"code_interpreter": {"count": None}})
    assert events[5] == Finish("stop", "chatcmpl-2f96ef0b-5924-4dfc-b768-4d53ec538b4e",
                               "qwen3-max-2026-01-23")
    assert len(events) == 6


def test_missing_done_is_incomplete() -> None:
    with pytest.raises(IncompleteStreamError, match="DONE"):
        parse(compat_stream(["a"], ["b"], done=False))


def test_error_inside_a_200_stream() -> None:
    chunks = compat_stream(["a"], [], done=False)[:2]
    chunks.append(compat_chunk({"error": {"code": "limit_requests", "type": "limit_requests",
                                          "message": "Requests rate limit exceeded"},
                                "request_id": "rid-9"}))
    with pytest.raises(RateLimitError) as info:
        parse(chunks)
    assert (info.value.status, info.value.code) == (429, "limit_requests")


def test_crlf_compat_stream() -> None:
    chunks = [c.replace(b"\n", b"\r\n") for c in compat_stream(["r"], ["t"])]
    events = parse(chunks)
    assert [type(e).__name__ for e in events] == [
        "ReasoningDelta", "TextDelta", "Usage", "Finish"]
