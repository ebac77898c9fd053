"""Settings of one emulator: plain data with no server dependency, so that the command
line and :class:`~qwen_ci_server.emulator.Emulator` read their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qwen_ci_server.emulator.engine import MAX_RUNS
from qwen_ci_server.emulator.model import Model
from qwen_ci_server.emulator.validation import MAX_BODY_BYTES
from qwen_ci_server.sandbox.isolation import IsolationChoice
from qwen_ci_server.sandbox.limits import POOL_SIZE, Limits

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a request's headers (both servers)."""
MAX_CONNECTIONS = 512
"""Open connections at most (both servers)."""
BODY_TIMEOUT = 30.0
"""Seconds a client has to send its whole body (both servers)."""


@dataclass
class EmulatorConfig:
    """Settings of one emulator instance.

    Example:
        >>> from qwen_ci_server.emulator import EmulatorConfig
        >>> EmulatorConfig(api_key="sk-test", pool_size=1).pool_size
        1
    """

    api_key: str | None = field(default=None, repr=False)
    """When set, requests must send ``Authorization: Bearer <api_key>``."""
    model: Model | None = None
    """The model; default: the scripted model, or the ``script`` scenarios."""
    script: str | Path | None = None
    """A YAML/JSON scenario file (see :mod:`qwen_ci_server.emulator.script`)."""
    pool_size: int = POOL_SIZE
    """Warm sandbox kernels."""
    limits: Limits = field(default_factory=Limits)
    isolation: IsolationChoice = "auto"
    frame_delay: float = 0.0
    """Seconds between frames (0: as fast as possible)."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Largest request body accepted; larger ones get a 400."""
    max_runs: int = MAX_RUNS
    """Code runs per request at most."""
    extra_models: tuple[str, ...] = ()
    """Model names accepted besides the service's table (self-hosted mode)."""
    faults: bool = True
    """Honour the ``X-Emulator-Fault`` header (off in self-hosted mode)."""
    fail_closed: bool = True
    """Refuse to start without working bubblewrap unless ``isolation='none'``."""
    header_timeout: float = HEADER_TIMEOUT
    """Seconds a connection has to send a request's headers; then it is closed."""
    max_connections: int = MAX_CONNECTIONS
    """Open connections at most; a new one beyond gets 503 and is closed."""
    body_timeout: float = BODY_TIMEOUT
    """Seconds a client has to send its whole body; then 408."""
    front_door: bool = True
    """Put the servers' shared front door in front of the app (key before body, body
    limits and timeout, JSON value bound, concurrency, deadline); off when the app is
    wrapped in one already (``qwen-ci serve``)."""

    def build_model(self) -> Model:
        """The model this configuration asks for."""
        if self.model is not None:
            return self.model
        if self.script is not None:
            from qwen_ci_server.emulator.script import load_script

            return load_script(self.script)
        from qwen_ci_server.emulator.scripted import ScriptedModel

        return ScriptedModel()
