"""The scripted model understands plain phrasings of everything it claims, answers them
from the real output of the code it ran, and refuses near misses instead of guessing.

Each category has several phrasings (English and Chinese); every one of them is asked of
the real emulator and its answer must hold the exact value on a line of its own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from qwen_ci import Client, Options, Result, build, collect
from qwen_ci_server.emulator import Emulator
from qwen_ci_server.emulator.model import Answer, Message, RunCode, Turn
from qwen_ci_server.emulator.scripted import ScriptedModel, plan_for
from qwen_ci_server.emulator.understanding import find_follow_up, find_task, previous_value
from tests.emulator.conftest import KEY, ask

FIB50 = "12586269025"

PHRASINGS: dict[str, list[tuple[str, str]]] = {
    "fibonacci": [
        ("fibonacci(50)", FIB50),
        ("What is fibonacci(50)?", FIB50),
        ("fib(50)", FIB50),
        ("The 50th Fibonacci number", FIB50),
        ("What is the Fibonacci number of 10?", "55"),
        ("Compute fibonacci(10) with code.", "55"),
        ("斐波那契数列第50项是多少？", FIB50),
        ("第10个斐波那契数", "55"),
    ],
    "primes": [
        ("Count the primes less than 100", "25"),
        ("How many primes are below 1000?", "168"),
        ("How many prime numbers are there under 100?", "25"),
        ("How many primes are there up to 97?", "25"),
        ("What is the number of primes below 10?", "4"),
        ("count the primes up to 7", "4"),
        ("小于100的质数有多少个？", "25"),
        ("100以内有多少个质数？", "25"),
        ("统计小于1000的素数个数", "168"),
    ],
    "mean": [
        ("Average of [1, 2, 3]", "2"),
        ("Mean of 4, 8 and 15", "9"),
        ("What is the average of 1, 2 and 4?", "7/3"),  # exact: not 2.3333333333333335
        ("average of 0.1 and 0.2", "0.15"),
        ("mean([1, 2])", "1.5"),
        ("What is the average of the integers from 1 to 10?", "5.5"),
        ("[1,2,3]的平均值是多少？", "2"),
        ("4、8、15的平均值", "9"),
    ],
    "sum": [
        ("Sum of squares from 1 to 10", "385"),
        ("What is the sum of the squares of 1 to 10?", "385"),
        ("sum of cubes from 1 to 3", "36"),
        ("Sum of 1 to 100", "5050"),
        ("sum([1, 2, 3])", "6"),
        ("What is the sum of 0.1 and 0.2?", "0.3"),  # exact: not 0.30000000000000004
        ("Sum of the first 10 squares", "385"),
        ("the sum of the first 100 positive integers", "5050"),
        ("1到10的平方和", "385"),
        ("从1到100的整数的和是多少", "5050"),
    ],
    "factorial": [
        ("What is 20 factorial?", "2432902008176640000"),
        ("factorial(10)", "3628800"),
        ("math.factorial(10)", "3628800"),
        ("10!", "3628800"),
        ("the factorial of 10", "3628800"),
        ("10的阶乘是多少？", "3628800"),
    ],
    "power": [
        ("2**10", "1024"),
        ("pow(2, 10)", "1024"),
        ("What is 2^10?", "1024"),
        ("2 to the power of 10", "1024"),
        ("What is 2 to the power 10?", "1024"),
        ("the 10th power of 2", "1024"),
        ("3 squared", "9"),
        ("the cube of 4", "64"),
        ("2的10次方是多少？", "1024"),
        ("7的平方", "49"),
    ],
    "expression": [
        ("What is 0.1 + 0.2?", "0.3"),  # decimals as written, not binary floats
        ("7.5 / 2", "3.75"),
        ("What is 1.5 times 4?", "6"),
        ("12 * (3 + 4)", "84"),
        ("3 plus 4", "7"),
        ("计算 (17 + 25) ÷ 6", "7.0"),  # Python's true division, as the code says
    ],
}
CASES = [(kind, prompt, value) for kind, cases in PHRASINGS.items() for prompt, value in cases]
IDS = [f"{kind}:{prompt}" for kind, prompt, _ in CASES]


@pytest.mark.parametrize(("kind", "prompt", "value"), CASES, ids=IDS)
def test_each_phrasing_is_understood_and_its_code_computes_the_value(
    kind: str, prompt: str, value: str
) -> None:
    task = find_task(prompt)
    assert task is not None, f"{prompt!r} was not understood"
    # the value comes from running the code, never written into it by the emulator
    if len(value) >= 3:
        assert value not in task.code


@pytest.mark.parametrize(("kind", "prompt", "value"), CASES, ids=IDS)
def test_each_phrasing_gets_the_exact_value_from_a_real_run(
    emulator: Emulator, kind: str, prompt: str, value: str
) -> None:
    result = ask(emulator, prompt)
    assert len(result.code_runs) == 1, result.text
    assert re.search(rf"^{re.escape(value)}$", result.text, re.M), result.text


NEAR_MISSES = [
    "fibonacci of a banana",
    "fibonacci(banana)",
    "fibonacci(50) of a banana",
    "What is the 50th Fibonacci prime?",
    "Average of []",
    "Average of [1, 2, banana]",
    "mean()",
    "Sum of squares from 10 to",
    "Sum of squares from 10 to 1",  # an empty range: the model does not guess 1 to 10
    "Sum of squares from 1.5 to 10",
    "Sum of squares of the even numbers from 1 to 10",
    "Sum of the first 10 numbers",  # from 0 or from 1? not guessed
    "Sum of the first ten squares",
    "Count the primes",
    "Count the primes less than a hundred",
    "Count the primes between 10 and 100",
    "How many primes are below 1000 and end in 3?",
    "factorial of -3",
    "factorial(2.5)",
    "What is 2 to the power of banana?",
    "pow(2, 10, 7)",
    "Average of the primes below 100",
    "What is the median of 1, 2 and 4?",
    "斐波那契数列第香蕉项",
    "[]的平均值",
    "小于100的质数之和是多少？",
    "1到的平方和",
    "Now divide that by 4.",  # nothing earlier in the conversation
    "Now divide the banana by 4.",
    "divide that by",
]


@pytest.mark.parametrize("prompt", NEAR_MISSES)
def test_near_misses_are_refused(prompt: str) -> None:
    for ci in (True, False):
        plan = plan_for(prompt, ci)
        assert isinstance(plan, tuple), f"{prompt!r} was answered with code"
    pieces = ScriptedModel().pieces(Turn("qwen3-max", (Message("user", prompt),)))
    assert not any(isinstance(p, RunCode) for p in pieces)
    answer = pieces[-1]
    assert isinstance(answer, Answer)
    assert any(word in answer.text for word in ("not guess", "不作回答", "which number"))


# ---------------------------------------------------------------------- follow-ups


def chat(emu: Emulator, messages: list[dict[str, Any]]) -> Result:
    with Client(api_key=KEY, base_url=emu.base_url, max_retries=0) as client:
        return collect(client.stream(build(messages, Options(), "dashscope")))


@pytest.mark.parametrize(
    ("first", "follow", "value"),
    [
        ("fibonacci(50)", "Now divide that by 4.", "3146567256.25"),
        ("fibonacci(50)", "Divide it by 4", "3146567256.25"),
        ("2**100", "Now divide that by 3.", "1267650600228229401496703205376/3"),
        ("2**100", "Then divide the result by 4", "316912650057057350374175801344"),
        ("Average of 1, 2 and 4", "Multiply that by 3", "7"),
        ("10!", "and subtract 800 from it", "3628000"),
        ("What is 2^10?", "Now add 0.5 to that", "1024.5"),
        ("2的10次方是多少？", "再除以4", "256"),
        ("10的阶乘是多少？", "把结果乘以2", "7257600"),
    ],
)
def test_follow_up_uses_the_previous_answer_of_the_conversation(
    emulator: Emulator, first: str, follow: str, value: str
) -> None:
    earlier = ask(emulator, first)
    assert len(earlier.code_runs) == 1
    result = chat(emulator, [{"role": "user", "content": first},
                             {"role": "assistant", "content": earlier.text},
                             {"role": "user", "content": follow}])
    assert len(result.code_runs) == 1
    previous = previous_value(earlier.text)
    assert previous is not None and f'Fraction("{previous}")' in result.code_runs[0].code
    assert re.search(rf"^{re.escape(value)}$", result.text, re.M), result.text


@pytest.mark.parametrize(
    "earlier",
    ["Hello! How can I help?", "There are 3 apples and 4 pears.", "12\n\n13"],
)
def test_follow_up_without_one_clear_earlier_number_is_refused(earlier: str) -> None:
    turn = Turn("qwen3-max", (Message("user", "hi"), Message("assistant", earlier),
                              Message("user", "Now divide that by 4.")))
    pieces = ScriptedModel().pieces(turn)
    assert not any(isinstance(p, RunCode) for p in pieces)
    answer = pieces[-1]
    assert isinstance(answer, Answer) and "which number" in answer.text


def test_follow_up_reads_the_last_assistant_answer() -> None:
    turn = Turn("qwen3-max", (Message("user", "2**3"), Message("assistant", "It is:\n\n8"),
                              Message("user", "2**4"), Message("assistant", "It is:\n\n16"),
                              Message("user", "Now divide that by 4.")))
    pieces = ScriptedModel().pieces(turn)
    run = pieces[-1]
    assert isinstance(run, RunCode) and 'Fraction("16") / Fraction("4")' in run.code


@pytest.mark.parametrize(
    ("text", "symbol", "operand"),
    [("Now divide that by 4.", "/", "4"), ("then multiply it by 2.5", "*", "2.5"),
     ("Add 7 to it.", "+", "7"), ("Now subtract 5 from that", "-", "5"),
     ("Raise that to the power of 3", "**", "3"), ("现在除以4", "/", "4"),
     ("再乘以3", "*", "3"), ("把它减去2", "-", "2"), ("然后加上10", "+", "10")],
)
def test_follow_up_phrasings(text: str, symbol: str, operand: str) -> None:
    follow = find_follow_up(text)
    assert follow is not None and (follow.symbol, follow.operand) == (symbol, operand)


def test_follow_up_over_the_compatible_protocol(emulator: Emulator) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "fibonacci(50)"},
        {"role": "assistant", "content": f"The 50th Fibonacci number is:\n\n{FIB50}"},
        {"role": "user", "content": "Now divide that by 4."},
    ]
    with Client(api_key=KEY, base_url=emulator.base_url, max_retries=0) as client:
        result = collect(client.stream(build(messages, Options(), "openai")))
    assert re.search(r"^3146567256\.25$", result.text, re.M), result.text
