"""The emulator's default model: deterministic and scripted, not a language model.

It answers only what it fully understands (see :mod:`qwen_ci_server.emulator.understanding`),
in English and Chinese, in plain words or as code (``fibonacci(50)``, ``Average of [1, 2,
3]``): powers, factorials, Fibonacci numbers, prime counts, sums and averages of number
lists or ranges (also sums of squares), arithmetic expressions, a fenced Python block (run
as is), two-step requests ("first compute X, then divide that by 5", the service page's
"运行两次代码解释器..."), follow-ups on the previous answer of the conversation ("Now
divide that by 4."), the "average monthly spend" over a query engine's or a context chat
engine's retrieved context, LlamaIndex ReAct agents with a currency-rate tool, and, with
``enable_search``, the weather of a few cities from its own search data (clearly labelled,
in the service's ``search_info`` shape). It writes real Python, runs it in the sandbox and
builds its answer from the real output. Anything else gets an honest plain answer without
code: a wrong answer is worse than none.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from qwen_ci_server.emulator.model import (
    Answer,
    Message,
    Piece,
    Run,
    RunCode,
    SearchResults,
    Thinking,
    Turn,
)
from qwen_ci_server.emulator.understanding import (
    NUM,
    FollowUp,
    Task,
    find_follow_up,
    find_task,
    find_two_steps,
    is_chinese,
    only_filler,
    previous_value,
)
from qwen_ci_server.sandbox.limits import RESET_NOTICE, cap

_GREETING = re.compile(
    r"^\s*(?:hello|hi|hey|howdy|good (?:morning|afternoon|evening)|how are you|"
    r"你好|您好|嗨|哈喽)\b",
    re.IGNORECASE,
)
_ANSWER_EXCERPT = 1500
_NUMBER_ONLY = re.compile(
    r"answer (?:only |just )?with (?:only |just )?(?:a|the) number|只(?:回答|给出|输出)数字",
    re.IGNORECASE,
)

__all__ = ["FollowUp", "Plan", "ScriptedModel", "Task", "find_task", "find_two_steps",
           "is_chinese", "plan_for"]


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
    search: tuple[dict[str, object], ...] = field(default=())
    """Web search results to report before the first step (``search_info``)."""


def _one_run(before: str, code: str, answer: Callable[[str], tuple[str, str] | None], zh: bool,
             search: tuple[dict[str, object], ...] = ()) -> Plan:
    """One run of ``code``, then ``answer(output)`` (None: the output is not usable)."""

    def finish(runs: Sequence[Run]) -> tuple[str, str]:
        run = runs[-1]
        done = answer(_value(run)) if run.result.ok else None
        return done if done is not None else _failure(run, zh)

    return Plan((_Step(lambda runs: before, lambda runs: code),), finish, zh, search)


def _naming(code: str, zh: bool) -> str:
    """`` `code` `` to name a one-line expression in the thinking (as a model's thinking does,
    and the only place the compatible protocol shows it); empty for longer code."""
    if "\n" in code or len(code) > 60:
        return ""
    return f" `{code}`" if not zh else f"：`{code}`"


def _single_plan(task: Task, zh: bool, number_only: bool = False) -> Plan:
    if task.kind == "code":
        before = (
            "用户给出了一段 Python 代码，我按原样运行它，然后根据输出回答。"
            if zh
            else "The user gave a block of Python code. I will run it as is and report "
            "what it prints."
        )
    elif zh:
        before = (
            f"用户问的是{task.zh}。这需要精确计算，我用代码解释器运行 Python 来算"
            f"{_naming(task.code, zh)}，而不是心算。"
        )
    else:
        before = (
            f"The user asks for {task.en}. To get the exact value I will run "
            f"Python{_naming(task.code, zh)} in the code interpreter instead of computing "
            "it by hand."
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
        if number_only:
            if zh:
                return f"\n\n代码算出{_short(value)}。按要求只回答数字。", value
            return f"\n\nThe code returned {_short(value)}. I was asked for the number only.", value
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


def _follow_up_plan(turn: Turn, follow: FollowUp, zh: bool) -> Plan | tuple[str, str]:
    """"Now divide that by 4.": the operation on the number of the previous answer."""
    asked = max(i for i, m in enumerate(turn.messages) if m.role == "user")
    before = [m for m in turn.messages[:asked] if m.role == "assistant"]
    previous = previous_value(before[-1].text) if before else None
    if previous is None:
        if zh:
            return ("用户说“它”，但之前的回答里没有一个明确的数字，我不猜。",
                    "我不知道“它”指的是哪个数：之前的对话里没有一个明确的结果。"
                    "请把数字写出来，例如“123除以4”。")
        return ("The user refers to an earlier result, but no earlier answer gives one clear "
                "number, so I will not guess.",
                "I do not know which number \"that\" refers to: no earlier answer in this "
                "conversation gives one clear result. Please write the number, for example "
                "\"123 divided by 4\".")
    if not turn.code_interpreter:
        return _plain(turn.prompt, zh, False, Task("", "", "", "follow-up"))
    task = Task(follow.exact_code(previous), f"{previous} {follow.en}",
                f"{previous}{follow.zh}", "follow-up")
    plan = _single_plan(task, zh)
    note = (f"上一个回答的结果是{_short(previous)}，现在把它{follow.zh}。" if zh else
            f"The previous answer was {_short(previous)}; now I take that {follow.en}. ")
    step = plan.steps[0]
    return Plan((_Step(lambda runs: note + step.thinking(runs), step.code),), plan.finish, zh)


# ---------------------------------------------------------------------- query engines

_CONTEXT_QA = re.compile(
    r"Context information is below\.\s*\n-{3,}\n(?P<context>.*?)\n-{3,}\n.*?"
    r"Query:\s*(?P<query>.*?)\s*\nAnswer:",
    re.DOTALL,
)
_MONTHLY = re.compile(
    r"(?:the\s+)?(?:average\s+(?:monthly\s+(?:spend|spending|cost|costs|expense|expenses)"
    r"|(?:spend|spending|cost|expense)s?\s+per\s+month)"
    r"|monthly\s+average\s+(?:spend|spending|cost|expense)s?"
    r"|(?:much|money)\s+(?:was\s+|did\s+(?:we|they)\s+)?(?:spent|spend)\s+(?:per|a|each)\s+"
    r"month\s+on\s+average)",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?\s*(EUR|USD|CNY|GBP|euros?|dollars?|元)\b",
    re.IGNORECASE,
)
_MONTHS = re.compile(r"\b(?:over|in|across|during)\s+(\d+)\s+months\b", re.IGNORECASE)


def _asks_monthly(query: str) -> bool:
    """True when ``query`` asks for the average monthly spend and nothing else."""
    match = _MONTHLY.search(query)
    return match is not None and only_filler(query[: match.start()] + query[match.end() :])


def _system_context(turn: Turn) -> str | None:
    """The system messages' text: where a context chat engine puts what it retrieved."""
    text = "\n".join(m.text for m in turn.messages if m.role == "system")
    return text or None


def _context_plan(context: str, query: str, zh: bool) -> Plan | tuple[str, str]:
    """A retrieval prompt: the average monthly spend from its context, or a task."""
    if _asks_monthly(query):
        amounts, months = _AMOUNT.findall(context), _MONTHS.findall(context)
        if len(amounts) == 1 and len(months) == 1:
            whole, fraction, unit = amounts[0]
            total = whole.replace(",", "") + (f".{fraction}" if fraction else "")
            code = f"total = {total}\nmonths = {months[0]}\nround(total / months, 2)"
            task = Task(code, "average monthly spend", "平均每月支出", "context")
            return _context_answer_plan(task, f"{whole} {unit}", months[0], unit, zh)
        return (
            "The context does not give exactly one total amount and one number of months, "
            "so I cannot compute a monthly average from it.",
            "I cannot compute the average monthly spend from this context: it does not state "
            "one total amount and the number of months it was spent over.",
        )
    if (asked := find_task(query)) is not None:
        return _single_plan(asked, zh)
    return _plain(query, zh, True, None)


def _context_answer_plan(task: Task, total: str, months: str, unit: str, zh: bool) -> Plan:
    before = (
        f"The context says {total} was spent over {months} months. The average monthly spend "
        "is the total divided by the months; I will compute it with Python."
    )

    return _one_run(before, task.code, lambda value: (
        f"\n\nThe code returned {value}.",
        f"The average monthly spend was {value} {unit} ({total} over {months} months).",
    ), zh)


# ---------------------------------------------------------------------- web search

_WEATHER: dict[str, tuple[str, str, str, int, int]] = {
    # the emulator's own example data (English name, Chinese name, sky, low, high in °C)
    "hangzhou": ("Hangzhou", "杭州", "sunny|晴", 12, 21),
    "beijing": ("Beijing", "北京", "cloudy|多云", 3, 11),
    "shanghai": ("Shanghai", "上海", "light rain|小雨", 10, 16),
    "singapore": ("Singapore", "新加坡", "thunderstorms|雷阵雨", 25, 31),
}
_CITY_EN = "|".join(_WEATHER)
_CITY_ZH = "|".join(city[1] for city in _WEATHER.values())
_WEATHER_ASK = re.compile(
    rf"(?:(?:today'?s\s+)?weather\s+(?:like\s+)?in\s+(?P<en>{_CITY_EN})(?:\s+today)?"
    rf"(?:\s+like)?|(?:今天|今日)?\s*(?P<zh>{_CITY_ZH})\s*(?:今天|今日)?的?天气(?:如何|怎么样|怎样)?)",
    re.IGNORECASE,
)
_TO_FAHRENHEIT = re.compile(
    r"(?:and\s+)?convert\s+(?:it|that|the temperatures?)?\s*(?:from\s+)?"
    r"(?:(?:celsius|°c)\s+)?(?:in)?to\s+fahrenheit|摄氏(?:度)?转(?:换)?(?:成|为)?华氏(?:度)?",
    re.IGNORECASE,
)
SEARCH_HOST = "https://qwen-ci.invalid/emulator-search"
"""Base of the emulator's search result URLs (``.invalid``: never a real page)."""


def _weather_results(key: str, zh: bool) -> tuple[dict[str, object], ...]:
    en_name, zh_name, _sky, _low, _high = _WEATHER[key]
    title = (f"{zh_name}今日天气（qwen-ci 模拟器的示例数据）" if zh
             else f"{en_name} weather today (qwen-ci emulator example data)")
    return ({"icon": "", "site_name": "qwen-ci emulator", "index": 1, "title": title,
             "url": f"{SEARCH_HOST}/weather/{key}"},)


def _weather_plan(prompt: str, search: bool, zh: bool) -> Plan | tuple[str, str] | None:
    match = _WEATHER_ASK.search(prompt)
    if match is None:
        return None
    convert = _TO_FAHRENHEIT.search(prompt)
    rest = prompt
    for found in sorted((m for m in (match, convert) if m), key=lambda m: -m.start()):
        rest = rest[: found.start()] + " " + rest[found.end() :]
    if not only_filler(rest):
        return None
    key = (match["en"] or "").lower() or next(
        k for k, city in _WEATHER.items() if city[1] == match["zh"])
    en_name, zh_name, sky, low, high = _WEATHER[key]
    sky_en, sky_zh = sky.split("|")
    if not search:
        if zh:
            return ("天气是实时信息，需要联网搜索，但这次请求没有开启搜索。",
                    "我需要联网搜索才能回答天气问题：请开启 enable_search（例如 "
                    "extra_body={\"enable_search\": True}）。")
        return ("The weather is live information; it needs web search, which is off.",
                "I need web search to answer questions about the weather: turn on "
                "enable_search (for example extra_body={\"enable_search\": True}).")
    label_zh, label_en = "（qwen-ci 模拟器的示例数据，不是真实天气）", (
        " (qwen-ci emulator example data, not the real weather)")
    found_zh = f"搜索结果{label_zh}：{zh_name}今天{sky_zh}，{low}°C 到 {high}°C。"
    found_en = f"The search result{label_en}: {en_name} today is {sky_en}, {low} °C to {high} °C."
    results = _weather_results(key, zh)
    if not convert:
        def finish_only(runs: Sequence[Run]) -> tuple[str, str]:
            return ("\n\n" + (found_zh if zh else found_en), found_zh if zh else found_en)
        return Plan((), finish_only, zh, results)
    code = f"celsius = [{low}, {high}]\n[round(c * 9 / 5 + 32, 1) for c in celsius]"

    before = (f"{found_zh}用户还要摄氏转华氏：°F = °C × 9/5 + 32，我用代码算。" if zh else
              f"{found_en} The user also wants Fahrenheit: °F = °C × 9/5 + 32; I will compute it.")

    def answer(value: str) -> tuple[str, str] | None:
        try:
            f_low, f_high = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            return None
        if zh:
            return (f"\n\n换算结果是 {f_low}°F 和 {f_high}°F。",
                    f"{found_zh}\n\n换算成华氏：{low}°C = {f_low}°F，{high}°C = {f_high}°F"
                    "（°F = °C × 9/5 + 32）。")
        return (f"\n\nThat is {f_low} °F and {f_high} °F.",
                f"{found_en}\n\nIn Fahrenheit: {low} °C = {f_low} °F, {high} °C = {f_high} °F "
                "(°F = °C × 9/5 + 32).")

    return _one_run(before, code, answer, zh, results)


# ---------------------------------------------------------------------- ReAct agents

_REACT_TOOL = re.compile(
    r"> Tool Name: (?P<name>\S+)\nTool Description: (?P<description>.*?)\n"
    r"Tool Args: (?P<args>\{.*?\})\n",
    re.DOTALL,
)
_ACTION = re.compile(r"Action:\s*(?P<tool>\S+)\s*\nAction Input:\s*(?P<input>\{.*\})", re.DOTALL)
_CONVERSION = re.compile(
    rf"how many (?:euros?|eur) (?:are|is|do i get for|for)\s+(?P<amount>{NUM})\s*"
    r"(?P<currency>[A-Za-z]{3})\b",
    re.IGNORECASE,
)
_ANSWERED = (
    "Thought: I can answer without using any more tools. I'll use the user's language to answer"
)
_CANNOT = "Thought: I cannot answer the question with the provided tools."


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    description: str
    args: tuple[str, ...]


def _react_tools(system: str) -> list[_Tool]:
    tools = []
    for match in _REACT_TOOL.finditer(system):
        try:
            schema = json.loads(match["args"])
        except ValueError:
            continue
        args = tuple(schema.get("properties", {})) if isinstance(schema, dict) else ()
        tools.append(_Tool(match["name"], match["description"], args))
    return tools


def _react_plan(turn: Turn) -> Plan | tuple[str, str] | None:
    """A LlamaIndex ReAct prompt: call a currency-rate tool, compute with code, answer."""
    system = next((m.text for m in turn.messages if m.role == "system"), "")
    if "## Tools" not in system or "> Tool Name:" not in system:
        return None
    exchange = _react_exchange(turn)
    if exchange is None:
        return None
    question, observations = exchange
    conversion = _CONVERSION.search(question)
    rate_tool = next((t for t in _react_tools(system)
                      if len(t.args) == 1 and "euro" in t.description.lower()), None)
    understood = conversion is not None and only_filler(
        question[: conversion.start()] + question[conversion.end() :])
    if conversion is None or rate_tool is None or not understood:
        if (task := find_task(question)) is not None and turn.code_interpreter:
            return _react_task_plan(task)
        return (
            "The question is not one the scripted model can answer with these tools.",
            f"{_CANNOT}\nAnswer: I am the scripted model of the qwen-ci emulator; I cannot "
            "answer this question with the provided tools.",
        )
    return _conversion_plan(conversion["amount"], conversion["currency"].upper(), rate_tool,
                            observations, turn.code_interpreter)


def _react_exchange(turn: Turn) -> tuple[str, list[str]] | None:
    """The user's last question and the tool observations that followed it."""
    history = [m for m in turn.messages if m.role != "system"]
    asks = [i for i, m in enumerate(history)
            if m.role == "user" and not m.text.startswith("Observation:")]
    if not asks:
        return None
    steps = history[asks[-1] + 1 :]
    observations = [m.text.removeprefix("Observation:").strip() for m in steps
                    if m.role == "user" and m.text.startswith("Observation:")]
    return history[asks[-1]].text, observations


def _conversion_plan(amount: str, currency: str, rate_tool: _Tool, observations: list[str],
                     code_interpreter: bool) -> Plan | tuple[str, str]:
    """Ask the rate tool, then compute the conversion with code and answer."""
    if not observations:
        action = json.dumps({rate_tool.args[0]: currency})
        return (
            f"The user wants {amount} {currency} in euros. I need today's rate: the "
            f"{rate_tool.name} tool gives the price of one unit of a currency in euros.",
            f"Thought: The current language of the user is: English. I need to use a tool to "
            f"help me answer the question.\nAction: {rate_tool.name}\nAction Input: {action}",
        )
    rate = re.fullmatch(NUM, observations[-1])
    if rate is None or not code_interpreter:
        return (
            f"The tool did not give a rate for {currency} ({observations[-1]!r}).",
            f"{_CANNOT}\nAnswer: {rate_tool.name} returned no rate for {currency} "
            f"({observations[-1]}), so I cannot convert {amount} {currency}.",
        )
    code = f"round({amount} * {rate[0]}, 2)"
    before = (f"The rate is {rate[0]} euros per {currency}. I will compute {amount} × "
              f"{rate[0]} with Python.")
    return _one_run(before, code, lambda value: (
        f"\n\nThe code returned {value}.",
        f"{_ANSWERED}\nAnswer: {amount} {currency} is {value} EUR ({amount} × {rate[0]}, "
        f"the rate {rate_tool.name} returned).",
    ), False)


def _react_task_plan(task: Task) -> Plan:
    plan = _single_plan(task, False)

    def finish(runs: Sequence[Run]) -> tuple[str, str]:
        thinking, answer = plan.finish(runs)
        return thinking, f"{_ANSWERED}\nAnswer: {answer}"

    return Plan(plan.steps, finish, False)


# ---------------------------------------------------------------------- plain answers

_CAPABILITIES_EN = (
    "It runs Python for powers, factorials, Fibonacci numbers, prime counts, sums and "
    "averages (of lists or ranges, also sums of squares), arithmetic expressions, two-step "
    "requests, follow-ups on the previous answer (\"Now divide that by 4.\") and fenced "
    "Python code blocks."
)
_CAPABILITIES_ZH = (
    "我能运行 Python 计算乘方、阶乘、斐波那契数、质数个数、求和与平均值（列表或区间，"
    "也包括平方和）、算式、两步计算、对上一个结果的追问（“再除以4”），以及用 ``` 围起来的 "
    "Python 代码。"
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
        return ("这个问题我没有完全理解，不能可靠地用代码计算，我如实说明。",
                "我是 qwen-ci 模拟器的脚本模型（不是语言模型），没有完全理解这个问题，"
                "所以不作回答。" + _CAPABILITIES_ZH)
    return (
        "I do not fully understand this message, so I will not guess an answer.",
        "I am the scripted model of the qwen-ci emulator (not a language model) and do not "
        "fully understand this request, so I will not guess an answer. " + _CAPABILITIES_EN,
    )


def plan_turn(turn: Turn) -> Plan | tuple[str, str]:
    """The plan for a round, or ``(thinking, answer)`` for an answer without code."""
    prompt = turn.prompt
    zh = is_chinese(prompt)
    if (react := _react_plan(turn)) is not None:
        return react
    if (context := _CONTEXT_QA.search(prompt)) is not None and turn.code_interpreter:
        return _context_plan(context["context"], context["query"], zh)
    if (turn.code_interpreter and _asks_monthly(prompt)
            and (system := _system_context(turn)) is not None):
        return _context_plan(system, prompt, zh)  # a context chat engine's system prompt
    search = turn.options.get("enable_search") is True
    if (weather := _weather_plan(prompt, search, zh)) is not None:
        return weather
    two = find_two_steps(prompt)
    if two is not None and turn.code_interpreter:
        return _two_step_plan(two[0], two[1], zh)
    task = find_task(prompt)
    if task is None and (follow := find_follow_up(prompt)) is not None:
        return _follow_up_plan(turn, follow, zh)
    if task is None or not turn.code_interpreter:
        return _plain(prompt, zh, turn.code_interpreter, task)
    number_only = any(m.role == "system" and _NUMBER_ONLY.search(m.text) for m in turn.messages)
    return _single_plan(task, zh, number_only)


def plan_for(prompt: str, code_interpreter: bool = True) -> Plan | tuple[str, str]:
    """The plan for a single user ``prompt``, or ``(thinking, answer)`` for a plain answer."""
    return plan_turn(Turn("", (Message("user", prompt),), code_interpreter=code_interpreter))


class ScriptedModel:
    """The deterministic default model of the emulator (not a language model).

    Example:
        >>> from qwen_ci_server.emulator import ScriptedModel
        >>> from qwen_ci_server.emulator.model import Message, Turn
        >>> turn = Turn("qwen3-max", (Message("user", "What is 123 to the power of 21?"),))
        >>> ScriptedModel().pieces(turn)[-1]
        RunCode(code='123**21', memo=None)
    """

    name = "scripted"

    def pieces(self, turn: Turn) -> list[Piece]:
        """The pieces of one round, computed synchronously."""
        plan = plan_turn(turn)
        if isinstance(plan, tuple):
            thinking, answer = plan
            return [Thinking(thinking), Answer(answer)]
        runs = turn.runs
        first: list[Piece] = [SearchResults(plan.search)] if plan.search and not runs else []
        if runs and not runs[-1].result.ok:
            thinking, answer = plan.finish(runs)
            return [*first, Thinking(thinking), Answer(answer)]
        if len(runs) < len(plan.steps):
            step = plan.steps[len(runs)]
            return [*first, Thinking(step.thinking(runs)), RunCode(step.code(runs))]
        thinking, answer = plan.finish(runs)
        return [*first, Thinking(thinking.lstrip("\n") if not runs else thinking), Answer(answer)]

    async def turn(self, turn: Turn) -> AsyncIterator[Piece]:
        """Stream the round's pieces."""
        for piece in self.pieces(turn):
            yield piece
