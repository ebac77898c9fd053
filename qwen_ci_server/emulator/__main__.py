"""``python -m qwen_ci_server.emulator [options]``: the same as ``qwen-ci emulator``."""

from __future__ import annotations

import sys

from qwen_ci_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
