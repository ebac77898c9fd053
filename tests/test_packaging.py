"""The built wheel and sdist: licence file, project URLs, classifiers, a PyPI description
whose links work outside the repository, and an sdist without the test suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", ".venvs", "build", "dist", "__pycache__", ".pytest_cache",
        ".mypy_cache", ".ruff_cache", ".benchmarks", ".hypothesis"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built from a copy of the project with setuptools' own backend."""
    work = tmp_path_factory.mktemp("pkg")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=lambda d, names: [
        n for n in names if n in SKIP or n.endswith(".egg-info")])
    out = work / "dist"
    out.mkdir()
    script = (
        "from setuptools import build_meta as b\n"
        f"w = b.build_wheel({str(out)!r})\ns = b.build_sdist({str(out)!r})\n"
        "print('BUILT', w, s)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=source,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        if "No module named 'setuptools'" in done.stderr:
            pytest.skip("setuptools is not installed in this environment")
        raise AssertionError(done.stderr[-3000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("BUILT "))
    wheel_name, sdist_name = line.split()[1:]
    return out / wheel_name, out / sdist_name


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode("utf-8"))


@pytest.mark.timeout(300)
def test_wheel_metadata_has_licence_urls_and_classifiers(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    meta = metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Repository", "Issues", "Documentation"}
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "qwen_ci/py.typed" in names and "qwen_ci_server/emulator/example_script.yaml" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)


@pytest.mark.timeout(300)
def test_pypi_description_links_work_outside_the_repository(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    meta = metadata(wheel)
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert isinstance(description, str) and "## No key: the local emulator" in description
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert links, "the description links to the guides"
    relative = [link for link in links if not link.startswith(("https://", "http://"))]
    assert relative == [], f"links that break on PyPI: {relative}"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    repository = urls["Repository"]
    assert all(link.startswith(repository) for link in links if "github.com" in link)


@pytest.mark.timeout(300)
def test_sdist_has_the_licence_and_no_test_suite(built: tuple[Path, Path]) -> None:
    _, sdist = built
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "LICENSE" in names and "README.md" in names and "pyproject.toml" in names
    assert "qwen_ci_server/emulator/scripted.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names), [
        n for n in names if n.startswith(("tests/", "benchmarks/"))][:5]
