"""The emulator's Responses endpoints (PROTOCOL.md section 6) read raw off the wire:
events, items, the real execution log, usage, errors, faults and the request log."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import httpx
import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.responses import execution_log
from qwen_ci_server.emulator.service import LEGACY_RESPONSES_PATH, RESPONSES_PATH
from qwen_ci_server.sandbox import ExecutionResult
from tests.emulator.conftest import KEY

HEADERS = {"Authorization": f"Bearer {KEY}"}
CI = [{"type": "code_interpreter"}]
POWER = "What is 123 to the power of 21?"


def body(prompt: Any = POWER, model: str = "qwen3-max", stream: bool = True,
         **fields: Any) -> dict[str, Any]:
    """A Responses request as the service's own example sends it."""
    request: dict[str, Any] = {"model": model, "input": prompt, "tools": CI,
                               "enable_thinking": True, "stream": stream}
    request.update(fields)
    return request


def events(emu: Emulator, request: dict[str, Any], path: str = RESPONSES_PATH,
           headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``data`` objects of a streamed response, checked against their ``event:`` lines."""
    out: list[dict[str, Any]] = []
    with httpx.stream("POST", emu.base_url + path, json=request,
                      headers=headers or HEADERS, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line[6:]
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                assert data["type"] == kind
                out.append(data)
    return out


def of(stream: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in stream if e["type"] == kind]


def done_items(stream: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in of(stream, "response.output_item.done")
            if e["item"]["type"] == kind]


def test_a_streamed_run_returns_the_code_and_what_it_printed(emulator: Emulator) -> None:
    stream = events(emulator, body())
    kinds = [e["type"] for e in stream]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and kinds.count("response.completed") == 1
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    # one code_interpreter_call: added in progress with its code, then interpreted, done
    added = [e for e in of(stream, "response.output_item.added")
             if e["item"]["type"] == "code_interpreter_call"]
    assert len(added) == 1
    call = added[0]["item"]
    assert (call["status"], call["code"]) == ("in_progress", "123**21")
    item_id, index = call["id"], added[0]["output_index"]
    lifecycle = [e["type"] for e in stream if e.get("item_id") == item_id]
    assert lifecycle == ["response.code_interpreter_call.in_progress",
                         "response.code_interpreter_call.interpreting",
                         "response.code_interpreter_call.completed"]
    (done,) = done_items(stream, "code_interpreter_call")
    assert done["id"] == item_id and done["status"] == "completed"
    assert done["outputs"] == [{"type": "logs", "logs": str(123**21)}]
    assert isinstance(done["container_id"], str) and done["container_id"]
    assert kinds.index("response.code_interpreter_call.completed") > kinds.index(
        "response.code_interpreter_call.interpreting")
    # reasoning before and after the run, then the message with the real value
    order = [e["item"]["type"] for e in of(stream, "response.output_item.done")]
    assert order == ["reasoning", "code_interpreter_call", "reasoning", "message"]
    assert of(stream, "response.output_item.done")[1]["output_index"] == index
    reasoning = "".join(e["delta"] for e in of(stream, "response.reasoning_summary_text.delta"))
    assert "123**21" in reasoning
    text = "".join(e["delta"] for e in of(stream, "response.output_text.delta"))
    (message,) = done_items(stream, "message")
    assert message["content"][0]["text"] == text and str(123**21) in text
    assert of(stream, "response.output_text.done")[0]["text"] == text
    # the final response: every item, usage with x_tools
    final = stream[-1]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == order
    usage = final["usage"]
    assert usage["x_tools"] == {"code_interpreter": {"count": 1}}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 0 < usage["output_tokens_details"]["reasoning_tokens"] < usage["output_tokens"]
    assert usage["x_details"][0]["x_billing_type"] == "response_api"


def test_ids_and_field_types_are_the_documented_ones(emulator: Emulator) -> None:
    stream = events(emulator, body())
    final = stream[-1]["response"]
    uuid.UUID(final["id"])  # a bare UUID
    assert isinstance(final["created_at"], int | float)
    assert final["object"] == "response" and final["model"] == "qwen3-max"
    for item in final["output"]:
        assert re.fullmatch(r"msg_[0-9a-f-]{36}", item["id"]), item["id"]
    assert all(e["response"]["id"] == final["id"] for e in stream if "response" in e)


def test_the_legacy_path_is_served_alike(emulator: Emulator) -> None:
    stream = events(emulator, body(), path=LEGACY_RESPONSES_PATH)
    (done,) = done_items(stream, "code_interpreter_call")
    assert done["outputs"][0]["logs"] == str(123**21)


def test_the_log_holds_stdout_and_the_last_value(emulator: Emulator) -> None:
    prompt = "Run this:\n```python\nprint('hello')\nprint('world')\n6 * 7\n```"
    (done,) = done_items(events(emulator, body(prompt)), "code_interpreter_call")
    assert done["outputs"][0]["logs"] == "hello\nworld\n42"


def test_the_log_holds_the_traceback_of_a_failing_run(emulator: Emulator) -> None:
    prompt = "Run this:\n```python\nprint('before')\n1 / 0\n```"
    stream = events(emulator, body(prompt))
    (done,) = done_items(stream, "code_interpreter_call")
    logs = done["outputs"][0]["logs"]
    assert logs.startswith("before\n") and "ZeroDivisionError" in logs
    assert "Traceback" in logs or "1 / 0" in logs
    assert stream[-1]["response"]["status"] == "completed"


def test_two_runs_share_one_container(emulator: Emulator) -> None:
    stream = events(emulator, body("First compute 2**10, then divide that by 4"))
    runs = done_items(stream, "code_interpreter_call")
    assert [r["outputs"][0]["logs"] for r in runs] == ["1024", "256.0"]
    assert runs[0]["container_id"] == runs[1]["container_id"]
    assert runs[0]["id"] != runs[1]["id"]
    assert stream[-1]["response"]["usage"]["x_tools"] == {"code_interpreter": {"count": 2}}


def test_a_new_request_gets_a_new_container(emulator: Emulator) -> None:
    first = done_items(events(emulator, body()), "code_interpreter_call")[0]
    second = done_items(events(emulator, body()), "code_interpreter_call")[0]
    assert first["container_id"] != second["container_id"]


def test_x_tools_is_absent_when_no_tool_ran(emulator: Emulator) -> None:
    stream = events(emulator, body("Hello!"))
    usage = stream[-1]["response"]["usage"]
    assert "x_tools" not in usage
    assert not done_items(stream, "code_interpreter_call")
    assert done_items(stream, "message")


def test_without_thinking_there_is_no_reasoning(emulator: Emulator) -> None:
    stream = events(emulator, {"model": "qwen-plus", "input": "Hello!", "stream": True})
    assert not of(stream, "response.reasoning_summary_text.delta")
    assert [i["type"] for i in stream[-1]["response"]["output"]] == ["message"]
    assert stream[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_web_search_is_answered_from_the_labelled_example_data(emulator: Emulator) -> None:
    request = body("What is the weather in Hangzhou today?",
                   tools=[{"type": "web_search"}, {"type": "code_interpreter"}])
    stream = events(emulator, request)
    (search,) = done_items(stream, "web_search_call")
    assert search["status"] == "completed" and search["action"]["type"] == "search"
    assert search["action"]["sources"][0]["url"].startswith("https://qwen-ci.invalid/")
    lifecycle = [e["type"] for e in stream if e.get("item_id") == search["id"]]
    assert lifecycle == ["response.web_search_call.in_progress",
                         "response.web_search_call.searching",
                         "response.web_search_call.completed"]
    text = done_items(stream, "message")[0]["content"][0]["text"]
    assert "example data" in text
    assert stream[-1]["response"]["usage"]["x_tools"] == {"web_search": {"count": 1}}


def test_message_lists_and_instructions_are_read(emulator: Emulator) -> None:
    request = body([{"role": "user", "content": [{"type": "input_text", "text": POWER}]}],
                   instructions="Be brief.")
    stream = events(emulator, request)
    assert done_items(stream, "code_interpreter_call")[0]["code"] == "123**21"
    assert stream[-1]["response"]["instructions"] == "Be brief."


def test_earlier_output_items_in_input_are_accepted(emulator: Emulator) -> None:
    """A client replaying a conversation sends the earlier items back (langchain-openai)."""
    first = events(emulator, body())[-1]["response"]["output"]
    request = body([{"role": "user", "content": POWER}, *first,
                    {"role": "user", "content": "What is 2**100?"}])
    (done,) = done_items(events(emulator, request), "code_interpreter_call")
    assert done["outputs"][0]["logs"] == str(2**100)


# ---------------------------------------------------------------------- errors


BAD = [
    ({"tools": [{"type": "calculator"}]}, "unknown type 'calculator'"),
    ({"tools": [{"type": "code_interpreter"}, {"type": "function", "name": "f",
                                               "parameters": {}}]},
     "cannot be combined with code_interpreter"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "function tools"),
    ({"tools": [{"type": "file_search"}]}, "not emulated"),
    ({"tools": [{"type": "web_extractor"}]}, "needs web_search"),
    ({"tools": [{}]}, 'needs a "type"'),
    ({"tools": "code_interpreter"}, "tools must be a list"),
    ({"model": "qwen-plus"}, "does not support the code_interpreter tool"),
    ({"enable_thinking": False}, "needs enable_thinking=true"),
    ({"background": True}, "background is not supported"),
    ({"input": ""}, "input is empty"),
    ({"input": []}, "non-empty list"),
    ({"input": 42}, "non-empty string"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "function_call_output", "output": "1"}]}, "type 'function_call_output'"),
    ({"input": [{"role": "assistant", "content": "hi"}]}, "no user message"),
    ({"previous_response_id": "abc"}, "keeps no earlier responses"),
    ({"tool_choice": "required"}, "force a tool"),
    ({"stream": "yes"}, "stream must be true or false"),
]


@pytest.mark.parametrize(("fields", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_a_clear_400_and_nothing_runs(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, fields: dict[str, Any], message: str
) -> None:
    caplog.set_level(logging.INFO, logger="qwen_ci_server.emulator")
    response = httpx.post(emulator.base_url + RESPONSES_PATH, json=body(**fields),
                          headers=HEADERS, timeout=30)
    assert response.status_code == 400
    payload = response.json()
    error = payload["error"]
    assert message in error["message"], error["message"]
    assert error["message"].startswith("qwen-ci emulator: ")  # the real text is unknown
    assert error["code"] == "invalid_parameter_error"
    assert error["type"] == "invalid_request_error"
    assert payload["request_id"] == response.headers["x-request-id"]
    rid = payload["request_id"]
    deadline = time.monotonic() + 10  # the line is written just after the response is sent
    while not (logged := [r.getMessage() for r in caplog.records if rid in r.getMessage()]):
        assert time.monotonic() < deadline, "no request log line"
        time.sleep(0.02)
    assert f"POST {RESPONSES_PATH} model=" in logged[0]
    assert "status=400" in logged[0] and "code_runs=0" in logged[0]


def test_unknown_model_is_the_compatible_404(emulator: Emulator) -> None:
    response = httpx.post(emulator.base_url + RESPONSES_PATH, json=body(model="qwen3-max-x"),
                          headers=HEADERS, timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_malformed_json_is_a_400(emulator: Emulator) -> None:
    response = httpx.post(emulator.base_url + RESPONSES_PATH, content=b"{not json",
                          headers={**HEADERS, "content-type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter_error"


def test_a_wrong_key_gets_the_compatible_401(emulator: Emulator) -> None:
    response = httpx.post(emulator.base_url + RESPONSES_PATH, json=body(),
                          headers={"Authorization": "Bearer sk-wrong"}, timeout=30)
    assert response.status_code == 401
    payload = response.json()
    assert payload["error"]["code"] == "invalid_api_key"
    assert payload["error"]["message"] == "Incorrect API key provided. "
    assert "sk-wrong" not in response.text


# ---------------------------------------------------------------------- faults


def test_fault_before_output_is_answered_with_its_status(emulator: Emulator) -> None:
    response = httpx.post(emulator.base_url + RESPONSES_PATH, json=body(),
                          headers={**HEADERS, "X-Emulator-Fault": "rate-limit"}, timeout=30)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "limit_requests"


def test_cut_after_ends_without_response_completed(emulator: Emulator) -> None:
    stream = events(emulator, body(), headers={**HEADERS, "X-Emulator-Fault": "cut-after=5"})
    assert len(stream) == 5
    assert not of(stream, "response.completed")


def test_error_after_sends_an_error_event(emulator: Emulator) -> None:
    stream = events(emulator, body(), headers={**HEADERS, "X-Emulator-Fault": "error-after=4"})
    assert len(stream) == 5
    assert stream[-1]["type"] == "error" and stream[-1]["code"] == "internal_error"
    assert stream[-1]["sequence_number"] == 4


def test_the_execution_log_layout() -> None:
    assert execution_log(ExecutionResult("ok")) == ""
    assert execution_log(ExecutionResult("ok", stdout="a\n", stderr="w\n", result="1")) == "a\nw\n1"
    failed = ExecutionResult("error", stdout="x\n", error="NameError: y",
                             traceback="Traceback\nNameError: y")
    assert execution_log(failed) == "x\nTraceback\nNameError: y"
    timeout = ExecutionResult("timeout", stdout="s\n", error="TimeoutError: 3 s",
                              traceback="KeyboardInterrupt", reset=True)
    assert execution_log(timeout).split("\n")[:2] == ["s", "TimeoutError: 3 s"]
    assert "restarted" in execution_log(timeout) and "KeyboardInterrupt" not in execution_log(
        timeout)


# ---------------------------------------------------------------------- non-streaming


def test_a_non_streaming_call_returns_the_completed_response(emulator: Emulator) -> None:
    """The service's own example calls ``responses.create`` without ``stream``."""
    response = httpx.post(emulator.base_url + RESPONSES_PATH, json=body(stream=False),
                          headers=HEADERS, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    full = response.json()
    streamed = events(emulator, body())[-1]["response"]

    def shape(resp: dict[str, Any]) -> list[Any]:
        return [(i["type"], i.get("code"), i.get("outputs"), i.get("content"), i.get("summary"))
                for i in resp["output"]]

    assert full["status"] == "completed" and shape(full) == shape(streamed)
    assert full["usage"] == streamed["usage"]
    assert full["output"][1]["outputs"] == [{"type": "logs", "logs": str(123**21)}]
    assert full["id"] != streamed["id"]


def test_a_non_streaming_call_checks_its_input_too(emulator: Emulator) -> None:
    response = httpx.post(emulator.base_url + LEGACY_RESPONSES_PATH,
                          json=body(stream=False, background=True), headers=HEADERS, timeout=30)
    assert response.status_code == 400
    assert "background" in response.json()["error"]["message"]


def test_the_docs_example_prints_what_it_says(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/emulator.md's Responses snippet, run against this emulator."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text("utf-8")
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", doc, flags=re.S)
               if "responses.create" in block]
    code = code.replace("http://127.0.0.1:8765", emulator.base_url).replace("sk-local", KEY)
    exec(compile(code, "docs/emulator.md", "exec"), {"__name__": "emulator_doc"})
    out = capsys.readouterr().out.splitlines()
    assert out == [f"123**21 -> {123**21}", "{'code_interpreter': {'count': 1}}"]


def test_the_request_log_counts_the_runs(emulator: Emulator,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="qwen_ci_server.emulator")
    with httpx.stream("POST", emulator.base_url + LEGACY_RESPONSES_PATH,
                      json=body("First compute 2**10, then divide that by 4"),
                      headers=HEADERS, timeout=60) as response:
        rid = response.headers["x-request-id"]
        response.read()
    deadline = time.monotonic() + 10
    while not (logged := [r.getMessage() for r in caplog.records if rid in r.getMessage()]):
        assert time.monotonic() < deadline, "no request log line"
        time.sleep(0.02)
    (line,) = logged
    assert f"POST {LEGACY_RESPONSES_PATH} model=qwen3-max status=200" in line
    assert "code_runs=2" in line and "2**10" not in line and KEY not in line


# ---------------------------------------------------------------------- the sandbox


def test_a_run_over_the_time_limit_logs_the_timeout(emulator: Emulator) -> None:
    stream = events(emulator, body("Run this:\n```python\nprint('start')\nwhile True:\n"
                                   "    pass\n```"))
    (done,) = done_items(stream, "code_interpreter_call")
    logs = done["outputs"][0]["logs"]
    assert logs.startswith("start\n") and "TimeoutError" in logs
    assert stream[-1]["type"] == "response.completed"


def test_a_client_leaving_during_a_run_frees_the_kernel(emulator: Emulator) -> None:
    from qwen_ci_server.sandbox.procs import descendants

    request = body("Run this:\n```python\nimport time\ntime.sleep(60)\n```")
    with httpx.stream("POST", emulator.base_url + RESPONSES_PATH, json=request,
                      headers=HEADERS, timeout=30) as response:
        for line in response.iter_lines():
            if "response.code_interpreter_call.interpreting" in line:
                break  # the run has started: leave
        busy = descendants()
    started = time.monotonic()
    # well under the emulator's 3 s run limit: the kernel goes because the client went
    while busy & descendants() - emulator.sandbox_pids():
        assert time.monotonic() - started < 2.5, "the kernel outlived its request"
        time.sleep(0.05)
