"""Fault injection: the ``X-Emulator-Fault`` request header.

Comma-separated items:

- ``rate-limit`` / ``quota`` / ``server-error`` / ``unavailable``: answer with that error
  (429 ``Throttling.RateQuota``, 429 ``Throttling.AllocationQuota``, 500
  ``InternalError``, 503 ``ModelUnavailable``) before any output, in the protocol's
  shape;
- ``cut-after=N``: end the stream after N frames, without the final frame (native) or
  ``[DONE]`` (compatible mode);
- ``error-after=N``: after N frames send a mid-stream error (native ``event:error`` with
  ``:HTTP_STATUS/500``; compatible ``data: {"error": ...}``), then close;
- ``slow=MS``: wait MS milliseconds before every frame (at most ``MAX_SLOW_MS``).

``qwen-ci serve`` ignores the header (``EmulatorConfig.faults``): it is a test tool, and
it would let any client hold a request slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen_ci_server.emulator.wire import (
    INTERNAL_ERROR,
    MODEL_UNAVAILABLE,
    QUOTA,
    RATE_LIMIT,
    ServiceError,
    emulator_invalid,
)

HEADER = "X-Emulator-Fault"
MAX_SLOW_MS = 5000
"""The longest ``slow`` delay per frame a request may ask for."""

_BEFORE: dict[str, ServiceError] = {
    "rate-limit": RATE_LIMIT,
    "quota": QUOTA,
    "server-error": INTERNAL_ERROR,
    "unavailable": MODEL_UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults asked for by one request.

    Example:
        >>> parse_faults("slow=100, cut-after=3").cut_after
        3
    """

    before: ServiceError | None = None
    cut_after: int | None = None
    error_after: int | None = None
    slow: float = 0.0

    @property
    def any(self) -> bool:
        """True when some fault applies."""
        return bool(self.before or self.cut_after is not None or self.error_after is not None
                    or self.slow)


def _count(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise emulator_invalid(f"{HEADER}: {name} needs a non-negative integer, got {value!r}.")
    return number


def parse_faults(header: str | None) -> Faults:
    """Parse the header; an unknown fault is the emulator's 400."""
    if not header or not header.strip():
        return Faults()
    before: ServiceError | None = None
    cut_after = error_after = None
    slow = 0.0
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        name = name.strip().lower()
        value = value.strip()
        if not name:
            continue
        if name in _BEFORE and not value:
            before = _BEFORE[name]
        elif name == "cut-after":
            cut_after = _count(name, value)
        elif name == "error-after":
            error_after = _count(name, value)
        elif name == "slow":
            millis = _count(name, value)
            if millis > MAX_SLOW_MS:
                raise emulator_invalid(f"{HEADER}: slow={millis} is too slow; use at most "
                                       f"slow={MAX_SLOW_MS}.")
            slow = millis / 1000
        else:
            known = ", ".join([*_BEFORE, "cut-after=N", "error-after=N", "slow=MS"])
            raise emulator_invalid(f"unknown fault {item.strip()!r} in {HEADER}; use {known}.")
    return Faults(before, cut_after, error_after, slow)
