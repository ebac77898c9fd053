"""The scripted model: what it runs for each kind of question, and its answers."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from qwen_ci import CodeRun, CodeStart, Finish, TextDelta
from qwen_ci_server.emulator import Engine, Generation, Message, ScriptedModel
from qwen_ci_server.emulator.engine import estimate_tokens, split_text
from qwen_ci_server.emulator.model import Answer, Model, Run, RunCode, Thinking, Turn
from qwen_ci_server.emulator.scripted import find_task, find_two_steps, plan_for
from qwen_ci_server.emulator.understanding import exact_code
from qwen_ci_server.sandbox import ExecutionResult
from tests.emulator.conftest import KEY, ask

BIG = "77269364466549865653073473388030061522211723"


def first_code(prompt: str) -> str | None:
    pieces = ScriptedModel().pieces(Turn("qwen3-max", (Message("user", prompt),)))
    codes = [p.code for p in pieces if isinstance(p, RunCode)]
    return codes[0] if codes else None


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        ("123的21次方是多少？", "123**21"),
        ("What is 123 to the power of 21?", "123**21"),
        ("What is 2 raised to the power of 64?", "2**64"),
        ("7的平方是多少", "7**2"),
        ("What is 20 factorial?", "import math\nmath.factorial(20)"),
        ("Compute 25!", "import math\nmath.factorial(25)"),
        ("30的阶乘是多少？", "import math\nmath.factorial(30)"),
        ("What is the sum of 3, 5 and 7?", "numbers = [3, 5, 7]\nsum(numbers)"),
        ("Average of 1, 2, 3.5 and 10", exact_code(
            'numbers = [Fraction("1"), Fraction("2"), Fraction("3.5"), Fraction("10")]\n',
            "sum(numbers) / len(numbers)")),
        ("求 4、8、15、16 的和", "numbers = [4, 8, 15, 16]\nsum(numbers)"),
        ("1, 2, 3 的平均值是多少", exact_code(
            'numbers = [Fraction("1"), Fraction("2"), Fraction("3")]\n',
            "sum(numbers) / len(numbers)")),
        ("What is the sum of the integers from 1 to 100?",
         "numbers = range(1, 100 + 1)\nsum(numbers)"),
        ("What is 12 * (3 + 4)?", "12 * (3 + 4)"),
        ("计算 (17 + 25) ÷ 6", "(17 + 25) / 6"),
        ("What is 3 plus 4 times 2?", "3 + 4 * 2"),
        ("2^10 = ?", "2**10"),
        ("Run this:\n```python\nx = [i * i for i in range(5)]\nprint(x)\n```",
         "x = [i * i for i in range(5)]\nprint(x)"),
        ("What is the 30th Fibonacci number? Use code.",
         "a, b = 0, 1\nfor _ in range(30):\n    a, b = b, a + b\na"),
        ("第30个斐波那契数是多少？", "a, b = 0, 1\nfor _ in range(30):\n    a, b = b, a + b\na"),
        ("What is the sum of the squares of 1 to 100? Use code.",
         "sum(n**2 for n in range(1, 100 + 1))"),
        ("1到100的平方和是多少？", "sum(n**2 for n in range(1, 100 + 1))"),
        ("What is 2**10 // 4? Use Python.", "2**10 // 4"),
        ("Hello", None),
        ("Write me 2 haikus. Only include the haikus.", None),
        ("how are you", None),
        ("Tell me about 2024-01-02", None),
    ],
)
def test_code_for_each_kind_of_question(prompt: str, code: str | None) -> None:
    assert first_code(prompt) == code


NEAR_MISSES = [
    "What is the sum of the digits of 2**100?",
    "What is the sum of even numbers from 1 to 100?",
    "What is the sum of the odd integers from 1 to 100?",
    "What is the product of the integers from 1 to 10?",
    "What is the average of the first 10 primes?",
    "What is 123 to the power of 21 modulo 7?",
    "What is 123 to the power of 21 in hexadecimal?",
    "How many digits does 2**100 have?",
    "What is 20 factorial divided by 18 factorial?",
    "What is the 30th prime number?",
    "What is the 30th Fibonacci number squared?",
    "How many primes are between 100 and 200?",
    "How many primes below 10000 end in 7?",
    "How many twin primes are below 10000?",
    "What is 10% of 250?",
    "What is the square root of 2?",
    "Is 97 prime?",
    "Tell me about 2024-1-2",
    "What is 2**100 minus the number of primes below 100?",
    "What is the sum of 3, 5 and 7 squared?",
    "What is the average of the integers from 1 to 100, excluding 50?",
    "1到100的偶数和是多少？",
    "123的21次方的各位数字之和是多少？",
    "2的100次方有多少位？",
    "How many euros are 1234.5 USD?",
    "What was the average monthly spend?",
    "What's the weather in Paris? Convert it to Fahrenheit.",
    "Explain this code:\n```python\nprint(1)\n```",
    "First compute 2**10, then tell me a joke about it",
    "运行两次代码解释器：第一次运行请计算123的23次方的值，第二次运行请画出它的图像",
]


@pytest.mark.parametrize("prompt", NEAR_MISSES)
def test_near_misses_are_refused_not_half_answered(prompt: str) -> None:
    """A prompt only partly understood gets the honest refusal, never a wrong computation."""
    for ci in (True, False):
        plan = plan_for(prompt, ci)
        assert isinstance(plan, tuple), f"{prompt!r} was answered with code"
    model = ScriptedModel()
    pieces = model.pieces(Turn("qwen3-max", (Message("user", prompt),)))
    assert not any(isinstance(p, RunCode) for p in pieces)
    answer = pieces[-1]
    assert isinstance(answer, Answer)
    assert any(word in answer.text for word in ("not guess", "不作回答", "I need web search",
                                                 "cannot compute", "需要联网"))


def test_two_step_requests() -> None:
    found = find_two_steps("First compute 123 to the power of 23, then divide that by 5")
    assert found is not None and found[0].code == "123**23" and found[1].code("9") == "9 / 5"
    found = find_two_steps("先计算123的23次方，然后除以5")
    assert found is not None and found[0].code == "123**23" and found[1].symbol == "/"
    assert find_two_steps("What is 2 + 2, and then tell me a joke") is None
    assert find_task("hello there") is None


def turn_with(prompt: str, *outputs: str, ok: bool = True) -> Turn:
    runs = tuple(
        Run("code", ExecutionResult("ok" if ok else "error", result=out,
                                    error="" if ok else "ZeroDivisionError: division by zero"))
        for out in outputs
    )
    return Turn("qwen3-max", (Message("user", prompt),), runs)


def test_answer_is_built_from_the_real_output() -> None:
    model = ScriptedModel()
    pieces = model.pieces(turn_with("123的21次方是多少？", BIG))
    assert isinstance(pieces[0], Thinking) and BIG in pieces[0].text
    assert isinstance(pieces[-1], Answer)
    assert pieces[-1].text == f"123的21次方是：\n\n{BIG}\n\n这是一个44位数。"
    english = model.pieces(turn_with("What is 123 to the power of 21?", BIG))[-1]
    assert isinstance(english, Answer) and BIG in english.text and "44-digit" in english.text
    # the answer follows the output, whatever it is
    odd = model.pieces(turn_with("What is 123 to the power of 21?", "42"))[-1]
    assert isinstance(odd, Answer) and "42" in odd.text and BIG not in odd.text


def test_failed_run_is_reported_not_hidden() -> None:
    pieces = ScriptedModel().pieces(turn_with("What is 1/0 + 1?", "", ok=False))
    assert isinstance(pieces[-1], Answer) and "ZeroDivisionError" in pieces[-1].text
    assert not any(isinstance(p, RunCode) for p in pieces)


def test_two_step_second_code_uses_the_first_result() -> None:
    model = ScriptedModel()
    prompt = "First compute 123 to the power of 23, then divide that by 5"
    second = model.pieces(turn_with(prompt, "1169008215014432917465348578887506800769541157267"))
    assert second[-1] == RunCode("1169008215014432917465348578887506800769541157267 / 5")
    final = model.pieces(turn_with(prompt, "116", "23.2"))
    assert isinstance(final[-1], Answer) and "23.2" in final[-1].text


def test_plain_answers_without_code() -> None:
    pieces = ScriptedModel().pieces(Turn("qwen3-max", (Message("user", "你好"),)))
    assert [type(p) for p in pieces] == [Thinking, Answer]
    assert isinstance(pieces[1], Answer) and pieces[1].text.startswith("你好")
    no_ci = Turn("qwen3-max", (Message("user", "2**10?"),), code_interpreter=False)
    assert not any(isinstance(p, RunCode) for p in ScriptedModel().pieces(no_ci))


def test_scripted_model_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedModel(), Model)


def test_split_and_estimate() -> None:
    text = "The user asks 123的21次方。\n\nOK"
    pieces = split_text(text)
    assert "".join(pieces) == text and len(pieces) > 3
    assert estimate_tokens("hello world") == 2 and estimate_tokens("你好") == 1
    assert estimate_tokens("") == 0


def test_engine_stop_and_max_tokens() -> None:
    async def final(**options: object) -> tuple[str, str]:
        engine = Engine(ScriptedModel(), sandbox=None)
        gen = Generation("qwen3-max", (Message("user", "Hello"),), **options)  # type: ignore[arg-type]
        text, reason = "", ""
        async for frame in engine.frames(gen):
            text += frame.content
            reason = frame.finish or reason
        return text, reason

    full, reason = asyncio.run(final())
    assert reason == "stop" and full.startswith("Hello!")
    cut, reason = asyncio.run(final(stop=("scripted",)))
    assert reason == "stop" and cut == full[: full.index("scripted")]
    short, reason = asyncio.run(final(max_tokens=5))
    assert reason == "length" and 0 < len(short) < len(full)
    thinking = asyncio.run(_reasoning(thinking_budget=3))
    assert 0 < len(thinking) < len(asyncio.run(_reasoning()))


async def _reasoning(**options: object) -> str:
    engine = Engine(ScriptedModel(), sandbox=None)
    gen = Generation("qwen3-max", (Message("user", "Hello"),), **options)  # type: ignore[arg-type]
    return "".join([f.reasoning async for f in engine.frames(gen)])


# ---------------------------------------------------------------------- end to end


@pytest.mark.parametrize("protocol", ["dashscope", "openai"])
@pytest.mark.parametrize("prompt", ["123的21次方是多少？", "What is 123 to the power of 21?"])
def test_seed_questions(emulator: object, protocol: str, prompt: str) -> None:
    result = ask(emulator, prompt, protocol)  # type: ignore[arg-type]
    assert BIG in result.text
    assert result.finish is not None and result.finish.reason == "stop"
    assert result.reasoning.count(BIG) == 1  # thinking after the run quotes the output
    if protocol == "dashscope":
        assert result.code_runs == [CodeRun(0, "123**21")]
        assert result.usage is not None
        assert result.usage.plugins == {"code_interpreter": {"count": 1}}
    else:
        assert result.code_runs == []


def test_two_steps_end_to_end(emulator: object) -> None:
    result = ask(emulator, "先计算123的23次方，然后除以5")  # type: ignore[arg-type]
    assert [run.code for run in result.code_runs] == [
        "123**23", "1169008215014432917465348578887506800769541157267 / 5"]
    assert "2.338016430028866e+47" in result.text
    assert result.usage is not None and result.usage.plugins["code_interpreter"]["count"] == 2


DOC_TWO_RUNS = [
    "运行两次代码解释器：第一次运行请计算123的23次方的值，第二次运行请将前者的结果除以5",
    "Run the code interpreter twice: first calculate 123 to the power of 23, then divide "
    "the result by 5.",
]
BIG23 = "1169008215014432917465348578887506800769541157267"


@pytest.mark.parametrize("prompt", DOC_TWO_RUNS)
def test_the_service_pages_two_run_prompt_runs_twice(emulator: object, prompt: str) -> None:
    """The documented multi-run prompt: two runs, count 2, the codes the page shows."""
    result = ask(emulator, prompt)  # type: ignore[arg-type]
    assert [run.code for run in result.code_runs] == ["123**23", f"{BIG23} / 5"]
    assert result.usage is not None
    assert result.usage.plugins == {"code_interpreter": {"count": 2}}
    assert BIG23 in result.text and "2.338016430028866e+47" in result.text


@pytest.mark.parametrize(
    ("prompt", "value"),
    [
        ("What is the 30th Fibonacci number? Use code.", "832040"),
        ("How many primes are below 10000?", "1229"),
        ("What is the sum of the squares of 1 to 100? Use code.", "338350"),
        ("1到100的平方和是多少？", "338350"),
        ("What is 2**10 // 4? Use Python.", "256"),
    ],
)
def test_answers_are_correct(emulator: object, prompt: str, value: str) -> None:
    result = ask(emulator, prompt)  # type: ignore[arg-type]
    assert len(result.code_runs) == 1 and value in result.text


def test_query_engine_prompt_divides_the_total_by_the_months(emulator: object) -> None:
    prompt = ("Context information is below.\n---------------------\nThe 2024 budget was "
              "1,234,567 EUR, spent over 7 months.\n---------------------\nGiven the context "
              "information and not prior knowledge, answer the query.\nQuery: What was the "
              "average monthly spend?\nAnswer: ")
    result = ask(emulator, prompt)  # type: ignore[arg-type]
    assert [run.code for run in result.code_runs] == [
        "total = 1234567\nmonths = 7\nround(total / months, 2)"]
    assert "176366.71 EUR" in result.text


def test_web_search_reports_search_info_in_the_recorded_shape(
    emulator: object, recorded: None
) -> None:
    """enable_search: ``search_info`` once, with the recorded result keys; labelled data."""
    import json

    from tests.replay import RECORDED

    body = (RECORDED / "single-generation-message-search-sse.response.body.txt").read_text(
        "utf-8-sig")
    first = json.loads(body.split("data:", 1)[1].split("\n", 1)[0])
    real_keys = set(first["output"]["search_info"]["search_results"][0])
    result = ask(emulator, "今天杭州天气如何？算一下摄氏转华氏。",  # type: ignore[arg-type]
                 extra_body={"enable_search": True})
    assert result.search_info is not None
    entries = result.search_info["search_results"]
    assert entries and set(entries[0]) == real_keys
    assert "模拟器" in entries[0]["title"] and ".invalid/" in entries[0]["url"]
    assert "53.6°F" in result.text and "69.8°F" in result.text
    assert result.usage is not None and result.usage.plugins["search"]["count"] == 1
    without = ask(emulator, "今天杭州天气如何？算一下摄氏转华氏。")  # type: ignore[arg-type]
    assert without.search_info is None and not without.code_runs
    assert "enable_search" in without.text


def test_fenced_code_runs_as_is_with_state(emulator: object) -> None:
    prompt = (
        "```python\nimport os\nvalues = [n ** 2 for n in range(4)]\n"
        "print(values, os.getcwd())\n```"
    )
    result = ask(emulator, prompt)  # type: ignore[arg-type]
    assert result.code_runs[0].code.startswith("import os\nvalues")
    assert "[0, 1, 4, 9]" in result.text


def test_stream_is_silent_during_a_run(emulator: object) -> None:
    from qwen_ci import Client, Options, build

    prompt = "```python\nimport time\ntime.sleep(1.2)\nprint('slept')\n```"
    client = Client(api_key=KEY, base_url=emulator.base_url)  # type: ignore[attr-defined]
    request = build([{"role": "user", "content": prompt}], Options(), "dashscope")
    stamps: list[tuple[float, object]] = []
    for event in client.stream(request):
        stamps.append((time.monotonic(), event))
    gaps = [(b[0] - a[0], a[1], b[1]) for a, b in itertools.pairwise(stamps)]
    longest = max(gaps, key=lambda gap: gap[0])
    assert longest[0] >= 1.1
    # the gap is the run: its code is announced (start) before it executes, and the run
    # is final when output resumes
    code = "import time\ntime.sleep(1.2)\nprint('slept')"
    assert longest[1] == CodeStart(0, code)
    assert longest[2] == CodeRun(0, code)
    assert any(isinstance(e, TextDelta) and "slept" in e.text for _, e in stamps)
    assert isinstance(stamps[-1][1], Finish)
