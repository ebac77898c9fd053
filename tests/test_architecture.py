"""The layout's rules, checked so that a later change cannot break them silently.

- The client (``qwen_ci``) and the adapters never import the servers (``qwen_ci_server``),
  except the ``qwen-ci`` command, which loads the server commands inside a function.
- The servers import only the client modules named in ``qwen_ci_server.CLIENT_MODULES``,
  never the client's wire facts (``qwen_ci.config``): the emulator is an independent
  oracle of the service.
- The contracts in pyproject's ``[tool.importlinter]``, run with import-linter itself.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_ci_server import CLIENT_MODULES

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PACKAGES = ("qwen_ci", "langchain_qwen_ci", "llamaindex_qwen_ci")


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in ``path``; a
    ``from package import name`` counts as importing ``package.name`` when that is a
    module, else ``package``."""
    tree = ast.parse(path.read_text("utf-8"))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                module = candidate if _is_module(candidate) else node.module
                yield module, node.lineno, id(node) in top


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_client_and_the_adapters_never_import_the_servers() -> None:
    found = []
    for package in CLIENT_PACKAGES:
        for path in sources(package):
            for module, line, top_level in imports(path):
                if not module.startswith("qwen_ci_server"):
                    continue
                allowed = path == ROOT / "qwen_ci" / "cli.py" and not top_level
                if not allowed:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not found, found


def test_the_servers_import_only_the_named_client_modules() -> None:
    used: dict[str, list[str]] = {}
    for path in sources("qwen_ci_server"):
        for module, line, _ in imports(path):
            if module == "qwen_ci" or module.startswith("qwen_ci."):
                used.setdefault(module, []).append(f"{path.relative_to(ROOT)}:{line}")
    outside = {m: where for m, where in used.items() if m not in CLIENT_MODULES}
    assert not outside, f"the servers import client modules outside CLIENT_MODULES: {outside}"
    assert "qwen_ci.config" not in used
    # the list is not wider than what is used: each named module is really imported
    assert set(used) == set(CLIENT_MODULES), sorted(used)


def test_the_check_finds_a_forbidden_import(tmp_path: Path) -> None:
    """The AST check above is not vacuous: it sees an import inside a function too."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from qwen_ci_server.emulator import Emulator\n"
                     "import qwen_ci.config\n")
    assert [(m, top) for m, _, top in imports(probe)] == [
        ("qwen_ci.config", True), ("qwen_ci_server.emulator", False)]


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]' brings it)")
    return found


def test_the_import_linter_contracts_hold() -> None:
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in done.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    """The contracts are not vacuous: a copy of the tree in which the core imports the
    emulator breaks the first one."""
    copy = tmp_path / "tree"
    for name in (*CLIENT_PACKAGES, "qwen_ci_server"):
        shutil.copytree(ROOT / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    events = copy / "qwen_ci" / "events.py"
    events.write_text(events.read_text("utf-8") + "\nimport qwen_ci_server.emulator.wire\n")
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=copy, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)})
    assert done.returncode == 1, done.stdout[-2000:]
    assert "The client and the adapters never import the servers BROKEN" in done.stdout
