"""The one retry policy: which failures are retried, how long to wait, ``Retry-After``.

Used by the client (:mod:`qwen_ci.client`) and by ``qwen-ci serve`` towards its upstream
(:mod:`qwen_ci_server.selfhost.upstream`). Retries happen only before the first byte of output:
a retry after output started would bill twice and run the code twice. The callers own
that rule; this module decides the delays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: HTTP statuses worth another attempt: rate limits and transient server errors
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's ``Retry-After`` wins, capped.

    Example:
        >>> policy = RetryPolicy(max_retries=2, backoff=0.5, max_backoff=8.0)
        >>> policy.delay(0, retry_after=3.0)
        3.0
        >>> policy.delay(0, retry_after=600.0)  # capped
        60.0
        >>> 0.25 <= policy.delay(0) <= 0.5
        True
        >>> policy.delay(2) is None  # out of attempts
        True
    """

    max_retries: int = 2
    """Attempts after the first one."""
    backoff: float = 0.5
    """Seconds before the first retry; doubles with each attempt."""
    max_backoff: float = 8.0
    """Cap of the computed backoff."""
    max_retry_after: float = 60.0
    """Cap of a server-requested wait (``Retry-After``)."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        base: float = min(self.backoff * (2**attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``Retry-After`` in
    seconds or as an HTTP date; None when absent or unreadable.

    ``headers`` must look keys up case-insensitively (``httpx.Headers`` does) or hold
    lower-case keys.

    Example:
        >>> retry_after({"retry-after-ms": "1500"})
        1.5
        >>> retry_after({"retry-after": "2"})
        2.0
        >>> retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"},
        ...             now=1445412480.0)
        10.0
        >>> retry_after({"retry-after": "soon"}) is None
        True
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
