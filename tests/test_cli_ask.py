"""``qwen-ci ask``: live rendering, the key it sends, its help and version."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from qwen_ci import CodeRun, CodeStart, Finish, ReasoningDelta, TextDelta, Usage
from qwen_ci.cli import _parser, _Renderer, main
from tests.replay import ReplayServer


def ask(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["ask", *args], out=out)
    return code, out.getvalue()


EVENTS = [
    ReasoningDelta("Let me "), ReasoningDelta("compute."),
    CodeStart(0, "2**"),
    CodeRun(0, "2**10"),
    ReasoningDelta("It is 1024."),
    TextDelta("**1024** "), TextDelta("is the answer."),
    Usage(10, 5, 15, 3, None, {"code_interpreter": {"count": 1}}),
    Finish("stop", "0123e4567-e89b-12d3-a456-426614174000", "qwen3-max"),
]


def render(events: list[object], width: int = 80) -> list[str]:
    """What a terminal receives after each event."""
    out = io.StringIO()
    renderer = _Renderer(out, force_terminal=True)
    renderer.console.width = width
    seen = []
    for event in events:
        renderer.on_event(event)
        if isinstance(event, Finish):
            renderer.finish("dashscope")
        seen.append(out.getvalue())
    return seen


def test_the_terminal_shows_each_piece_as_it_happens() -> None:
    seen = render(EVENTS)
    plain = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", s) for s in seen]
    assert "Let me compute." in plain[1]                   # thinking, live
    assert "running code (run 1)..." in plain[2]            # a spinner from the run's start
    assert "2**10" in plain[3] and "code run 1" in plain[3]  # the code panel once final
    assert "1024 is the answer" not in plain[5] and "1024" in plain[5]  # answer streams
    assert "1024 is the answer." in plain[6]
    assert "\x1b[1m" in seen[6]  # the answer is rendered Markdown (bold), not raw **
    final = plain[-1]
    assert final.index("compute.") < final.index("code run 1") < final.rindex("is the answer")


def test_request_id_is_never_wrapped_and_no_blank_lines_pile_up() -> None:
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", render(EVENTS, width=30)[-1])
    assert re.search(r"^request_id: 0123e4567-e89b-12d3-a456-426614174000$", final, re.M)
    lines = final.split("\n")
    assert "" not in [line.strip() for line in lines[:-1]]


def test_ask_without_a_key_sends_nothing_and_says_what_to_do(
    server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = ask("2**10?", "--base-url", server.base_url)
    err = capsys.readouterr().err
    assert code == 2 and server.requests == []  # no made-up key sent
    assert "--api-key" in err and "--emulator" in err and "DASHSCOPE_API_KEY" in err
    assert "accepts any key" in err  # a local URL: any key works at an emulator
    code, _ = ask("2**10?", "--base-url", "https://dashscope-intl.aliyuncs.com")
    err = capsys.readouterr().err
    assert code == 2 and "accepts any key" not in err


def test_version_and_help_give_every_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # no wrapping inside a default value
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(r"qwen-ci \S+\n", capsys.readouterr().out)
    parser = _parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings} has no help"
            if action.default not in (None, False) and not action.required:
                flat = " ".join(text.split())
                assert f"(default: {action.default})" in flat, (name, action.dest)
            elif action.option_strings and action.default is None and not action.required:
                assert "default" in action.help, (name, action.dest)


def test_ask_starts_without_importing_the_frameworks() -> None:
    code = ("import sys, qwen_ci.cli\n"
            "print(sorted(m for m in ('langchain_core', 'llama_index', 'starlette', 'uvicorn')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_spinner_runs_from_the_services_run_start_to_the_code_panel() -> None:
    """End to end: the emulator's stream makes the parser emit CodeStart; the terminal shows
    the spinner from then until the run is final."""
    from qwen_ci import Client, Options, build
    from qwen_ci_server.emulator import Emulator

    out = io.StringIO()
    renderer = _Renderer(out, force_terminal=True)
    kinds = []
    with Emulator(pool_size=1) as emu, Client(api_key="sk", base_url=emu.base_url) as client:
        request = build([{"role": "user", "content": "What is 2**100?"}], Options(),
                        "dashscope")
        for event in client.stream(request):
            renderer.on_event(event)
            kinds.append(type(event).__name__)
    renderer.finish("dashscope")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert kinds.index("CodeStart") < kinds.index("CodeRun")
    assert plain.index("running code (run 1)...") < plain.index("code run 1")
    assert "1267650600228229401496703205376" in plain


THINKING = ("The user asks for 2**100. To get the exact value I will run Python `2**100` in "
            "the code interpreter instead of computing it by hand.")


@pytest.mark.parametrize("with_rich", [True, False], ids=["rich", "plain"])
def test_long_lines_wrap_at_word_boundaries_in_a_narrow_terminal(
    with_rich: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``qwen-ci ask`` against the emulator with COLUMNS=40: thinking and answer lines fit
    the terminal and break between words, with rich and without it; the usage and
    request id lines are never broken."""
    from qwen_ci_server.emulator import Emulator

    monkeypatch.setenv("COLUMNS", "40")
    if not with_rich:
        for module in ("rich", "rich.console", "rich.live"):
            monkeypatch.setitem(sys.modules, module, None)  # import rich fails: plain text
    with Emulator(pool_size=1) as emu:
        code, out = ask("--base-url", emu.base_url, "--api-key", "sk", "What is 2**100?")
    assert code == 0, out
    assert ("─" in out) is with_rich  # rich's rules, or the plain headers
    lines = out.rstrip("\n").split("\n")
    assert lines[-1].startswith("request_id: ") and lines[-2].startswith("tokens: ")
    body = [line.rstrip() for line in lines[:-2]]
    assert max(len(line) for line in body) <= 40, "\n".join(body)
    # every word whole on one line: the thinking reads back word for word
    words = [word for line in body for word in line.split()]
    start = words.index("user") - 1
    assert " ".join(words[start:start + len(THINKING.split())]) == THINKING
    assert "1267650600228229401496703205376" in words
    assert " ".join(words[-5:]) == "That is a 31-digit number."


def test_plain_wrapping_keeps_code_blocks_and_cuts_only_overlong_words() -> None:
    from qwen_ci.cli import _Wrap

    out = io.StringIO()
    wrap = _Wrap(out, 20)
    text = ("Run this code to see the value:\n```python\n"
            "print(sum(i * i for i in range(1, 11)))\n```\nIt prints 385, the sum of "
            "squares. " + "x" * 45)
    for piece in re.findall(r".{1,3}", text, re.S):  # streamed in small deltas
        wrap.write(piece)
    wrap.end()
    assert out.getvalue().split("\n") == [
        "Run this code to see", "the value:", "```python",
        "print(sum(i * i for i in range(1, 11)))",  # code: never re-wrapped
        "```", "It prints 385, the", "sum of squares.",
        "x" * 20, "x" * 20, "x" * 5, ""]
