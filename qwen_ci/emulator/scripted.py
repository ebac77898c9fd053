"""The emulator's default model: deterministic and scripted, not a language model.

It recognizes a few kinds of questions, in English and Chinese: powers, factorials,
sums and averages of number lists (or ranges), arithmetic expressions, a fenced Python
block (run as is), and two-step requests ("first compute X, then divide that by 5").
It writes real Python, runs it in the sandbox, and builds its answer from the real
output, thinking before and after each run. Anything else gets a short plain answer
without code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from qwen_ci.emulator.model import Answer, Piece, Run, RunCode, Thinking, Turn
from qwen_ci.sandbox.limits import RESET_NOTICE, cap

NUM = r"-?\d+(?:\.\d+)?"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(?:hello|hi|hey|howdy|good (?:morning|afternoon|evening)|how are you|"
    r"你好|您好|嗨|哈喽)\b",
    re.IGNORECASE,
)
_ANSWER_EXCERPT = 1500


def is_chinese(text: str) -> bool:
    """True when ``text`` contains CJK characters (answer in Chinese)."""
    return bool(_CJK.search(text))


# ---------------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class Task:
    """One computation: its code and how to describe it.

    Example:
        >>> find_task("What is 20 factorial?").code
        'import math\\nmath.factorial(20)'
    """

    code: str
    en: str
    zh: str
    kind: str


def _power(base: str, exp: str) -> Task:
    return Task(f"{base}**{exp}", f"{base} to the power of {exp}", f"{base}的{exp}次方", "power")


def _find_power(text: str) -> Task | None:
    patterns_base_exp = (
        rf"({NUM})\s+(?:to the power of|raised to the power of|raised to the|raised to|"
        rf"to the)\s+({NUM})(?:st|nd|rd|th)?(?:\s+power)?",
        rf"({NUM})\s*的\s*({NUM})\s*次(?:方|幂)",
    )
    for pattern in patterns_base_exp:
        if match := re.search(pattern, text, re.IGNORECASE):
            return _power(match.group(1), match.group(2))
    if match := re.search(rf"the\s+({NUM})(?:st|nd|rd|th)\s+power\s+of\s+({NUM})", text, re.I):
        return _power(match.group(2), match.group(1))
    if match := re.search(rf"({NUM})\s*的\s*(平方|立方)", text):
        return _power(match.group(1), "2" if match.group(2) == "平方" else "3")
    if match := re.search(rf"(?:square of|squared)\s*({NUM})|({NUM})\s+squared", text, re.I):
        return _power(match.group(1) or match.group(2), "2")
    return None


def _find_factorial(text: str) -> Task | None:
    patterns = (
        r"factorial\s+of\s+(\d+)",
        r"(\d+)\s+factorial",
        r"(\d+)!(?!=)",
        r"(\d+)\s*的\s*阶乘",
        r"阶乘\D{0,4}?(\d+)",
    )
    for pattern in patterns:
        if match := re.search(pattern, text, re.IGNORECASE):
            n = match.group(1)
            return Task(f"import math\nmath.factorial({n})", f"{n}!", f"{n}的阶乘", "factorial")
    return None


_SUM_WORDS = re.compile(
    r"\b(?:sum|total|add up|adds up|added up)\b|的和|之和|总和|求和|加起来|相加|和是多少",
    re.IGNORECASE,
)
_MEAN_WORDS = re.compile(r"\b(?:average|mean)\b|平均", re.IGNORECASE)
_RANGE = re.compile(r"(?:from\s+)?(-?\d+)\s*(?:to|through|到|至|~)\s*(-?\d+)", re.IGNORECASE)


def _find_aggregate(text: str) -> Task | None:
    mean = bool(_MEAN_WORDS.search(text))
    if not mean and not _SUM_WORDS.search(text):
        return None
    op = "sum(numbers) / len(numbers)" if mean else "sum(numbers)"
    en_op, zh_op = ("the average", "平均值") if mean else ("the sum", "和")
    if (match := _RANGE.search(text)) and len(re.findall(NUM, text)) == 2:
        a, b = match.group(1), match.group(2)
        return Task(
            f"numbers = range({a}, {b} + 1)\n{op}",
            f"{en_op} of the integers from {a} to {b}",
            f"从{a}到{b}的整数的{zh_op}",
            "mean" if mean else "sum",
        )
    numbers = re.findall(NUM, text)
    if len(numbers) < 2:
        return None
    listed = ", ".join(numbers)
    return Task(
        f"numbers = [{listed}]\n{op}",
        f"{en_op} of {listed}",
        f"{listed}的{zh_op}",
        "mean" if mean else "sum",
    )


_WORD_OPS = (
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\b(?:times|multiplied by)\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bmod(?:ulo)?\b", "%"),
    (r"乘以|乘", "*"),
    (r"除以", "/"),
    (r"加上|加", "+"),
    (r"减去|减", "-"),
)
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "（": "(", "）": ")", "＋": "+", "－": "-",
                          "＊": "*", "／": "/", "＝": "=", "−": "-"})
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult,
            ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd)


def _valid_expression(expr: str) -> bool:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            return False
        if isinstance(node, ast.Constant) and type(node.value) not in (int, float):
            return False
    return isinstance(tree.body, ast.BinOp)


def _find_expression(text: str) -> Task | None:
    normalized = text.translate(_SYMBOLS)
    for pattern, symbol in _WORD_OPS:
        normalized = re.sub(pattern, f" {symbol} ", normalized, flags=re.IGNORECASE)
    normalized = normalized.replace("^", "**")
    best = ""
    for match in re.finditer(r"[\d\s.+\-*/%()]+", normalized):
        candidate = " ".join(match.group(0).split()).strip(" .")
        candidate = candidate.rstrip("+-*/% ")
        while candidate.count("(") < candidate.count(")") and candidate.endswith(")"):
            candidate = candidate[:-1].rstrip()
        while candidate.count("(") > candidate.count(")") and candidate.startswith("("):
            candidate = candidate[1:].lstrip()
        numbers = len(re.findall(r"\d+(?:\.\d+)?", candidate))
        if numbers >= 2 and _valid_expression(candidate) and len(candidate) > len(best):
            best = candidate
    if not best:
        return None
    return Task(best, best, best, "expression")


def find_task(text: str) -> Task | None:
    """The computation asked for in ``text``, if the scripted model knows it."""
    if match := _FENCE.search(text):
        code = match.group(1).strip("\n")
        if code.strip():
            return Task(code, "the given code", "给定的代码", "code")
    for finder in (_find_power, _find_factorial, _find_aggregate, _find_expression):
        if task := finder(text):
            return task
    return None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The second step of a two-step request: an operation on the first result.

    Example:
        >>> FollowUp("/", "5", "divided by 5", "除以5").code("10")
        '10 / 5'
    """

    symbol: str
    operand: str
    en: str
    zh: str

    def code(self, previous: str) -> str:
        """Python applying the operation to the previous result (as a literal)."""
        return f"{previous} {self.symbol} {self.operand}"


_FOLLOW_UPS: tuple[tuple[str, str, str, str], ...] = (
    # pattern, symbol, English, Chinese ({n} is the operand)
    (rf"divide[sd]?\s+(?:(?:that|it|this|the result)\s+)?by\s+({NUM})", "/", "divided by {n}",
     "除以{n}"),
    (rf"multipl(?:y|ied|ies)\s+(?:(?:that|it|this|the result)\s+)?by\s+({NUM})", "*",
     "multiplied by {n}", "乘以{n}"),
    (rf"add\s+({NUM})", "+", "plus {n}", "加上{n}"),
    (rf"subtract\s+({NUM})", "-", "minus {n}", "减去{n}"),
    (rf"(?:raise|take)\s+(?:(?:that|it|this|the result)\s+)?to the (?:power of\s+)?({NUM})",
     "**", "to the power of {n}", "的{n}次方"),
    (rf"除以\s*({NUM})", "/", "divided by {n}", "除以{n}"),
    (rf"乘以\s*({NUM})", "*", "multiplied by {n}", "乘以{n}"),
    (rf"加上?\s*({NUM})", "+", "plus {n}", "加上{n}"),
    (rf"减去?\s*({NUM})", "-", "minus {n}", "减去{n}"),
    (rf"({NUM})\s*次(?:方|幂)", "**", "to the power of {n}", "的{n}次方"),
)
_THEN = re.compile(
    r"^(?P<first>.+?)[,，;；.。]?\s*(?:and\s+)?(?:then|after that|afterwards)\s+(?P<second>.+)$"
    r"|^(?P<zfirst>.+?)[,，;；。]?\s*(?:然后|之后|接着|再)(?P<zsecond>.+)$",
    re.IGNORECASE | re.DOTALL,
)


def _find_follow_up(text: str) -> FollowUp | None:
    for pattern, symbol, en, zh in _FOLLOW_UPS:
        if match := re.search(pattern, text, re.IGNORECASE):
            n = match.group(1)
            return FollowUp(symbol, n, en.format(n=n), zh.format(n=n))
    return None


def find_two_steps(text: str) -> tuple[Task, FollowUp] | None:
    """``(first task, follow-up)`` for "first compute X, then <operation>" requests."""
    match = _THEN.match(text.strip())
    if not match:
        return None
    first = match.group("first") or match.group("zfirst") or ""
    second = match.group("second") or match.group("zsecond") or ""
    first = re.sub(r"^\s*(?:first(?:ly)?,?|首先|先)\s*", "", first, flags=re.IGNORECASE)
    task = find_task(first)
    follow = _find_follow_up(second)
    if task is None or follow is None or task.kind == "code":
        return None
    return task, follow


# ---------------------------------------------------------------------- texts


def _value(run: Run) -> str:
    result = run.result
    return (result.result or result.stdout).strip()


def _digits_note(value: str, zh: bool) -> str:
    digits = value.lstrip("-")
    if not digits.isdigit() or len(digits) < 10:
        return ""
    if zh:
        return f"\n\n这是一个{len(digits)}位数。"
    return f"\n\nThat is a {len(digits)}-digit number."


def _short(value: str, limit: int = 300) -> str:
    return cap(value, limit)


def _failure(run: Run, zh: bool) -> tuple[str, str]:
    result = run.result
    error = (result.error or result.status).rstrip(".")
    reset = result.reset
    if zh:
        thinking = f"\n\n代码运行失败：{error}。"
        if reset:
            thinking += "解释器已被重启，之前的变量都已丢失。"
        thinking += "我无法用这段代码得到结果，需要如实告诉用户。"
        answer = f"计算失败：运行代码时出错（{error}）。"
        if reset:
            answer += "解释器已被重启。"
        return thinking, answer
    thinking = f"\n\nThe code failed: {error}."
    if reset:
        thinking += " " + RESET_NOTICE
    thinking += " I cannot get the result this way, so I will report the error."
    answer = f"I could not compute this: running the code failed with `{error}`."
    if reset:
        answer += " The interpreter was restarted."
    return thinking, answer


@dataclass(frozen=True, slots=True)
class _Step:
    thinking: Callable[[Sequence[Run]], str]
    code: Callable[[Sequence[Run]], str]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the scripted model does for one prompt: runs, then a final answer.

    Example:
        >>> len(plan_for("First compute 2**10, then divide that by 4").steps)
        2
    """

    steps: tuple[_Step, ...]
    finish: Callable[[Sequence[Run]], tuple[str, str]]
    zh: bool


def _single_plan(task: Task, zh: bool) -> Plan:
    if task.kind == "code":
        before = (
            "用户给出了一段 Python 代码，我按原样运行它，然后根据输出回答。"
            if zh
            else "The user gave a block of Python code. I will run it as is and report "
            "what it prints."
        )
    elif zh:
        before = (
            f"用户问的是{task.zh}。这需要精确计算，我用代码解释器运行 Python 来算，"
            "而不是心算。"
        )
    else:
        before = (
            f"The user asks for {task.en}. To get the exact value I will run Python in "
            "the code interpreter instead of computing it by hand."
        )

    def finish(runs: Sequence[Run]) -> tuple[str, str]:
        run = runs[-1]
        if not run.result.ok:
            if task.kind == "code":
                return _code_failure(run, zh)
            return _failure(run, zh)
        value = _value(run)
        if task.kind == "code":
            return _code_success(run, zh)
        note = _digits_note(value, zh)
        if zh:
            thinking = f"\n\n代码计算出了结果：{_short(value)}。我需要把这个结果清晰地呈现给用户。"
            answer = f"{task.zh}是：\n\n{value}{note}"
        else:
            thinking = (
                f"\n\nThe code returned {_short(value)}. I will present this result clearly."
            )
            answer = f"{task.en[0].upper()}{task.en[1:]} is:\n\n{value}{note}"
        return thinking, answer

    return Plan((_Step(lambda runs: before, lambda runs: task.code),), finish, zh)


def _code_success(run: Run, zh: bool) -> tuple[str, str]:
    output = run.result.output
    if zh:
        printed = f"输出是：{_short(output)}。" if output else "没有输出。"
        thinking = "\n\n代码运行成功。" + printed
        answer = "代码运行成功。"
        if output:
            answer += f"输出：\n\n```\n{cap(output, _ANSWER_EXCERPT)}\n```"
        else:
            answer += "它没有打印任何内容。"
        return thinking, answer
    thinking = "\n\nThe code ran without errors. " + (
        f"It printed: {_short(output)}." if output else "It printed nothing."
    )
    answer = "The code ran without errors."
    if output:
        answer += f" Output:\n\n```\n{cap(output, _ANSWER_EXCERPT)}\n```"
    else:
        answer += " It printed nothing."
    return thinking, answer


def _code_failure(run: Run, zh: bool) -> tuple[str, str]:
    result = run.result
    detail = (result.error or result.status).rstrip(".")
    thinking, _ = _failure(run, zh)
    excerpt = cap((result.traceback or result.error).strip(), _ANSWER_EXCERPT)
    if zh:
        answer = f"代码运行失败：{detail}"
        if result.reset:
            answer += "（解释器已被重启）"
        return thinking, answer + f"\n\n```\n{excerpt}\n```"
    answer = f"The code failed: {detail}"
    if result.reset:
        answer += " (the interpreter was restarted)"
    return thinking, answer + f"\n\n```\n{excerpt}\n```"


def _two_step_plan(task: Task, follow: FollowUp, zh: bool) -> Plan:
    if zh:
        first = (
            f"用户要求分两步：先计算{task.zh}，然后把结果{follow.zh}。"
            "我先用代码算出第一步的精确值。"
        )
    else:
        first = (
            f"The user asks for two steps: first {task.en}, then the result "
            f"{follow.en}. I will compute the first step with Python."
        )

    def second_thinking(runs: Sequence[Run]) -> str:
        value = _short(_value(runs[0]))
        if zh:
            return f"\n\n第一步的结果是{value}。现在把它{follow.zh}。"
        return f"\n\nThe first step gives {value}. Now I take that {follow.en}."

    def second_code(runs: Sequence[Run]) -> str:
        return follow.code(_value(runs[0]))

    def finish(runs: Sequence[Run]) -> tuple[str, str]:
        run = runs[-1]
        if not run.result.ok:
            return _failure(run, zh)
        one, two = _value(runs[0]), _value(run)
        if zh:
            return (
                f"\n\n第二步的结果是{_short(two)}。两步都完成了，我来整理答案。",
                f"第一步：{task.zh} = {one}\n\n第二步：{one} {follow.symbol} "
                f"{follow.operand} = {two}",
            )
        return (
            f"\n\nThe second step gives {_short(two)}. Both steps are done; I will sum up.",
            f"First, {task.en} = {one}\n\nThen, {one} {follow.symbol} {follow.operand} = {two}",
        )

    return Plan(
        (_Step(lambda runs: first, lambda runs: task.code), _Step(second_thinking, second_code)),
        finish,
        zh,
    )


def _plain(prompt: str, zh: bool, code_interpreter: bool, task: Task | None) -> tuple[str, str]:
    if task is not None and not code_interpreter:
        if zh:
            return ("这需要运行代码，但代码解释器没有开启。",
                    "模拟器的脚本模型只在开启代码解释器（enable_code_interpreter）时计算。")
        return (
            "This needs code, but the code interpreter is not enabled.",
            "The emulator's scripted model computes only with the code interpreter enabled "
            "(enable_code_interpreter).",
        )
    if _GREETING.search(prompt):
        if zh:
            return ("用户在打招呼，不需要计算，我简短地回应。",
                    "你好！我是 qwen-ci 模拟器的脚本模型。请让我算点什么，例如“2的100次方”或"
                    "“20的阶乘”，我会运行 Python 来计算。")
        return (
            "The user is greeting me. Nothing needs computing, so I will reply briefly.",
            "Hello! I am the scripted model of the qwen-ci emulator. Ask me to compute "
            "something, for example 2**100 or the factorial of 20, and I will run Python "
            "for it.",
        )
    if zh:
        return ("这个问题不是我能用代码计算的，我直接简短回答。",
                "我是 qwen-ci 模拟器的脚本模型，对此没有答案。我能运行 Python 计算乘方、阶乘、"
                "求和、平均值和算式，也能运行用 ``` 围起来的 Python 代码。")
    return (
        "The message does not ask for a computation I can run, so I will answer directly.",
        "I am the scripted model of the qwen-ci emulator and have no answer for this. I run "
        "Python for powers, factorials, sums, averages and arithmetic, and for fenced "
        "Python code blocks.",
    )


def plan_for(prompt: str, code_interpreter: bool = True) -> Plan | tuple[str, str]:
    """The plan for ``prompt``, or ``(thinking, answer)`` for a plain answer."""
    zh = is_chinese(prompt)
    two = find_two_steps(prompt)
    if two is not None and code_interpreter:
        return _two_step_plan(two[0], two[1], zh)
    task = find_task(prompt)
    if task is None or not code_interpreter:
        return _plain(prompt, zh, code_interpreter, task)
    return _single_plan(task, zh)


class ScriptedModel:
    """The deterministic default model of the emulator (not a language model).

    Example:
        >>> from qwen_ci.emulator import ScriptedModel
        >>> from qwen_ci.emulator.model import Message, Turn
        >>> turn = Turn("qwen3-max", (Message("user", "What is 123 to the power of 21?"),))
        >>> ScriptedModel().pieces(turn)[-1]
        RunCode(code='123**21', memo=None)
    """

    name = "scripted"

    def pieces(self, turn: Turn) -> list[Piece]:
        """The pieces of one round, computed synchronously."""
        plan = plan_for(turn.prompt, turn.code_interpreter)
        if isinstance(plan, tuple):
            thinking, answer = plan
            return [Thinking(thinking), Answer(answer)]
        runs = turn.runs
        if runs and not runs[-1].result.ok:
            thinking, answer = plan.finish(runs)
            return [Thinking(thinking), Answer(answer)]
        if len(runs) < len(plan.steps):
            step = plan.steps[len(runs)]
            return [Thinking(step.thinking(runs)), RunCode(step.code(runs))]
        thinking, answer = plan.finish(runs)
        return [Thinking(thinking), Answer(answer)]

    async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        """Stream the round's pieces."""
        for piece in self.pieces(turn):
            yield piece
