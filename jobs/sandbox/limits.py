"""Per-location rate limits: a burst window, a daily budget, their headers, and their faults.

The burst window is sliding (admitted arrivals in ``(now - interval, now]``) or fixed (admitted
arrivals since the start of the current ``interval``-long window, windows aligned on the
sandbox's creation); 429s are not counted. Three switches make the limits mislead a client
the ways real services do:

* ``throttle_below``: the window admits fewer than ``X-RateLimit-Max`` advertises (some
  tokens are throttled below the documented rate);
* ``contention``: another client spends the same location's budget for a while, evenly
  spaced, starting ``contention_after`` seconds after the location's first request and
  lasting ``contention_for`` seconds. It is simulated lazily: before each request of ours,
  its requests that fell due since are admitted (or refused, when the window is full) at
  the times they were due, so ``X-RateLimit-Remaining`` shows them as a real one would;
* ``bare_429``: a 429 carries ``Retry-After`` and nothing else (no ``X-RateLimit-*``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .config import SandboxConfig, SandboxStats

__all__ = ["RateLimiter"]

_DAY = 86_400.0  # seconds


@dataclass(slots=True)
class _Budget:
    """One location's rate state: admitted arrival times in the window, and today's count."""

    window: deque[float] = field(default_factory=deque)  # sliding: arrivals in the window
    fixed_start: float = -math.inf  # fixed: start of the current window
    fixed_count: int = 0  # fixed: admitted since fixed_start
    day: int = 0
    used_today: int = 0
    first_seen: float | None = None  # the location's first request, for the contention plan
    ghosts_sent: int = 0  # the other client's requests tried so far


class RateLimiter:
    """Per-location burst window plus daily budget; see the module docs for the choices."""

    def __init__(self, config: SandboxConfig, stats: SandboxStats | None = None) -> None:
        self._config = config
        self._stats = stats if stats is not None else SandboxStats()
        self._clock = config.clock
        self._epoch = config.clock()
        self._budgets: dict[str, _Budget] = {}
        self._limit = (
            config.throttle_below if config.throttle_below is not None else config.rate_limit
        )
        self._fixed = config.window == "fixed"

    def admit(self, location_id: str) -> tuple[bool, dict[str, str]]:
        """Count one request; answer whether it may proceed and the headers to send."""
        cfg = self._config
        now = self._clock()
        budget = self._budgets.get(location_id)
        if budget is None:
            budget = self._budgets[location_id] = _Budget(first_seen=now)
        if cfg.contention is not None:
            self._other_client(budget, now)
        day = self._roll_day(budget, now)
        limit = self._limit
        wait: float | None = None
        in_window = self._count(budget, now)
        if cfg.daily_limit and budget.used_today >= cfg.daily_limit:
            wait = self._epoch + (day + 1) * _DAY - now
            self._stats.daily_throttled += 1
        elif limit and in_window >= limit:
            wait = self._free_at(budget, limit) - now
        else:
            self._add(budget, now)
            in_window += 1
            budget.used_today += 1
        if wait is not None and cfg.bare_429:
            return False, {"Retry-After": str(max(1, math.ceil(wait)))}
        headers = self._headers(in_window, budget.used_today)
        if wait is not None and cfg.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return wait is None, headers

    # -- the window ---------------------------------------------------------------------------

    def _roll_day(self, budget: _Budget, now: float) -> int:
        day = int((now - self._epoch) // _DAY)
        if day != budget.day:
            budget.day, budget.used_today = day, 0
        return day

    def _count(self, budget: _Budget, now: float) -> int:
        """Admitted requests in the window at ``now``."""
        interval = self._config.rate_interval
        if self._fixed:
            start = self._epoch + math.floor((now - self._epoch) / interval) * interval
            if start != budget.fixed_start:
                budget.fixed_start, budget.fixed_count = start, 0
            return budget.fixed_count
        window = budget.window
        while window and window[0] <= now - interval:
            window.popleft()
        return len(window)

    def _add(self, budget: _Budget, now: float) -> None:
        if self._fixed:
            budget.fixed_count += 1
        else:
            budget.window.append(now)

    def _free_at(self, budget: _Budget, limit: int) -> float:
        """When the window next has room (the window is full)."""
        interval = self._config.rate_interval
        if self._fixed:
            return budget.fixed_start + interval
        window = budget.window
        return window[len(window) - limit] + interval

    def _other_client(self, budget: _Budget, now: float) -> None:
        """Let the other client's requests that fell due by ``now`` take their slots."""
        cfg = self._config
        assert cfg.contention is not None
        assert budget.first_seen is not None
        count, per = cfg.contention
        step = per / count
        start = budget.first_seen + cfg.contention_after
        end = start + cfg.contention_for
        while True:
            due = start + budget.ghosts_sent * step
            if due > now or due >= end:
                return
            budget.ghosts_sent += 1
            self._roll_day(budget, due)
            full = self._count(budget, due) >= self._limit if self._limit else False
            spent = bool(cfg.daily_limit) and budget.used_today >= cfg.daily_limit
            if full or spent:
                self._stats.contention_refused += 1
            else:
                self._add(budget, due)
                budget.used_today += 1
                self._stats.contention_admitted += 1

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
