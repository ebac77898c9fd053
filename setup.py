"""The package's long description: README.md with its relative links made absolute.

The README links to the guides under ``docs/`` relatively, which works on GitHub and in a
checkout; on PyPI a relative link is dead, so the description shipped in the metadata points
at the same files in the repository. Everything else is in ``pyproject.toml``.
"""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import setup

REPOSITORY = "https://github.com/qwen-code-interpreter/qwen-code-interpreter"
_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]+)\)")


def long_description() -> str:
    """README.md with each relative link ``](docs/x.md#y)`` pointing into the repository."""
    text = Path(__file__).with_name("README.md").read_text("utf-8")

    def absolute(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith("#"):
            return f"]({REPOSITORY}{target})"
        return f"]({REPOSITORY}/blob/main/{target})"

    return _LINK.sub(absolute, text)


setup(long_description=long_description(), long_description_content_type="text/markdown")
