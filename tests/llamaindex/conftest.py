"""Fixtures of the LlamaIndex tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core.instrumentation import get_dispatcher

from tests.llamaindex.common import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A :class:`Recorder` on the root dispatcher for the duration of a test."""
    handler = Recorder(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)
