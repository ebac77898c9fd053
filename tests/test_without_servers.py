"""The client distribution works without the servers' package, as it will when the
servers ship apart (``qwen-code-interpreter-server``, see docs/packaging.md)."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys
class NoServers(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "qwen_ci_server" or name.startswith("qwen_ci_server."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoServers())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_client_and_both_adapters_import_without_the_servers() -> None:
    done = run("import qwen_ci, qwen_ci.cli, langchain_qwen_ci, llamaindex_qwen_ci\n"
               "from qwen_ci import Client, build\nprint('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_qwen_ci_offers_ask_only_and_says_what_emulator_needs() -> None:
    done = run("from qwen_ci.cli import main\nmain(['--help'])")
    assert done.returncode == 0, done.stderr
    assert "usage: qwen-ci [-h] [--version] {ask} ..." in done.stdout
    done = run("import sys\nfrom qwen_ci.cli import main\n"
               "sys.exit(main(['ask', 'hi', '--emulator']))")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--emulator needs the local emulator: No module named 'qwen_ci_server" in done.stderr


def test_the_finder_really_hides_the_servers() -> None:
    done = run("import qwen_ci_server")
    assert done.returncode == 1 and "No module named 'qwen_ci_server'" in done.stderr
