"""The Python snippets of the README and of the pages it sends LangChain users to
(docs/langchain.md, docs/protocols.md, docs/tracing.md) run against a replay server: each
page in order, in a namespace of its own, as a reader pastes that page. The README's links
stay inside the repository (or are public URLs).

tests/test_doc_claims.py runs the same snippets against the emulator and checks what
their text claims; these check the mechanics with fixed streams.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fc_server import FunctionCallingServer
from tests.langchain.test_chat_model import TWO_RUNS
from tests.replay import ReplayServer, Reply

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ANSWER = "x is 1024; x//4 is 256."

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)


def snippets(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), flags=re.S)


def run_page(path: Path) -> None:
    namespace: dict[str, object] = {"__name__": path.stem}
    for index, code in enumerate(snippets(path)):
        exec(compile(code, f"{path.name} snippet {index + 1}", "exec"), namespace)


@pytest.fixture
def replay(server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> ReplayServer:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    server.default = Reply(TWO_RUNS)
    return server


def test_readme_snippets_run(replay: ReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(snippets(README)) == 2  # the opening screen: one LangChain, one LlamaIndex
    run_page(README)
    out = capsys.readouterr().out
    assert out.count(ANSWER) == 2 and "block_type='thinking'" in out
    assert len(replay.requests) == 2


def test_langchain_page_snippets_run(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with FunctionCallingServer() as agent_model:  # the agent recipe's tool-calling model
        monkeypatch.setenv("OPENAI_BASE_URL", agent_model.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-agent")
        run_page(DOCS / "langchain.md")
    out = capsys.readouterr().out
    assert out.count(ANSWER) >= 4  # invoke, stream, chain, fallbacks (and the agent's tool)
    assert "[code]\nx = 2**10" in out and "1234.5 USD is " in out
    # refusals, profile and token counts, loads: what the page's comments say
    assert "Value error, temperature=2.5 is out of range" in out
    assert "with_structured_output(...) is not available\n" in out
    assert "258048 False\n2 17\n" in out and "ChatQwenCodeInterpreter 0.2\n" in out
    assert len(replay.requests) >= 5


def test_protocols_page_snippets_run(replay: ReplayServer,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_page(DOCS / "protocols.md")
    out = capsys.readouterr().out
    assert "CodeRun(index=0, code='x = 2**10')" in out and "'code_interpreter': {'count': 2}" in out
    assert len(replay.requests) == 3  # web search, then the core's stream and collect


def test_tracing_page_snippets_run(replay: ReplayServer,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_page(DOCS / "tracing.md")
    out = capsys.readouterr().out
    assert "running: x = 2**10" in out and "running: print(x // 4)" in out
    assert "done: print(x // 4)" in out
    assert "run 0: x = 2**10" in out and "run 1: print(x // 4)" in out
    assert len(replay.requests) == 2


LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>")


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))],
                         ids=lambda p: p.name)
def test_links_stay_in_the_repository(page: Path) -> None:
    """Relative links name files that exist (and their anchors headings); absolute links
    are public URLs, never this project's own pages (which would not be the checkout)."""
    text = page.read_text("utf-8")
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if target.startswith(("http://127.0.0.1", "http://localhost")):
            continue
        if target.startswith(("http://", "https://")):
            assert "github.com/qwen-code-interpreter" not in target, (page.name, target)
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists() and file.is_relative_to(ROOT), (page.name, target)
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), (page.name, target)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text("utf-8"), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found
