"""Shared fixtures: a replay server on 127.0.0.1 and the recorded traffic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.replay import RECORDED, ReplayServer


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    """A fresh replay server per test; ``server.requests`` records what it received."""
    with ReplayServer() as srv:
        yield srv


@pytest.fixture
def recorded() -> None:
    """Skip (with the reason) when ../shared/fixtures/recorded is not beside the repo."""
    if not RECORDED.is_dir():
        pytest.skip(f"recorded traffic not found at {RECORDED} (../shared is absent)")


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a real key or endpoint from the environment."""
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_BASE_URL", raising=False)
