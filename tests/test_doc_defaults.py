"""The defaults the docs state are the ones the code has: the command line reads every
default from the settings dataclasses, and the docs' tables are checked against it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from qwen_ci.cli import _parser
from qwen_ci_server.emulator import EmulatorConfig
from qwen_ci_server.emulator.engine import MAX_RUNS
from qwen_ci_server.sandbox.limits import POOL_SIZE
from qwen_ci_server.selfhost import ServeConfig, UpstreamConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def defaults(command: str) -> dict[str, object]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt: action.default for action in sub.choices[command]._actions
            for opt in action.option_strings}


def normalize(text: str) -> str:
    text = text.strip().strip("`").removesuffix(" s")
    return {"off": "False"}.get(text, text)


def same(documented: str, actual: object) -> bool:
    documented = normalize(documented)
    if isinstance(actual, bool):
        return documented == str(actual)
    if isinstance(actual, int | float):
        return float(documented) == float(actual)
    return documented == str(actual)


def test_the_selfhost_table_states_the_real_defaults() -> None:
    actual = defaults("serve")
    rows = re.findall(r"^\| (`--[^|]+) \| ([^|]+) \|", (DOCS / "selfhost.md").read_text("utf-8"),
                      flags=re.M)
    checked = 0
    for options, values in rows:
        names = re.findall(r"`(--[\w-]+)", options)
        if values.strip().startswith("none"):
            continue
        parts = [v for v in values.split(",")]
        assert len(parts) == len(names), (options, values)
        for name, value in zip(names, parts, strict=True):
            assert same(value, actual[name]), f"{name}: docs say {value!r}, code {actual[name]!r}"
            checked += 1
    assert checked >= 18


@pytest.mark.parametrize(("option", "value"), re.findall(
    r"`(--[\w-]+)` \((?:[^()]*?, )?([\d.]+)\)",
    (DOCS / "emulator.md").read_text("utf-8").split("### From Python")[0]))
def test_the_emulator_options_state_the_real_defaults(option: str, value: str) -> None:
    assert same(value, defaults("emulator")[option]), option


def test_one_definition_of_each_server_default() -> None:
    upstream = UpstreamConfig("http://127.0.0.1/v1", "m")
    serve, emulator = ServeConfig(upstream), EmulatorConfig()
    assert serve.pool_size == emulator.pool_size == POOL_SIZE
    assert serve.max_rounds == emulator.max_runs == MAX_RUNS
    assert (serve.header_timeout, serve.max_connections) == (
        emulator.header_timeout, emulator.max_connections)
    assert defaults("serve")["--upstream-max-retries"] == upstream.max_retries == 0


@pytest.mark.parametrize("settings", [
    {"max_concurrency": 0}, {"max_rounds": 0}, {"max_queue": -1}, {"pool_size": -1},
    {"request_timeout": 0}, {"max_body_bytes": 0}, {"max_buffered_bytes": 1},
    {"max_connections": 4},
])
def test_a_programmatic_serve_config_is_checked_like_the_command_line(
    settings: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        ServeConfig(UpstreamConfig("http://127.0.0.1/v1", "m"), **settings)
