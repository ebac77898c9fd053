"""Every test named in docs/RELIABILITY.md exists, and every row names one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"


def test_every_row_names_existing_tests() -> None:
    rows = [line for line in DOC.read_text("utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| case", "| property",
                                                              "| where", "| ---"))]
    assert len(rows) >= 30
    for row in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`", row)
        assert refs, f"row without a test: {row}"
        current = None
        for path, name, short in refs:
            if path:
                current = ROOT / path
                assert current.exists(), path
            assert current is not None
            wanted = name or short
            if wanted:
                assert re.search(rf"def {wanted}\b", current.read_text("utf-8")), (
                    f"{current.name} has no test {wanted}")
