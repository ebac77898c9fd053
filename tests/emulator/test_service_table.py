"""The emulator's table of what the service accepts against the client's own model table.

The two are written separately from the sources; a disagreement is a bug in one of them.
"""

from __future__ import annotations

import pytest

from qwen_ci import config
from qwen_ci_server.emulator.service import RESPONSES_ONLY, SERVED
from qwen_ci_server.emulator.validation import known_model, parse_native


@pytest.mark.parametrize("model", sorted(config.MODELS))
def test_every_model_the_client_lists_is_served_alike(model: str) -> None:
    assert model in SERVED, f"the client lists {model}, the service table does not"
    client, service = config.MODELS[model], SERVED[model]
    assert client.endpoint == service.endpoint
    assert client.code_interpreter == service.code_interpreter
    assert client.max_thinking_tokens == service.max_thinking_tokens


@pytest.mark.parametrize("model", sorted(SERVED))
def test_the_client_routes_every_served_model_as_the_service_does(model: str) -> None:
    info = config.model_info(model)
    assert info.endpoint == SERVED[model].endpoint, f"{model}: wrong native endpoint"
    assert info.code_interpreter == SERVED[model].code_interpreter, model
    if SERVED[model].interpreter_apis == RESPONSES_ONLY and SERVED[model].code_interpreter:
        assert info.protocols == ("responses",), f"{model}: the service has it on Responses only"


def test_the_services_models_need_thinking_for_the_interpreter() -> None:
    for name, entry in SERVED.items():
        if entry.code_interpreter:
            assert entry.thinking == "hybrid", name
            assert entry.incremental_default, name  # the interpreter's models stream deltas


def test_typos_are_not_models() -> None:
    assert known_model("qwen3-max-preview")
    for typo in ("qwen3-max-preveiw", "qwen3-max-", "qwen3.5-plus-2099-01-01", "QWEN3-MAX"):
        assert not known_model(typo)


def test_a_self_hosted_upstream_model_gets_the_interpreter_even_with_a_service_name() -> None:
    body = {"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": "hi"}]},
            "parameters": {"enable_code_interpreter": True, "enable_thinking": True,
                           "incremental_output": True}}
    parsed = parse_native(body, "text", stream=True, extra_models=("qwen-plus",))
    assert parsed.generation.code_interpreter and parsed.generation.thinking


def test_the_client_calls_the_paths_the_emulator_serves() -> None:
    """The emulator keeps its own copy of the service's paths; the two must agree."""
    from qwen_ci_server.emulator import service

    assert config.NATIVE_PATHS == service.NATIVE_PATHS
    assert (config.RESPONSES_PATH, config.LEGACY_RESPONSES_PATH) == (
        service.RESPONSES_PATH, service.LEGACY_RESPONSES_PATH)
    assert config.COMPATIBLE_PATH == service.COMPATIBLE_PATH
    assert (config.API_KEY_ENV, config.BASE_URL_ENV) == (service.API_KEY_ENV,
                                                          service.BASE_URL_ENV)


def test_the_emulator_routes_are_its_own_paths() -> None:
    from qwen_ci_server.emulator import EmulatorConfig, create_app, service

    app = create_app(EmulatorConfig(pool_size=0))
    routes = {getattr(route, "path", None) for route in app.routes}
    assert {*service.NATIVE_PATHS.values(), service.COMPATIBLE_PATH} <= routes
    assert {service.RESPONSES_PATH, service.LEGACY_RESPONSES_PATH} <= routes
    assert service.RESPONSES_PATH == "/compatible-mode/v1/responses"  # PROTOCOL.md section 6


@pytest.mark.parametrize("model", sorted(m for m, e in SERVED.items()
                                         if e.interpreter_apis == RESPONSES_ONLY))
def test_responses_only_models_refuse_the_interpreter_elsewhere(model: str) -> None:
    from qwen_ci_server.emulator.responses import parse_responses
    from qwen_ci_server.emulator.validation import parse_compatible
    from qwen_ci_server.emulator.wire import ServiceError

    native = {"model": model, "input": {"messages": [{"role": "user", "content": "hi"}]},
              "parameters": {"enable_code_interpreter": True, "enable_thinking": True}}
    compat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
              "enable_code_interpreter": True, "enable_thinking": True}
    with pytest.raises(ServiceError, match="only through the Responses API"):
        parse_native(native, SERVED[model].endpoint, stream=True)
    with pytest.raises(ServiceError, match="only through the Responses API"):
        parse_compatible(compat)
    responses = parse_responses({"model": model, "input": "hi", "enable_thinking": True,
                                 "tools": [{"type": "code_interpreter"}]})
    assert responses.generation.code_interpreter
