"""langchain-tests' ChatModelIntegrationTests against the emulator (no key, no network)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_qwen_ci import ChatQwenCodeInterpreter
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import KEY


class TestEmulatorIntegration(ChatModelIntegrationTests):
    base_url: ClassVar[str] = ""

    @pytest.fixture(autouse=True)
    def _use_emulator(self, emulator: Emulator) -> None:
        type(self).base_url = emulator.base_url

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatQwenCodeInterpreter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "qwen3-max-preview", "base_url": self.base_url, "api_key": KEY}

    @property
    def model_override_value(self) -> str:
        return "qwen3-max"

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supported_usage_metadata_details(self) -> dict[Any, list[Any]]:
        return {"invoke": ["reasoning_output"], "stream": ["reasoning_output"]}

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> Any:
        model = ChatQwenCodeInterpreter(**self.chat_model_params)
        if not stream:
            return model.invoke("What is 2**10?")
        full = None
        for chunk in model.stream("What is 2**10?"):
            full = chunk if full is None else full + chunk
        return full
