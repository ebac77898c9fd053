"""Native streams for the tracing tests of both frameworks: several multi-line runs,
non-ASCII code, and a run whose code is completed after it started."""

from __future__ import annotations

from tests.replay import native_stream

CODES = [
    "import math\nrows = [math.comb(10, k) for k in range(11)]\nprint(sum(rows))",
    "名字 = '世界'\nfor i in range(2):\n    print(f'你好, {名字} #{i}')",
    "total = 0\nfor n in range(5):\n    total += n ** 2\nprint(total)  # Σ n²",
]
THINKING = "Plan: three steps.Rows sum to 1024.Greeted twice.Total is 30."
ANSWER = "1024, two greetings, 30."

THREE_RUNS = native_stream([
    {"reasoning": "Plan: "},
    {"reasoning": "three steps."},
    {"tool_info": [""]},
    {"tool_info": [CODES[0]]},
    {"reasoning": "Rows sum to 1024.", "tool_info": [CODES[0]], "input_tokens": 180},
    {"tool_info": [CODES[0], ""]},
    {"tool_info": CODES[:2]},
    {"reasoning": "Greeted twice.", "tool_info": CODES[:2], "input_tokens": 220},
    {"tool_info": CODES},
    {"reasoning": "Total is 30.", "tool_info": CODES, "input_tokens": 260},
    {"content": "1024, two greetings, ", "tool_info": CODES},
    {"content": "30.", "tool_info": CODES},
    {"finish": "stop", "tool_info": CODES},
])
"""Three runs, each announced, then final when the thinking resumes."""

PARTIAL = "import math"
FINAL = "import math\nprint(math.pi)"
CHANGED = native_stream([
    {"reasoning": "Pi."},
    {"tool_info": [PARTIAL]},
    {"tool_info": [FINAL]},
    {"reasoning": "Done.", "tool_info": [FINAL]},
    {"content": "3.14", "tool_info": [FINAL]},
    {"finish": "stop", "tool_info": [FINAL]},
])
"""One run whose code grows after it started (the final code wins)."""
