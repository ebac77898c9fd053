"""SSE decoding: line endings, byte-order mark, splitting, truncation."""

from __future__ import annotations

import pytest

from qwen_ci.protocols.sse import SSEDecoder, SSEEvent

NATIVE = (
    b"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"a\":1}\n\n"
    b"id:2\nevent:error\n:HTTP_STATUS/429\ndata:{\"code\":\"Throttling.RateQuota\"}\n\n"
)
EXPECTED = [
    SSEEvent("result", b'{"a":1}', 200, "1"),
    SSEEvent("error", b'{"code":"Throttling.RateQuota"}', 429, "2"),
]


def decode(pieces: list[bytes]) -> tuple[list[SSEEvent], bool]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events, decoder.truncated


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings_give_the_same_events(newline: bytes) -> None:
    body = NATIVE.replace(b"\n", newline)
    assert decode([body]) == (EXPECTED, False)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_gives_the_same_events(newline: bytes) -> None:
    body = b"\xef\xbb\xbf" + NATIVE.replace(b"\n", newline)
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]]) == (EXPECTED, False), cut
    assert decode([bytes([b]) for b in body]) == (EXPECTED, False)


def test_byte_order_mark_is_stripped_only_at_the_start() -> None:
    events, _ = decode([b"\xef\xbb\xbf", b"data: x\n\n", b"data: \xef\xbb\xbfy\n\n"])
    assert [e.data for e in events] == [b"x", b"\xef\xbb\xbfy"]


def test_compat_data_lines_strip_one_space_and_join_multiline() -> None:
    events, _ = decode([b"data: {\"a\":\ndata:  1}\n\ndata: [DONE]\n\n"])
    assert events == [SSEEvent("message", b'{"a":\n 1}'), SSEEvent("message", b"[DONE]")]


def test_comments_unknown_fields_and_empty_events_are_ignored() -> None:
    events, _ = decode([b": keep-alive\nretry: 10\nfoo: bar\n\n\n\ndata:x\n\n"])
    assert events == [SSEEvent("message", b"x")]


def test_last_event_without_blank_line_is_dispatched() -> None:
    assert decode([b"event:result\ndata:{}\n"]) == ([SSEEvent("result", b"{}")], False)


def test_stream_cut_in_the_middle_of_a_line_is_truncated() -> None:
    events, truncated = decode([b"data:{\"a\":1}\n\ndata:{\"b\""])
    assert events == [SSEEvent("message", b'{"a":1}')]
    assert truncated


def test_status_comment_belongs_to_its_event_only() -> None:
    events, _ = decode([b":HTTP_STATUS/400\ndata:a\n\ndata:b\n\n"])
    assert [e.status for e in events] == [400, None]
