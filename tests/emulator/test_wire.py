"""The emulator's bytes compared structurally with recorded real traffic and PROTOCOL.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import (
    COMPAT,
    KEY,
    MULTIMODAL,
    NATIVE,
    compat_body,
    native_body,
    post,
)
from tests.replay import RECORDED, SHARED

SEED = "123的21次方是多少？"
CI_RECORDING = "single-generation-message-with-code-interpreter-sse"
TWO_STEPS = "First compute 123 to the power of 23, then divide that by 5"


def shape(value: Any) -> Any:
    """Keys (in order) and value types, recursively; lists by their first element."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def events(body: str) -> list[list[str]]:
    """Native SSE events as lists of lines (the body must end with a blank line)."""
    assert body.endswith("\n\n"), body[-200:]
    return [block.split("\n") for block in body[:-2].split("\n\n")]


def native_frames(body: str) -> list[dict[str, Any]]:
    frames = []
    for index, lines in enumerate(events(body), start=1):
        assert lines[:3] == [f"id:{index}", "event:result", ":HTTP_STATUS/200"], lines
        assert len(lines) == 4 and lines[3].startswith("data:{"), lines
        frames.append(json.loads(lines[3][len("data:"):]))
    return frames


def recorded_frames() -> list[dict[str, Any]]:
    raw = (RECORDED / f"{CI_RECORDING}.response.body.txt").read_text("utf-8-sig")
    return [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:")]


@pytest.fixture(scope="module")
def seed_stream(emulator: Emulator) -> tuple[Any, list[dict[str, Any]]]:
    response = post(emulator, NATIVE, native_body(SEED))
    assert response.status_code == 200
    return response, native_frames(response.text)


def test_native_framing_is_the_services(seed_stream: tuple[Any, list[dict[str, Any]]]) -> None:
    response, frames = seed_stream
    assert response.headers["content-type"] == "text/event-stream;charset=UTF-8"
    assert "[DONE]" not in response.text
    assert "data: " not in response.text  # no space after the colon
    rid = response.headers["x-request-id"]
    assert {frame["request_id"] for frame in frames} == {rid}
    reasons = [frame["output"]["choices"][0]["finish_reason"] for frame in frames]
    assert reasons[:-1] == ["null"] * (len(frames) - 1) and reasons[-1] == "stop"
    # compact JSON, UTF-8 (not \\u escapes), as the service writes it
    first_data = events(response.text)[0][3]
    assert ", " not in first_data and '": ' not in first_data
    assert "\\u" not in response.text


@pytest.mark.usefixtures("recorded")
def test_native_frames_have_the_recorded_shapes(
    seed_stream: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, frames = seed_stream
    real = recorded_frames()
    before = [f for f in frames if "tool_info" not in f["output"]]
    after = [f for f in frames if "tool_info" in f["output"]]
    real_before = [f for f in real if "tool_info" not in f["output"]]
    real_after = [f for f in real if "tool_info" in f["output"]]
    assert shape(before[0]) == shape(real_before[0])
    assert shape(after[0]) == shape(real_after[0])
    assert shape(after[-1]) == shape(real_after[-1])
    # every frame has one of the recorded shapes
    real_shapes = {json.dumps(shape(f)) for f in real}
    assert {json.dumps(shape(f)) for f in frames} <= real_shapes


def test_native_usage_and_tool_info_semantics(
    seed_stream: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, frames = seed_stream
    outputs, reasoning, inputs = [], [], []
    first_run: int | None = None
    for index, frame in enumerate(frames):
        usage = frame["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        outputs.append(usage["output_tokens"])
        reasoning.append(usage["output_tokens_details"]["reasoning_tokens"])
        inputs.append(usage["input_tokens"])
        message = frame["output"]["choices"][0]["message"]
        assert not (message["content"] and message["reasoning_content"])
        tool_info = frame["output"].get("tool_info")
        if first_run is None and tool_info:
            first_run = index
            # the first run appears with its code, as recorded
            assert tool_info == [{"code_interpreter": {"code": "123**21"},
                                  "type": "code_interpreter"}]
        if first_run is not None:
            assert frame["output"]["tool_info"] == frames[first_run]["output"]["tool_info"]
            assert usage["plugins"] == {"code_interpreter": {"count": 1}}
        else:
            assert "plugins" not in usage
    assert first_run is not None and first_run < len(frames) - 1
    assert outputs == sorted(outputs) and reasoning == sorted(reasoning)
    # input_tokens is the latest round's prompt: it grows once the result is fed back
    assert len(set(inputs[: first_run + 1])) == 1
    assert inputs[first_run + 1] > inputs[first_run]
    assert len(set(inputs[first_run + 1 :])) == 1


def test_native_thinking_streams_in_small_frames_around_the_run(
    seed_stream: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, frames = seed_stream
    run = next(i for i, f in enumerate(frames) if "tool_info" in f["output"])
    thoughts_before = [f["output"]["choices"][0]["message"]["reasoning_content"]
                       for f in frames[:run]]
    thoughts_after = [f["output"]["choices"][0]["message"]["reasoning_content"]
                      for f in frames[run:]]
    assert sum(1 for t in thoughts_before if t) >= 5
    assert sum(1 for t in thoughts_after if t) >= 5
    assert max(len(t) for t in thoughts_before + thoughts_after) <= 24
    answer = "".join(f["output"]["choices"][0]["message"]["content"] for f in frames)
    assert "77269364466549865653073473388030061522211723" in answer


def test_native_second_run_first_appears_with_empty_code(emulator: Emulator) -> None:
    frames = native_frames(post(emulator, NATIVE, native_body(TWO_STEPS)).text)
    snapshots = [
        [entry["code_interpreter"]["code"] for entry in f["output"]["tool_info"]]
        for f in frames if "tool_info" in f["output"]
    ]
    distinct = [s for i, s in enumerate(snapshots) if i == 0 or s != snapshots[i - 1]]
    big = "1169008215014432917465348578887506800769541157267"
    assert distinct == [["123**23"], ["123**23", ""], ["123**23", f"{big} / 5"]]
    counts = [f["usage"]["plugins"]["code_interpreter"]["count"] for f in frames
              if "tool_info" in f["output"]]
    assert counts == [len(s) for s in snapshots]
    assert frames[-1]["usage"]["plugins"] == {"code_interpreter": {"count": 2}}


def test_multimodal_endpoint_sends_content_parts(emulator: Emulator) -> None:
    body = native_body("What is 2**10?", model="qwen3.5-plus")
    body["input"]["messages"][0]["content"] = [{"text": "What is 2**10?"}]
    frames = native_frames(post(emulator, MULTIMODAL, body).text)
    contents = [f["output"]["choices"][0]["message"]["content"] for f in frames]
    assert all(isinstance(c, list) for c in contents)
    assert "1024" in "".join(part["text"] for c in contents for part in c)


@pytest.fixture(scope="module")
def compat_lines(emulator: Emulator) -> list[str]:
    response = post(emulator, COMPAT, compat_body(SEED),
                    headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream;charset=UTF-8"
    assert response.text.endswith("data: [DONE]\n\n")
    blocks = response.text[:-2].split("\n\n")
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks)
    return [block[len("data: "):] for block in blocks]


def documented_chunks() -> list[dict[str, Any]]:
    """The compatible-mode example of PROTOCOL.md section 4 (real chunks)."""
    path = SHARED / "PROTOCOL.md"
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared is absent)")
    lines = [line for line in path.read_text().splitlines()
             if line.startswith("data: {") and "chat.completion.chunk" in line]
    return [json.loads(line[len("data: "):]) for line in lines]


def test_compat_chunks_have_the_documented_shapes(compat_lines: list[str]) -> None:
    assert compat_lines[-1] == "[DONE]"
    ours = [json.loads(line) for line in compat_lines[:-1]]
    reference = documented_chunks()
    assert len(reference) == 5
    # first (role), reasoning, content, finish and usage chunks
    assert shape(ours[0]) == shape(reference[0])
    reasoning = next(c for c in ours[1:] if c["choices"] and
                     c["choices"][0]["delta"].get("reasoning_content"))
    content = next(c for c in ours if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert shape(reasoning) == shape(reference[1])
    assert shape(content) == shape(reference[2])
    assert shape(ours[-2]) == shape(reference[3])
    assert shape(ours[-1]) == shape(reference[4])
    assert ours[-1]["choices"] == [] and ours[-1]["usage"]["total_tokens"] > 0
    assert [c["choices"][0]["finish_reason"] for c in ours[:-1]] == [None] * (len(ours) - 2) + [
        "stop"]
    assert all(c["usage"] is None for c in ours[:-1])
    assert {c["id"] for c in ours} == {ours[0]["id"]} and ours[0]["id"].startswith("chatcmpl-")
    assert all(c["model"] == "qwen3-max-preview" for c in ours)


def test_compat_has_no_tool_info_and_json_nulls(compat_lines: list[str]) -> None:
    text = "\n".join(compat_lines)
    assert "tool_info" not in text and "plugins" not in text
    assert '"finish_reason":null' in text and '"finish_reason":"null"' not in text
    answer = "".join(
        json.loads(line)["choices"][0]["delta"].get("content") or ""
        for line in compat_lines[:-1] if json.loads(line)["choices"]
    )
    assert "77269364466549865653073473388030061522211723" in answer


def test_compat_usage_chunk_only_when_asked(emulator: Emulator) -> None:
    body = compat_body("Hello", stream_options={"include_usage": False})
    text = post(emulator, COMPAT, body, headers={"Authorization": f"Bearer {KEY}"}).text
    chunks = [json.loads(b[6:]) for b in text[:-2].split("\n\n")[:-1]]
    assert all(c["choices"] for c in chunks)


@pytest.mark.usefixtures("recorded")
def test_error_bodies_have_the_recorded_shapes(emulator: Emulator) -> None:
    auth = post(emulator, NATIVE, native_body(SEED), headers={"Authorization": "Bearer bad"})
    real = json.loads((RECORDED / "auth-error-nosse.response.body.txt").read_text("utf-8-sig"))
    assert auth.status_code == 401 and shape(auth.json()) == shape(real)
    params = post(emulator, NATIVE, {"model": "qwen3-max-preview", "input": {"messages": []}},
                  headers={"Authorization": f"Bearer {KEY}"})
    real = json.loads(
        (RECORDED / "parameter-error-nosse.response.body.txt").read_text("utf-8-sig")
    )
    assert params.status_code == 400 and params.json()["message"] == real["message"]
    assert shape(params.json()) == shape(real)
    sse = post(emulator, NATIVE, {"model": "qwen3-max-preview", "input": {"messages": []}})
    raw = (RECORDED / "parameter-error-sse.response.body.txt").read_text("utf-8-sig")
    assert sse.status_code == 200  # as recorded: the status is in the frame
    ours, theirs = events(sse.text)[0], events(raw if raw.endswith("\n\n") else raw + "\n")[0]
    assert ours[:3] == theirs[:3] == ["id:1", "event:error", ":HTTP_STATUS/400"]
    assert shape(json.loads(ours[3][5:])) == shape(json.loads(theirs[3][5:]))
    assert json.loads(ours[3][5:])["message"] == json.loads(theirs[3][5:])["message"]
