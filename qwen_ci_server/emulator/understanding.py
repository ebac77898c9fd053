"""What the scripted model understands: one computation per prompt, or nothing.

Each recognizer matches the core of a request (``123的21次方``, ``the 30th Fibonacci
number``...). A prompt counts as understood only when everything outside that core is
filler (``What is``, ``Use code.``, ``是多少``...): a word the model does not know, or a
number it did not use, means it only half understood the prompt, and it refuses rather
than answer another question. ``What is the sum of the squares of 1 to 100?`` is the sum
of squares, never ``sum(range(1, 101))``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass

NUM = r"-?\d+(?:\.\d+)?"
INT = r"-?\d+"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_EN_FILLER = frozenset(
    (
        "what", "whats", "what's", "is", "are", "was", "were", "the", "a", "an", "of",
        "value", "values", "compute", "calculate", "calc", "evaluate", "work", "out",
        "find", "get", "tell", "me", "give", "show", "please", "can", "could", "would",
        "will", "you", "exactly", "exact", "precisely", "use", "using", "with", "code",
        "python", "python3", "py", "interpreter", "run", "it", "in", "result", "answer",
        "verify", "check", "do", "does", "equal", "equals", "how", "much", "i", "want",
        "to", "know", "need", "for", "now", "and", "by", "via", "hey", "hi", "ok", "okay",
        "so", "just", "quickly"
    )
)
_ZH_FILLER = (
    "是多少", "等于多少", "等于几", "是几", "多少", "是什么", "计算一下", "计算", "算一下",
    "算算", "请问", "请", "帮我", "帮忙", "用代码解释器", "代码解释器", "用代码", "用python",
    "运行代码", "写代码", "代码", "的值", "结果", "精确地", "精确", "一下", "求出", "求",
    "告诉我", "统计", "数一数", "等于", "是", "吗", "呢", "的", "值", "用", "来",
)


def is_chinese(text: str) -> bool:
    """True when ``text`` contains CJK characters (answer in Chinese)."""
    return bool(_CJK.search(text))


def only_filler(rest: str) -> bool:
    """True when ``rest`` (a prompt minus what was understood) adds nothing to it.

    Example:
        >>> only_filler("What is ? Use code.")
        True
        >>> only_filler("What is the sum of the squares of ?")
        False
    """
    text = rest.lower()
    for phrase in _ZH_FILLER:
        text = text.replace(phrase, " ")
    words = re.findall(r"[a-z]+(?:'[a-z]+)?|\d+|[\u3400-\u9fff\uf900-\ufaff]", text)
    return all(word in _EN_FILLER for word in words)


def _rest(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " + text[match.end() :]


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


Finder = Callable[[str], "Task | None"]


def _full(pattern: str, text: str,
          build: Callable[[re.Match[str]], Task | None]) -> Task | None:
    """``build(match)`` when ``pattern`` matches and the rest of ``text`` is filler
    (``build`` may still refuse with None)."""
    for match in re.finditer(pattern, text, re.IGNORECASE):
        if only_filler(_rest(text, match)) and (task := build(match)) is not None:
            return task
    return None


def exact_code(setup: str, value: str) -> str:
    """Python that prints ``value`` (a ``Fraction`` expression, after ``setup``) exactly:
    an integer or a terminating decimal in full, else the fraction ``p/q``.

    Example:
        >>> print(exact_code("", "Fraction(10) / 4").splitlines()[-1])
            print(x)
    """
    return (
        "from decimal import Decimal, Inexact, localcontext\n"
        "from fractions import Fraction\n"
        f"{setup}"
        f"x = {value}\n"
        "try:\n"
        "    with localcontext(prec=100_000, traps=[Inexact]):\n"
        "        print(format(Decimal(x.numerator) / x.denominator, 'f'))\n"
        "except Inexact:  # not a terminating decimal: the exact fraction\n"
        "    print(x)"
    )


def _power(base: str, exp: str) -> Task:
    return Task(f"{base}**{exp}", f"{base} to the power of {exp}", f"{base}的{exp}次方", "power")


def _find_power(text: str) -> Task | None:
    rules: tuple[tuple[str, Callable[[re.Match[str]], Task]], ...] = (
        (rf"({NUM})\s+(?:to the power of|raised to the power of|raised to|to the)\s+({NUM})"
         r"(?:st|nd|rd|th)?(?:\s+power)?", lambda m: _power(m[1], m[2])),
        (rf"({NUM})\s+(?:to the power|raised to the)\s+({NUM})", lambda m: _power(m[1], m[2])),
        (rf"(?:math\.)?pow\(\s*({NUM})\s*,\s*({NUM})\s*\)", lambda m: _power(m[1], m[2])),
        (rf"({NUM})\s*的\s*({NUM})\s*次(?:方|幂)", lambda m: _power(m[1], m[2])),
        (rf"the\s+({NUM})(?:st|nd|rd|th)\s+power\s+of\s+({NUM})", lambda m: _power(m[2], m[1])),
        (rf"({NUM})\s*的\s*平方(?!根|和)", lambda m: _power(m[1], "2")),
        (rf"({NUM})\s*的\s*立方(?!根|和)", lambda m: _power(m[1], "3")),
        (rf"(?:the\s+)?square\s+of\s+({NUM})|({NUM})\s+squared",
         lambda m: _power(m[1] or m[2], "2")),
        (rf"(?:the\s+)?cube\s+of\s+({NUM})|({NUM})\s+cubed",
         lambda m: _power(m[1] or m[2], "3")),
    )
    for pattern, build in rules:
        if task := _full(pattern, text, build):
            return task
    return None


def _factorial(n: str) -> Task:
    return Task(f"import math\nmath.factorial({n})", f"{n}!", f"{n}的阶乘", "factorial")


def _find_factorial(text: str) -> Task | None:
    for pattern in (r"(?:the\s+)?factorial\s+of\s+(\d+)", r"(\d+)\s+factorial",
                    r"(?:math\.)?factorial\s*\(\s*(\d+)\s*\)", r"(\d+)\s*(?:的)?阶乘",
                    r"(\d+)!(?!=)", r"(\d+)\s*的\s*阶乘"):
        if task := _full(pattern, text, lambda m: _factorial(m[1])):
            return task
    return None


_LIST = rf"{NUM}(?:\s*(?:,\s*and|,|、|，|\band\b|和|与|及)\s*{NUM})+"
_BRACKETED = rf"\[\s*{NUM}(?:\s*[,，]\s*{NUM})*\s*\]"
_NUMBERS = rf"(?:{_LIST}|{_BRACKETED})"
_INTEGERS = r"(?:(?:all\s+)?(?:the\s+)?(?:integers|whole numbers|numbers)\s+)?"
_RANGE_EN = rf"(?:from\s+)?({INT})\s+(?:to|through)\s+({INT})"
_RANGE_ZH = rf"(?:从)?\s*({INT})\s*(?:到|至)\s*({INT})\s*(?:的)?(?:所有)?(?:整数|自然数)?(?:的)?"


def _numbers(listed: str) -> list[str]:
    return re.findall(NUM, listed)


def _list_task(listed: str, mean: bool) -> Task:
    found = _numbers(listed)
    numbers = ", ".join(found)
    en, zh = ("the average", "平均值") if mean else ("the sum", "和")
    kind = "mean" if mean else "sum"
    describe = (f"{en} of {numbers}", f"{numbers}的{zh}")
    if not mean and all("." not in n for n in found):
        return Task(f"numbers = [{numbers}]\nsum(numbers)", *describe, kind)
    # exact: decimals as written (0.1 + 0.2 is 0.3), an average as a fraction if need be
    exact = ", ".join(f'Fraction("{n}")' for n in found)
    value = "sum(numbers) / len(numbers)" if mean else "sum(numbers)"
    return Task(exact_code(f"numbers = [{exact}]\n", value), *describe, kind)


def _range_task(a: str, b: str, mean: bool, power: int = 1) -> Task | None:
    if int(a) > int(b):
        return None  # "from 10 to 1" is not a range the model guesses the meaning of
    if power == 1:
        code = f"numbers = range({a}, {b} + 1)\n"
        code = (exact_code(code, "Fraction(sum(numbers), len(numbers))") if mean
                else code + "sum(numbers)")
        en = f"{'the average' if mean else 'the sum'} of the integers from {a} to {b}"
        zh = f"从{a}到{b}的整数的{'平均值' if mean else '和'}"
        return Task(code, en, zh, "mean" if mean else "sum")
    word, zh_word = ("squares", "平方和") if power == 2 else ("cubes", "立方和")
    return Task(f"sum(n**{power} for n in range({a}, {b} + 1))",
                f"the sum of the {word} of the integers from {a} to {b}",
                f"从{a}到{b}的整数的{zh_word}", "sum")


def _find_aggregate(text: str) -> Task | None:
    def is_mean(m: re.Match[str]) -> bool:
        return m["op"].lower() in ("average", "mean", "平均值", "平均数", "平均")

    rules: tuple[tuple[str, Callable[[re.Match[str]], Task | None]], ...] = (
        (rf"(?:the\s+)?sum\s+of\s+(?:the\s+)?(?P<p>squares|cubes)\s+(?:of\s+)?{_INTEGERS}"
         rf"{_RANGE_EN}",
         lambda m: _range_task(m[2], m[3], False, 2 if m["p"].lower() == "squares" else 3)),
        (r"(?:the\s+)?sum\s+of\s+the\s+first\s+(\d+)\s+(?P<p>squares|cubes|positive integers)",
         lambda m: _range_task("1", m[1], False,
                               {"squares": 2, "cubes": 3}.get(m["p"].lower(), 1))),
        (rf"{_RANGE_ZH}(?P<p>平方|立方)和",
         lambda m: _range_task(m[1], m[2], False, 2 if m["p"] == "平方" else 3)),
        (rf"(?:the\s+)?(?P<op>sum|total|average|mean)\s+(?:of\s+)?{_INTEGERS}{_RANGE_EN}",
         lambda m: _range_task(m[2], m[3], is_mean(m))),
        (rf"{_RANGE_ZH}(?P<op>和|总和|之和|平均值|平均数)",
         lambda m: _range_task(m[1], m[2], is_mean(m))),
        (rf"(?:add up|add)\s+(?:all\s+)?(?:the\s+)?(?:integers|numbers)\s+{_RANGE_EN}",
         lambda m: _range_task(m[1], m[2], False)),
        (rf"({INT})\s*加到\s*({INT})", lambda m: _range_task(m[1], m[2], False)),
        (rf"(?:the\s+)?(?P<op>sum|total|average|mean)\s+(?:of\s+)?(?:the\s+numbers\s+)?"
         rf"(?P<list>{_NUMBERS})", lambda m: _list_task(m["list"], is_mean(m))),
        (rf"(?P<list>{_NUMBERS})\s*(?:的)?\s*(?P<op>和|总和|之和|平均值|平均数)",
         lambda m: _list_task(m["list"], is_mean(m))),
        (rf"(?P<list>{_NUMBERS})\s*(?:加起来|相加)", lambda m: _list_task(m["list"], False)),
        (rf"add\s+up\s+(?P<list>{_NUMBERS})", lambda m: _list_task(m["list"], False)),
        (rf"(?P<op>average|mean)\s*\(\s*(?P<list>{_NUMBERS})\s*\)",
         lambda m: _list_task(m["list"], True)),
        (rf"(?P<op>sum)\s*\(\s*(?P<list>{_BRACKETED})\s*\)",
         lambda m: _list_task(m["list"], False)),
        (rf"(?:求)?(?P<list>{_NUMBERS})\s*的\s*(?P<op>平均)",
         lambda m: _list_task(m["list"], True)),
    )
    for pattern, build in rules:
        if task := _full(pattern, text, build):
            return task
    return None


def _ordinal(n: str) -> str:
    value = int(n)
    suffix = "th" if 10 <= value % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{n}{suffix}"


def _fibonacci(n: str) -> Task:
    return Task(
        f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, a + b\na",
        f"the {_ordinal(n)} Fibonacci number (counting F(1) = F(2) = 1)",
        f"第{n}个斐波那契数（F(1) = F(2) = 1）",
        "fibonacci",
    )


def _find_fibonacci(text: str) -> Task | None:
    for pattern in (r"(?:the\s+)?(\d+)(?:st|nd|rd|th)\s+fibonacci\s+number",
                    r"fibonacci\s+number\s+(?:number\s+)?(\d+)",
                    r"fib(?:onacci)?\s*\(\s*(\d+)\s*\)",
                    r"(?:the\s+)?fibonacci\s+(?:number\s+)?(?:of|for)\s+(\d+)",
                    r"斐波那契(?:数列|数)?\s*\(\s*(\d+)\s*\)",
                    r"第\s*(\d+)\s*(?:个|项)\s*斐波那契数(?:列)?(?:的值)?",
                    r"斐波那契数列的?第\s*(\d+)\s*(?:个数|项)"):
        if task := _full(pattern, text, lambda m: _fibonacci(m[1])):
            return task
    return None


def _primes(limit: str, inclusive: bool) -> Task:
    bound = f"{limit} + 1" if inclusive else limit
    code = (
        f"limit = {bound}\n"
        "sieve = bytearray([1]) * limit\n"
        "sieve[:2] = b'\\x00\\x00'\n"
        "for n in range(2, int(limit ** 0.5) + 1):\n"
        "    if sieve[n]:\n"
        "        sieve[n * n::n] = bytearray(len(sieve[n * n::n]))\n"
        "sum(sieve)"
    )
    if inclusive:
        return Task(code, f"the number of primes up to {limit}",
                    f"不超过{limit}的质数的个数", "count")
    return Task(code, f"the number of primes below {limit}", f"小于{limit}的质数的个数",
                "count")


def _find_primes(text: str) -> Task | None:
    primes = r"(?:prime numbers|primes)"
    below = r"(?:below|less than|under|smaller than|lower than|<)"
    upto = r"(?:up to|not exceeding|at most|less than or equal to|<=|≤)"
    rules: tuple[tuple[str, Callable[[re.Match[str]], Task]], ...] = (
        (rf"how many {primes} (?:are there\s+)?(?:are\s+)?(?:there\s+)?{below}\s+(\d+)"
         r"(?:\s+are there)?", lambda m: _primes(m[1], False)),
        (rf"how many {primes} (?:are there\s+)?(?:are\s+)?(?:there\s+)?{upto}\s+(\d+)"
         r"(?:\s+are there)?", lambda m: _primes(m[1], True)),
        (rf"(?:the\s+)?(?:number|count) of {primes} {below}\s+(\d+)",
         lambda m: _primes(m[1], False)),
        (rf"(?:the\s+)?(?:number|count) of {primes} {upto}\s+(\d+)",
         lambda m: _primes(m[1], True)),
        (rf"count (?:all\s+)?(?:the\s+)?{primes} {below}\s+(\d+)", lambda m: _primes(m[1], False)),
        (rf"count (?:all\s+)?(?:the\s+)?{primes} {upto}\s+(\d+)", lambda m: _primes(m[1], True)),
        (r"(?:小于|低于)\s*(\d+)\s*的(?:质数|素数)(?:有)?(?:多少个|几个|的个数|个数)",
         lambda m: _primes(m[1], False)),
        (r"(?:不超过|不大于|小于等于)\s*(\d+)\s*的(?:质数|素数)(?:有)?(?:多少个|几个|的个数|个数)",
         lambda m: _primes(m[1], True)),
        (r"(\d+)\s*以内(?:的|有)?(?:多少个|几个)?(?:质数|素数)(?:有)?(?:多少个|几个|的个数)?",
         lambda m: _primes(m[1], True)),
    )
    for pattern, build in rules:
        if task := _full(pattern, text, build):
            return task
    return None


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
    best: tuple[str, str] | None = None
    for match in re.finditer(r"[\d\s.+\-*/%()]+", normalized):
        candidate = " ".join(match.group(0).split()).strip(" .")
        candidate = candidate.rstrip("+-*/% ")
        while candidate.count("(") < candidate.count(")") and candidate.endswith(")"):
            candidate = candidate[:-1].rstrip()
        while candidate.count("(") > candidate.count(")") and candidate.startswith("("):
            candidate = candidate[1:].lstrip()
        numbers = len(re.findall(r"\d+(?:\.\d+)?", candidate))
        if numbers < 2 or not _valid_expression(candidate):
            continue
        rest = normalized[: match.start()] + " " + normalized[match.end() :]
        if only_filler(rest) and (best is None or len(candidate) > len(best[0])):
            best = (candidate, rest)
    if best is None:
        return None
    return Task(best[0], best[0], best[0], "expression")


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_RUN_WORDS = frozenset(
    (
        "run", "this", "the", "following", "execute", "it", "and", "show", "me", "what",
        "output", "prints", "print", "please", "code", "python", "block", "snippet",
        "below", "above", "here", "result"
    )
)


def find_code(text: str) -> Task | None:
    """A fenced Python block the user asks to run (nothing else asked of it)."""
    match = _FENCE.search(text)
    if not match or not match.group(1).strip():
        return None
    rest = _FENCE.sub(" ", text).lower()
    for phrase in ("运行这段代码", "运行以下代码", "执行这段代码", "运行", "执行", "这段", "以下",
                   "下面的", "代码", "输出", "结果", "请", "并", "显示", "是什么", "什么"):
        rest = rest.replace(phrase, " ")
    words = re.findall(r"[a-z]+|\d+|[\u3400-\u9fff]", rest)
    if not all(word in _RUN_WORDS or word in _EN_FILLER for word in words):
        return None
    return Task(match.group(1).strip("\n"), "the given code", "给定的代码", "code")


_FINDERS: tuple[Finder, ...] = (
    _find_power, _find_factorial, _find_fibonacci, _find_primes, _find_aggregate,
    _find_expression,
)


def find_task(text: str) -> Task | None:
    """The computation asked for in ``text``, if the scripted model fully understands it.

    An arithmetic expression asked for "to N decimal places" is computed with exact
    fractions and rounded once (half away from zero); one asked for "exactly" is computed
    with exact fractions (with a division) or exact decimals: never a float.

    Example:
        >>> find_task("What is the sum of the squares of 1 to 100? Use code.").code
        'sum(n**2 for n in range(1, 100 + 1))'
        >>> find_task("What is the sum of the digits of 2**100?") is None
        True
        >>> print(find_task("What is 2**100 divided by 7, to 5 decimal places?").code)
        from fractions import Fraction
        x = Fraction(2) ** 100 / Fraction(7)
        whole, part = divmod(int(abs(x) * 10**5 + Fraction(1, 2)), 10**5)
        print(f"{'-' * (x < 0)}{whole}.{part:05d}")
    """
    if task := find_code(text):
        return task
    if "```" in text:
        return None
    places = _PLACES.search(text)
    if places is not None:
        text = text[: places.start()] + " " + text[places.end() :]
    exact = _EXACT.search(text) is not None
    for finder in _FINDERS:
        if task := finder(text):
            if places is not None:
                return _to_places(task, int(places[1] or places[2]))
            return _exactly(task) if exact else _decimals_as_written(task)
    return None


_PLACES = re.compile(
    r"[,，]?\s*(?:rounded\s+|correct\s+)?to\s+(\d{1,2})\s+decimal\s+(?:places|digits)"
    r"|[,，]?\s*(?:保留|精确到)(?:小数点后)?\s*(\d{1,2})\s*位小数",
    re.IGNORECASE,
)
_EXACT = re.compile(r"\bexact(?:ly)?\b|精确", re.IGNORECASE)


class _ToFraction(ast.NodeTransformer):
    """Numbers become ``Fraction(...)``, except integer exponents."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node.left = self.visit(node.left)
        if not (isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant)
                and type(node.right.value) is int):
            node.right = self.visit(node.right)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value if type(node.value) is int else str(node.value)
        return ast.Call(ast.Name("Fraction", ast.Load()), [ast.Constant(value)], [])


def _fraction_expression(expr: str) -> str:
    return ast.unparse(_ToFraction().visit(ast.parse(expr, mode="eval")))


def _to_places(task: Task, places: int) -> Task | None:
    """``task`` (an expression) rounded once, exactly, to ``places`` decimals."""
    if task.kind != "expression" or places < 1:
        return None
    scale = f"10**{places}"
    code = (f"from fractions import Fraction\nx = {_fraction_expression(task.code)}\n"
            f"whole, part = divmod(int(abs(x) * {scale} + Fraction(1, 2)), {scale})\n"
            f"print(f\"{{'-' * (x < 0)}}{{whole}}.{{part:0{places}d}}\")")
    return Task(code, f"{task.en}, to {places} decimal places",
                f"{task.zh}（保留{places}位小数）", "expression")


def _decimals_as_written(task: Task) -> Task:
    """An expression with decimals (``0.1 + 0.2``) computed exactly, not in binary floats:
    0.3, never 0.30000000000000004 (only ``+ - * /``; anything else is left to Python)."""
    if (task.kind != "expression" or not re.search(r"\d\.\d", task.code)
            or re.search(r"\*\*|//|%", task.code)):
        return task
    return Task(exact_code("", _fraction_expression(task.code)), task.en, task.zh, "expression")


def _exactly(task: Task) -> Task:
    """``task`` computed without floats: exact fractions with a division, exact decimals
    otherwise (a result that would need rounding is an error, not a rounded value)."""
    if task.kind != "expression" or not re.search(r"\.\d|/", task.code):
        return task
    if "/" in task.code:
        code = f"from fractions import Fraction\nprint({_fraction_expression(task.code)})"
        return Task(code, f"{task.en} (exactly, as a fraction)", f"{task.zh}（精确分数）",
                    "expression")
    decimal = _fraction_expression(task.code).replace("Fraction(", "Decimal(")
    code = ("from decimal import Decimal, Inexact, localcontext\n"
            "with localcontext(prec=1000, traps=[Inexact]):\n"
            f"    print({decimal})")
    return Task(code, f"{task.en} (exactly)", f"{task.zh}（精确值）", "expression")


# ---------------------------------------------------------------------- two steps


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

    def exact_code(self, previous: str) -> str:
        """Python printing the operation on ``previous`` exactly (fractions, never floats).

        Example:
            >>> FollowUp("/", "4", "divided by 4", "除以4").exact_code("10").splitlines()[2]
            'x = Fraction("10") / Fraction("4")'
        """
        operand = (self.operand if self.symbol == "**" and "." not in self.operand
                   else f'Fraction("{self.operand}")')
        return exact_code("", f'Fraction("{previous}") {self.symbol} {operand}')


_THAT = r"(?:(?:that|it|this|the result|the previous result|the first result|the answer)\s+)?"
_IT = r"(?:that|it|this|the result)"
_ZH_THAT = (
    r"(?:请)?(?:将|把)?(?:前者的|前者|上一步的|第一次的|第一步的|之前的|它的|这个)?"
    r"(?:结果|它)?"
)
_FOLLOW_UPS: tuple[tuple[str, str, str, str], ...] = (
    # pattern (matched in full), symbol, English, Chinese ({n} is the operand)
    (rf"divide[sd]?\s+{_THAT}by\s+({NUM})", "/", "divided by {n}", "除以{n}"),
    (rf"multipl(?:y|ied|ies)\s+{_THAT}by\s+({NUM})", "*", "multiplied by {n}", "乘以{n}"),
    (rf"add\s+({NUM})(?:\s+to\s+{_IT})?", "+", "plus {n}", "加上{n}"),
    (rf"subtract\s+({NUM})(?:\s+from\s+{_IT})?", "-", "minus {n}", "减去{n}"),
    (rf"(?:raise|take)\s+{_THAT}to the (?:power of\s+)?({NUM})(?:st|nd|rd|th)?(?:\s+power)?",
     "**", "to the power of {n}", "的{n}次方"),
    (rf"{_ZH_THAT}除以\s*({NUM})", "/", "divided by {n}", "除以{n}"),
    (rf"{_ZH_THAT}乘以\s*({NUM})", "*", "multiplied by {n}", "乘以{n}"),
    (rf"{_ZH_THAT}加上?\s*({NUM})", "+", "plus {n}", "加上{n}"),
    (rf"{_ZH_THAT}减去?\s*({NUM})", "-", "minus {n}", "减去{n}"),
    (rf"{_ZH_THAT}的?\s*({NUM})\s*次(?:方|幂)", "**", "to the power of {n}", "的{n}次方"),
)
_THEN = re.compile(
    r"^(?P<first>.+?)[,，;；.。]?\s*(?:and\s+)?(?:then|after that|afterwards|next|"
    r"second(?:ly)?|the second time)[,:]?\s+(?P<second>.+)$"
    r"|^(?P<zfirst>.+?)[,，;；。]?\s*(?:然后|之后|接着|再|第二次(?:运行)?|第二步)[，,：:]?(?P<zsecond>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_PREAMBLE = re.compile(
    r"^\s*(?:(?:please\s+)?(?:use|run|call)\s+the\s+code\s+interpreter\s+twice[:：,，.]?\s*"
    r"|(?:请)?(?:运行|使用|调用)两次代码解释器[:：,，。]?\s*)",
    re.IGNORECASE,
)
_FIRST = re.compile(
    r"^\s*(?:first(?:ly)?|the first time|at first)[,:]?\s*|^\s*(?:首先|先|第一次(?:运行)?|第一步)"
    r"[，,：:]?\s*",
    re.IGNORECASE,
)


def _find_follow_up(text: str) -> FollowUp | None:
    cleaned = text.strip().rstrip(".。!！?？ ")
    cleaned = re.sub(r"^(?:please\s+|请)", "", cleaned, flags=re.IGNORECASE)
    cleaned = re.sub(r"\s+please$", "", cleaned, flags=re.IGNORECASE)
    for pattern, symbol, en, zh in _FOLLOW_UPS:
        if match := re.fullmatch(pattern, cleaned, re.IGNORECASE):
            n = match.group(1)
            return FollowUp(symbol, n, en.format(n=n), zh.format(n=n))
    return None


def find_two_steps(text: str) -> tuple[Task, FollowUp] | None:
    """``(first task, follow-up)`` for "first compute X, then <operation>" requests.

    Example:
        >>> task, follow = find_two_steps(
        ...     "运行两次代码解释器：第一次运行请计算123的23次方的值，"
        ...     "第二次运行请将前者的结果除以5")
        >>> task.code, follow.code("x")
        ('123**23', 'x / 5')
    """
    stripped = _PREAMBLE.sub("", text.strip())
    match = _THEN.match(stripped)
    if not match:
        return None
    first = match.group("first") or match.group("zfirst") or ""
    second = match.group("second") or match.group("zsecond") or ""
    first = _FIRST.sub("", first)
    task = find_task(first)
    follow = _find_follow_up(second)
    if task is None or follow is None or task.kind == "code":
        return None
    return task, follow


# ---------------------------------------------------------------------- follow-ups

_LEAD = re.compile(
    r"^\s*(?:(?:and\s+)?(?:now|then|next)\s*[,:]?\s+|and\s+|ok(?:ay)?[,.]?\s+(?:now\s+)?)"
    r"|^\s*(?:现在|然后|接着|那么|再|好的?[，,]?)\s*(?:再)?",
    re.IGNORECASE,
)
_VALUE = rf"{NUM}(?:/\d+)?"


def find_follow_up(text: str) -> FollowUp | None:
    """An operation on "that" (the previous answer): ``Now divide that by 4.``, ``再除以4``.

    Example:
        >>> find_follow_up("Now divide that by 4.").code("x")
        'x / 4'
        >>> find_follow_up("Now divide the banana by 4.") is None
        True
    """
    return _find_follow_up(_LEAD.sub("", text.strip(), count=1))


def previous_value(answer: str) -> str | None:
    """The number an earlier answer gave: the one number on a line of its own (how the
    scripted model answers), else the only number in the text; None when it is unclear.

    Example:
        >>> previous_value("The 10th Fibonacci number is:\\n\\n55\\n")
        '55'
        >>> previous_value("3 apples and 4 pears") is None
        True
    """
    alone = {line.strip() for line in answer.splitlines()
             if re.fullmatch(_VALUE, line.strip())}
    if len(alone) == 1:
        return alone.pop()
    if alone:
        return None
    found = set(re.findall(rf"(?<![\w./]){_VALUE}(?![\w/]|\.\d)", answer))
    return found.pop() if len(found) == 1 else None
