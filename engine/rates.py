"""A location's request budget as text (``--rate``) and as a server states it (:class:`RateHint`).

The engine names no header: each job kind reads its API's rate headers into a
:class:`RateHint`, and the limiter learns from that alone. ``--rate`` is only the starting
guess, until the server's first answer says what the budget is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["RateHint", "check_rate", "parse_rate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateHint:
    """What one response said about the location's budget (parsed by the job kind from headers)."""

    limit: int | None = None  # requests per interval the server advertises
    remaining: int | None = None  # requests left in the current window
    interval: float | None = None  # seconds
    daily_remaining: int | None = None
    retry_after: float | None = None  # seconds, from a 429


def check_rate(limit: int, interval: float) -> None:
    """Raise ValueError unless ``limit`` is at least 1 and ``interval`` (seconds) is positive
    and finite."""
    if limit < 1:
        raise ValueError(f"rate limit must be at least 1 request, got {limit}")
    if not interval > 0 or not math.isfinite(interval):
        raise ValueError(f"rate interval must be a positive number of seconds, got {interval}")


_RATE = re.compile(r"([0-9]+)\s*/\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)?\s*(ms|s|m|h)?", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``--rate`` such as ``100/10s``, ``600/1m``, ``100/500ms`` or ``100/10`` (seconds).

    Returns ``(limit, interval_seconds)``; raises ValueError naming the expected form.
    """
    match = _RATE.fullmatch(text.strip())
    if match is None or (match[2] is None and match[3] is None):
        raise ValueError(
            f"invalid rate {text!r}: expected LIMIT/INTERVAL such as 100/10s, 600/1m or "
            "100/500ms (units ms, s, m, h; seconds if none)"
        )
    limit = int(match[1])
    interval = float(match[2] or 1) * _UNIT_SECONDS[(match[3] or "s").lower()]
    if limit < 1:
        raise ValueError(f"invalid rate {text!r}: the limit must be at least 1 request")
    if not interval > 0:
        raise ValueError(f"invalid rate {text!r}: the interval must be greater than 0")
    return limit, interval
