"""Per-location rate limits: a sliding burst window, a daily budget, and their headers."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .config import SandboxConfig

__all__ = ["RateLimiter"]

_DAY = 86_400.0  # seconds


@dataclass(slots=True)
class _Budget:
    """One location's rate state: admitted arrival times in the window, and today's count."""

    window: deque[float] = field(default_factory=deque)
    day: int = 0
    used_today: int = 0


class RateLimiter:
    """Per-location sliding window plus daily budget; see the package docs for the choices."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._clock = config.clock
        self._epoch = config.clock()
        self._budgets: dict[str, _Budget] = {}

    def admit(self, location_id: str) -> tuple[bool, dict[str, str]]:
        """Count one request; answer whether it may proceed and the headers to send."""
        cfg = self._config
        now = self._clock()
        budget = self._budgets.setdefault(location_id, _Budget())
        day = int((now - self._epoch) // _DAY)
        if day != budget.day:
            budget.day, budget.used_today = day, 0
        window = budget.window
        while window and window[0] <= now - cfg.rate_interval:
            window.popleft()
        limit = cfg.throttle_below if cfg.throttle_below is not None else cfg.rate_limit
        wait: float | None = None
        if cfg.daily_limit and budget.used_today >= cfg.daily_limit:
            wait = self._epoch + (day + 1) * _DAY - now
        elif limit and len(window) >= limit:
            wait = window[len(window) - limit] + cfg.rate_interval - now
        else:
            window.append(now)
            budget.used_today += 1
        headers = self._headers(len(window), budget.used_today)
        if wait is not None and cfg.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return wait is None, headers

    def _headers(self, in_window: int, used_today: int) -> dict[str, str]:
        cfg = self._config
        headers: dict[str, str] = {}
        advertised = cfg.advertise_limit if cfg.advertise_limit is not None else cfg.rate_limit
        if advertised:
            headers["X-RateLimit-Max"] = str(advertised)
            headers["X-RateLimit-Remaining"] = str(max(0, advertised - in_window))
            headers["X-RateLimit-Interval-Milliseconds"] = str(round(cfg.rate_interval * 1000))
        if cfg.daily_limit:
            headers["X-RateLimit-Limit-Daily"] = str(cfg.daily_limit)
            headers["X-RateLimit-Daily-Remaining"] = str(max(0, cfg.daily_limit - used_today))
        return headers
