"""Reasoning written inline as ``<think>...</think>`` in streamed content."""

from __future__ import annotations

from typing import Literal

Kind = Literal["thinking", "answer"]
OPEN = "<think>"
CLOSE = "</think>"


def _held_prefix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could begin one of ``tags``."""
    longest = 0
    for tag in tags:
        for size in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:size]):
                longest = size
                break
    return longest


class ThinkSplitter:
    """Separates ``<think>`` reasoning from answer text in content streamed in pieces.

    Tags may be cut anywhere between pieces: text that could begin a tag is held back
    until the next piece decides. Whitespace at the start and right after a tag is
    dropped, and a stray ``</think>`` (its ``<think>`` was in the prompt) is removed.

    Example:
        >>> splitter = ThinkSplitter()
        >>> splitter.feed("<thi") + splitter.feed("nk>6*7?</th") + splitter.feed("ink>\\n42")
        [('thinking', '6*7?'), ('answer', '42')]
        >>> splitter.close()
        []
    """

    def __init__(self) -> None:
        self.thinking = False
        self._held = ""
        self._strip = True

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        """The reasoning and answer pieces ``text`` completes, in order."""
        out: list[tuple[Kind, str]] = []
        text = self._held + text
        self._held = ""
        while text:
            tag = CLOSE if self.thinking else OPEN
            at = text.find(tag)
            stray = -1 if self.thinking else text.find(CLOSE)
            if stray >= 0 and (at < 0 or stray < at):
                self._emit(out, text[:stray])
                text = text[stray + len(CLOSE):]
                self._strip = True
                continue
            if at >= 0:
                self._emit(out, text[:at])
                text = text[at + len(tag):]
                self.thinking = not self.thinking
                self._strip = True
                continue
            keep = _held_prefix(text, (tag,) if self.thinking else (OPEN, CLOSE))
            self._emit(out, text[: len(text) - keep])
            self._held = text[len(text) - keep:]
            break
        return out

    def close(self) -> list[tuple[Kind, str]]:
        """End of the content: text held back is what it seemed to be."""
        out: list[tuple[Kind, str]] = []
        held, self._held = self._held, ""
        self._emit(out, held)
        return out

    def _emit(self, out: list[tuple[Kind, str]], text: str) -> None:
        if self._strip:
            text = text.lstrip()
            if text:
                self._strip = False
        if not text:
            return
        kind: Kind = "thinking" if self.thinking else "answer"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
