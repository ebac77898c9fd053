"""Native frames -> events: tool_info snapshots, usage, finish, errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from qwen_ci.errors import (
    BadRequestError,
    IncompleteStreamError,
    ProtocolError,
    RateLimitError,
)
from qwen_ci.events import (
    CodeRun,
    CodeStart,
    Event,
    Finish,
    ReasoningDelta,
    SearchInfo,
    TextDelta,
    Usage,
)
from qwen_ci.protocols.dashscope import DashScopeParser
from qwen_ci.protocols.sse import SSEDecoder
from tests.replay import native_frame, native_stream


def parse(frames: Sequence[bytes], *, end: bool = True) -> list[Event]:
    decoder, parser = SSEDecoder(), DashScopeParser("qwen3-max-preview")
    events: list[Event] = []
    for frame in frames:
        for sse in decoder.feed(frame):
            events.extend(parser.feed(sse))
    for sse in decoder.close():
        events.extend(parser.feed(sse))
    if end:
        parser.end()
    return events


BIG = "1169008215014432917465348578887506800769541157267 / 5"


def runs(events: list[Event]) -> list[CodeRun]:
    return [e for e in events if isinstance(e, CodeRun)]


def test_documented_multi_run_stream_gives_each_run_once_in_order() -> None:
    frames = native_stream(
        [
            {"reasoning": "I will compute."},
            {"tool_info": ["123**23"]},
            {"reasoning": "Now divide.", "tool_info": ["123**23"]},
            {"tool_info": ["123**23", ""]},
            {"tool_info": ["123**23", BIG]},
            {"reasoning": "Done.", "tool_info": ["123**23", BIG]},
            {"content": "The answer.", "tool_info": ["123**23", BIG]},
            {"finish": "stop", "tool_info": ["123**23", BIG]},
        ]
    )
    events = parse(frames)
    assert runs(events) == [
        CodeRun(0, "123**23"),
        CodeRun(1, BIG),
    ]
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.plugins == {"code_interpreter": {"count": 2}}
    # each run is emitted before the thinking that follows it
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("CodeRun") < kinds.index("ReasoningDelta", 1)
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == [
        "I will compute.",
        "Now divide.",
        "Done.",
    ]


def test_code_filled_over_several_frames_is_emitted_once_with_final_code() -> None:
    frames = native_stream(
        [
            {"reasoning": "think"},
            {"tool_info": [""]},
            {"tool_info": ["import math"]},
            {"tool_info": ["import math"]},  # unchanged while the code is still generated
            {"tool_info": ["import math\nprint(math.pi)"]},
            {"reasoning": "pi it is", "tool_info": ["import math\nprint(math.pi)"]},
            {"content": "3.14", "tool_info": ["import math\nprint(math.pi)"]},
            {"finish": "stop", "tool_info": ["import math\nprint(math.pi)"]},
        ]
    )
    assert runs(parse(frames)) == [CodeRun(0, "import math\nprint(math.pi)")]


def test_run_is_emitted_as_soon_as_the_model_resumes() -> None:
    frames = native_stream(
        [
            {"tool_info": ["1+1"]},
            {"reasoning": "two", "tool_info": ["1+1"]},
        ]
    )
    events = parse(frames, end=False)
    assert events == [CodeStart(0, "1+1"), CodeRun(0, "1+1"), ReasoningDelta("two")]


def test_run_starts_when_its_code_first_appears_and_is_final_later() -> None:
    frames = native_stream(
        [
            {"reasoning": "I will compute."},
            {"tool_info": [""]},  # placeholder: not started
            {"tool_info": ["import time"]},  # started: the service runs it now
            {"tool_info": ["import time"]},  # repeated while silent: nothing new
        ]
    )
    events = parse(frames, end=False)
    assert events == [ReasoningDelta("I will compute."), CodeStart(0, "import time")]


def test_code_changed_after_the_start_final_code_wins() -> None:
    frames = native_stream(
        [
            {"tool_info": ["import math"]},
            {"tool_info": ["import math\nprint(math.pi)"]},
            {"tool_info": ["import math\nprint(math.pi)", "x = 1"]},
            {"content": "3.14", "tool_info": ["import math\nprint(math.pi)", "x = 1"]},
            {"finish": "stop", "tool_info": ["import math\nprint(math.pi)", "x = 1"]},
        ]
    )
    lifecycle = [e for e in parse(frames) if isinstance(e, CodeStart | CodeRun)]
    assert lifecycle == [
        CodeStart(0, "import math"),  # what was known at the start
        CodeRun(0, "import math\nprint(math.pi)"),  # the final code wins
        CodeStart(1, "x = 1"),  # run 0 is final before run 1 starts
        CodeRun(1, "x = 1"),
    ]


def test_placeholder_never_emitted_and_last_run_final_at_stream_end() -> None:
    frames = native_stream(
        [
            {"tool_info": ["a = 1"]},
            {"tool_info": ["a = 1", ""]},
            {"finish": "stop", "tool_info": ["a = 1", ""]},
        ]
    )
    events = parse(frames)
    assert runs(events) == [CodeRun(0, "a = 1")]
    assert [e for e in events if isinstance(e, CodeStart)] == [CodeStart(0, "a = 1")]
    frames = native_stream([{"tool_info": ["x"]}, {"finish": "stop", "tool_info": ["x"]}])
    assert runs(parse(frames)) == [CodeRun(0, "x")]


def test_many_repeating_frames_never_duplicate_a_run() -> None:
    steps: list[dict[str, Any]] = [{"reasoning": "r"}, {"tool_info": ["print(1)"]}]
    steps += [{"content": f"{i}", "tool_info": ["print(1)"]} for i in range(50)]
    steps += [{"finish": "stop", "tool_info": ["print(1)"]}]
    assert runs(parse(native_stream(steps))) == [CodeRun(0, "print(1)")]


def test_list_shaped_content_is_joined() -> None:
    frames = native_stream(
        [
            {"content": [{"text": "Hello"}, {"text": ", "}]},
            {"content": [{"text": "world"}]},
            {"content": [], "finish": "stop"},
        ]
    )
    assert [e.text for e in parse(frames) if isinstance(e, TextDelta)] == ["Hello, ", "world"]


def test_final_usage_is_the_last_cumulative_one_and_emitted_once() -> None:
    frames = native_stream(
        [
            {"reasoning": "a"},
            {"tool_info": ["1"], "input_tokens": 100},
            {"reasoning": "b", "tool_info": ["1"], "input_tokens": 250},
            {"content": "c", "tool_info": ["1"]},
            {"finish": "stop", "tool_info": ["1"]},
        ]
    )
    events = parse(frames)
    usages = [e for e in events if isinstance(e, Usage)]
    last = json.loads(frames[-1].split(b"data:", 1)[1])["usage"]
    assert usages == [
        Usage(
            250,
            last["output_tokens"],
            last["total_tokens"],
            last["output_tokens_details"]["reasoning_tokens"],
            0,
            {"code_interpreter": {"count": 1}},
        )
    ]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.raw is not None and finish.raw["usage"] == last


def test_length_finish_is_final_too() -> None:
    events = parse(native_stream([{"content": "abc"}, {"finish": "length"}]))
    assert isinstance(events[-1], Finish) and events[-1].reason == "length"


def test_stream_without_final_frame_is_incomplete() -> None:
    with pytest.raises(IncompleteStreamError, match="incomplete"):
        parse(native_stream([{"reasoning": "a"}, {"content": "b"}]))


def test_error_frame_after_output_raises_with_status_code_and_request_id() -> None:
    frames = native_stream([{"reasoning": "a"}])
    frames.append(
        native_frame(
            {
                "code": "Throttling.RateQuota",
                "message": "Requests rate limit exceeded, please try again later.",
                "request_id": "rid-1",
            },
            event="error",
            status=429,
        )
    )
    with pytest.raises(RateLimitError) as info:
        parse(frames)
    assert (info.value.status, info.value.code, info.value.request_id) == (
        429,
        "Throttling.RateQuota",
        "rid-1",
    )


def test_error_frame_marked_200_takes_the_status_of_its_code() -> None:
    frame = native_frame(
        {"code": "InvalidParameter", "message": "bad", "request_id": "r"}, event="error", status=200
    )
    with pytest.raises(BadRequestError) as info:
        parse([frame])
    assert info.value.status == 400


def test_malformed_frames_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="Malformed"):
        parse([b"data:{not json\n\n"])
    with pytest.raises(ProtocolError, match="output"):
        parse([b'data:{"usage":{}}\n\n'])
    with pytest.raises(ProtocolError):
        parse([b"data:\xff\xfe\n\n"])


def test_unknown_fields_are_ignored() -> None:
    frame = native_frame(
        {
            "output": {
                "choices": [
                    {"message": {"content": "x", "novel": 1}, "finish_reason": "stop", "x": 2}
                ],
                "new": True,
            },
            "usage": {"input_tokens": 1, "output_tokens": 1},
            "extra": {},
        }
    )
    events = parse([frame])
    assert events[0] == TextDelta("x")
    assert isinstance(events[-1], Finish)


def test_search_info_is_emitted_once() -> None:
    first = native_frame(
        {
            "output": {
                "choices": [
                    {"message": {"content": "", "role": "assistant"}, "finish_reason": "null"}
                ],
                "search_info": {"search_results": [{"index": 1}]},
            },
            "usage": {},
            "request_id": "r",
        }
    )
    later = native_frame(
        {
            "output": {
                "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                "search_info": {"extra_tool_info": [], "search_results": []},
            },
            "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6},
            "request_id": "r",
        }
    )
    events = parse([first, later])
    assert [e for e in events if isinstance(e, SearchInfo)] == [
        SearchInfo({"search_results": [{"index": 1}]})
    ]
