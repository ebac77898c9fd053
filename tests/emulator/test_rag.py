"""The docs' RAG question through a real LlamaIndex context chat engine, answered by the
emulator's scripted model from the context the engine put into the system prompt.

Real LlamaIndex objects (index, retriever, ``ContextChatEngine``), our real
``QwenCodeInterpreter`` and the real emulator; ``MockEmbedding`` is enough to retrieve
from an index this small (``similarity_top_k`` covers every document).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core import Document, MockEmbedding, VectorStoreIndex

from llamaindex_qwen_ci import QwenCodeInterpreter, code_runs
from qwen_ci_server.emulator import Emulator
from tests.emulator.conftest import running

pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecatedSince20",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211",
)

BUDGET = "The 2024 budget was 1,234,567 EUR, spent over 7 months."
OTHERS = ["The office moved to Hangzhou in March.", "The team has 12 engineers."]
ANSWER = "176366.71 EUR"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running(pool_size=1) as emulator:
        yield emulator


def index_of(texts: list[str]) -> VectorStoreIndex:
    documents = [Document(text=text) for text in texts]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))


def llm_for(emu: Emulator, model: str = "qwen3-max-preview") -> QwenCodeInterpreter:
    return QwenCodeInterpreter(model=model, base_url=emu.base_url, api_key="sk-local",
                               max_retries=0)


@pytest.mark.parametrize("model", ["qwen3-max-preview", "qwen3.5-plus"])  # native, Responses
def test_context_chat_engine_answers_the_docs_question_with_a_real_run(
    emu: Emulator, model: str
) -> None:
    index = index_of([BUDGET, *OTHERS])
    engine = index.as_chat_engine(chat_mode="context", llm=llm_for(emu, model),
                                  similarity_top_k=3)
    with code_runs() as runs:
        response = engine.chat("What was the average monthly spend?")
    assert ANSWER in str(response)
    assert [run.code for run in runs] == ["total = 1234567\nmonths = 7\nround(total / months, 2)"]
    # the retrieved context went to the model as the system prompt, the run is real
    assert any(BUDGET in node.get_content() for node in response.source_nodes)


def test_the_docs_snippet_shape_one_document_default_retriever(emu: Emulator) -> None:
    engine = index_of([BUDGET]).as_chat_engine(chat_mode="context", llm=llm_for(emu))
    assert ANSWER in str(engine.chat("What was the average monthly spend?"))


def test_a_system_prompt_of_the_user_does_not_get_in_the_way(emu: Emulator) -> None:
    engine = index_of([BUDGET]).as_chat_engine(
        chat_mode="context", llm=llm_for(emu), system_prompt="You are a careful analyst.")
    assert ANSWER in str(engine.chat("How much was spent per month on average?"))


def test_context_without_the_numbers_is_an_honest_refusal(emu: Emulator) -> None:
    engine = index_of(OTHERS).as_chat_engine(chat_mode="context", llm=llm_for(emu),
                                             similarity_top_k=2)
    with code_runs() as runs:
        response = str(engine.chat("What was the average monthly spend?"))
    assert runs == [] and "cannot compute the average monthly spend" in response


def test_the_monthly_question_without_any_context_is_refused(emu: Emulator) -> None:
    from llama_index.core.llms import ChatMessage

    reply = llm_for(emu).chat([ChatMessage(role="user",
                                           content="What was the average monthly spend?")])
    assert "not guess" in str(reply.message.content)


def test_other_questions_in_the_same_engine_still_compute(emu: Emulator) -> None:
    engine = index_of([BUDGET]).as_chat_engine(chat_mode="context", llm=llm_for(emu))
    assert "1024" in str(engine.chat("What is 2**10?"))
    # the follow-up reads the engine's chat history: the previous answer's number
    assert "256" in str(engine.chat("Now divide that by 4."))
