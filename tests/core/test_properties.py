"""Property tests: tool_info snapshots and byte chunking (Hypothesis)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_ci.errors import QwenCIError
from qwen_ci.events import CodeRun, CodeStart, Event
from qwen_ci.protocols.dashscope import DashScopeParser
from qwen_ci.protocols.sse import SSEDecoder
from tests.replay import native_stream

codes = st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                         max_size=30), min_size=1, max_size=4)


@st.composite
def snapshot_streams(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any]]]:
    """Valid snapshot sequences: placeholders, codes filled over several frames,
    repeats, thinking resuming only after a run's code is complete."""
    finals = draw(codes)
    steps: list[dict[str, Any]] = [{"reasoning": "start"}]
    done: list[str] = []
    for code in finals:
        if draw(st.booleans()):
            steps.append({"tool_info": [*done, ""]})
        cuts = sorted(draw(st.lists(st.integers(1, len(code)), max_size=3)))
        for cut in [*cuts, len(code)]:
            for _ in range(draw(st.integers(1, 3))):
                steps.append({"tool_info": [*done, code[:cut]]})
        done.append(code)
        if draw(st.booleans()):
            steps.append({"reasoning": "after", "tool_info": list(done)})
    steps.append({"content": "answer", "tool_info": list(done)})
    steps.append({"finish": "stop", "tool_info": list(done)})
    return finals, steps


def parse_bytes(body: bytes, cuts: list[int]) -> list[Event]:
    decoder, parser = SSEDecoder(), DashScopeParser("m")
    events: list[Event] = []
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        for sse in decoder.feed(body[start:cut]):
            events.extend(parser.feed(sse))
        start = cut
    for sse in decoder.close():
        events.extend(parser.feed(sse))
    parser.end()
    return events


@settings(max_examples=150, deadline=None)
@given(snapshot_streams(), st.data())
def test_each_run_once_in_order_with_final_code(
    stream: tuple[list[str], list[dict[str, Any]]], data: st.DataObject
) -> None:
    finals, steps = stream
    body = b"".join(native_stream(steps))
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    events = parse_bytes(body, cuts)
    assert [e for e in events if isinstance(e, CodeRun)] == [
        CodeRun(i, code) for i, code in enumerate(finals)]
    assert events == parse_bytes(body, [])  # chunking never changes the result
    # each run starts once, before it is final, and runs never overlap
    lifecycle = [(type(e).__name__, e.index) for e in events
                 if isinstance(e, CodeStart | CodeRun)]
    assert lifecycle == [(kind, i) for i in range(len(finals))
                         for kind in ("CodeStart", "CodeRun")]
    starts = [e for e in events if isinstance(e, CodeStart)]
    # a start carries what was known then (here the code is filled in as prefixes)
    assert all(start.code and final.startswith(start.code)
               for start, final in zip(starts, finals, strict=True))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_any_bytes_give_events_or_a_typed_error(body: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(QwenCIError):
        parse_bytes(body, [c for c in cuts if c <= len(body)])


TOKENS = [b"data:", b"event:error", b":HTTP_STATUS/429", b"\n", b"\r\n", b"\r", b"{", b"}",
          b'"output":', b'"choices":[', b"]", b'{"message":{"content":"x"}}', b'"tool_info":',
          b'[{"code_interpreter":{"code":"1"}}]', b"null", b'"finish_reason":"stop"', b",",
          b'"code":"E","message":"m"', b"\xef\xbb\xbf", b"\xff", b'"usage":{}']


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.lists(st.integers(0, 400), max_size=5))
def test_frame_like_garbage_gives_events_or_a_typed_error(parts: list[bytes],
                                                          cuts: list[int]) -> None:
    body = b"".join(parts)
    try:
        whole = parse_bytes(body, [])
    except QwenCIError as exc:
        whole_error: type[QwenCIError] | None = type(exc)
    else:
        whole_error = None
    try:
        split = parse_bytes(body, [c for c in cuts if c <= len(body)])
    except QwenCIError as exc:
        assert type(exc) is whole_error
    else:
        assert whole_error is None and split == whole
