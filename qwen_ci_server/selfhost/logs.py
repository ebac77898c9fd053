"""Structured logs of the self-hosted server: JSON lines, no prompts and no keys.

Every log call of the server passes its data as ``extra={"fields": {...}}``; the JSON
formatter writes them as top-level keys. Per-request counters (upstream rounds, code runs,
tokens) are collected in a :class:`RequestStats` bound to the request's context and
written once, in the request's access line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Literal

LogFormat = Literal["json", "text"]

_CURRENT: ContextVar[RequestStats | None] = ContextVar("qwen_ci_selfhost_stats", default=None)


@dataclass
class RequestStats:
    """What the model driver did for one request (no content, only counts).

    Example:
        >>> stats = RequestStats()
        >>> stats.rounds += 1
        >>> stats.fields()["upstream_rounds"]
        1
    """

    rounds: int = 0
    runs: int = 0
    upstream_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        """The counters as log fields."""
        data = asdict(self)
        return {
            "upstream_rounds": data["rounds"],
            "code_runs": data["runs"],
            "upstream_ms": round(data["upstream_ms"], 1),
            "input_tokens": data["input_tokens"],
            "output_tokens": data["output_tokens"],
            "error": data["error"],
        }


def current_stats() -> RequestStats | None:
    """The stats of the request being served (None outside a request)."""
    return _CURRENT.get()


def bind_stats(stats: RequestStats | None) -> Any:
    """Make ``stats`` the current request's; returns a token for :func:`unbind_stats`."""
    return _CURRENT.set(stats)


def unbind_stats(token: Any) -> None:
    """Undo :func:`bind_stats`."""
    _CURRENT.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields.

    Example:
        >>> record = logging.LogRecord("qwen_ci", logging.INFO, "", 0, "request", None, None)
        >>> record.fields = {"status": 200}
        >>> json.loads(JsonFormatter().format(record))["status"]
        200
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` for people reading a terminal.

    Example:
        >>> record = logging.LogRecord("qwen_ci", logging.INFO, "", 0, "request", None, None)
        >>> record.fields = {"status": 200}
        >>> TextFormatter().format(record)
        'INFO qwen_ci: request status=200'
    """

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            text += "".join(f" {key}={value}" for key, value in fields.items()
                            if value is not None)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str = "info", fmt: LogFormat = "json") -> None:
    """Send every log record to stderr in ``fmt``; HTTP client chatter only on warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
