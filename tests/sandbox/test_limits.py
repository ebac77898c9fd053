"""Output capping, ANSI stripping, limits validation, results as the model reads them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_ci.errors import InvalidRequestError
from qwen_ci_server.sandbox import ExecutionResult, Limits
from qwen_ci_server.sandbox.limits import RESET_NOTICE, CappedText, cap, strip_ansi


def test_capped_text_keeps_head_and_tail_with_a_marker() -> None:
    text = CappedText(10)
    for piece in ("abc", "defgh", "ijklmnop", "qrstuvwxyz"):
        text.add(piece)
    assert text.value() == "abcde\n... [16 characters omitted] ...\nvwxyz"
    assert text.total == 26 and text.omitted == 16


@given(st.lists(st.text(max_size=30), max_size=20), st.integers(min_value=2, max_value=50))
def test_capping_in_pieces_equals_capping_at_once(pieces: list[str], limit: int) -> None:
    text = CappedText(limit)
    for piece in pieces:
        text.add(piece)
    whole = "".join(pieces)
    assert text.value() == cap(whole, limit)
    if len(whole) <= limit:
        assert text.value() == whole


def test_ansi_codes_are_stripped() -> None:
    coloured = "\x1b[31mError\x1b[0m: \x1b]8;;http://x\x07link\x1b]8;;\x07 \x1b[1;32mok\x1b[39m"
    assert strip_ansi(coloured) == "Error: link ok"
    assert strip_ansi("plain") == "plain"


@pytest.mark.parametrize(
    "kwargs", [{"timeout": 0}, {"memory": -1}, {"processes": 0}, {"output": 10},
               {"cpu": 1.5}, {"open_files": True}],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_too_few_open_files_for_the_kernel_are_refused() -> None:
    """An idle kernel holds about 60 descriptors: with 64 a traceback of the user's code
    sometimes could not be formatted ("Unexpected exception formatting exception")."""
    with pytest.raises(InvalidRequestError, match="open_files must be at least 128"):
        Limits(open_files=64)
    assert Limits(open_files=128).open_files == 128


def test_feedback_tells_the_model_everything() -> None:
    result = ExecutionResult("timeout", stdout="partial\n", error="TimeoutError: slow",
                             reset=True)
    feedback = result.feedback()
    assert "[stdout]\npartial" in feedback and "[timeout]\nTimeoutError: slow" in feedback
    assert RESET_NOTICE in feedback
    assert ExecutionResult("ok").feedback() == "(no output)"
    assert ExecutionResult("ok", stdout="1\n", result="2").output == "1\n2"
