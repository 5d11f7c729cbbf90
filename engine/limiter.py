"""Per-location request budgets that never show a server more than ``limit`` requests per window.

Why not a leaky or token bucket (aiolimiter)? A bucket that drips ``limit`` tokens per
``interval`` starts full, so it admits a full burst and then refills while that burst is
still counted by the server: up to twice the limit can land in one span of ``interval``,
and that earns 429s. Servers do not document whether their window is fixed or sliding,
nor whether a request counts when it arrives or when it is answered. The only rule that
is safe for every such server is the strict one:

    No span of length ``interval`` may ever hold more than ``limit`` requests, where a
    request may be counted anywhere between the moment it is sent and the moment its
    response arrives.

So a request holds its slot from send until response, and the slot then stays used for
``interval`` seconds after the response. A new request may start at ``t`` iff::

    in_flight + #(completions with completion_time > t - interval) < limit

Completion times sit in a deque, oldest first, pruned as they leave the window; it holds
about ``limit`` entries, so the check is exact and memory is bounded.

The limit is learned, not fixed: the user's ``--rate`` is only the starting guess.
Response headers (parsed by the job kind into a :class:`RateHint`) advertise the real
limit and interval, reveal usage we did not make (another client sharing the token), and
say when the daily budget is spent. A 429 proves the real limit is lower than we think,
even when headers still advertise the documented one, so it sets a *learned ceiling*
that advertised limits can never raise again, and it pauses the whole location.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

import anyio

from .errors import DailyLimitExhausted  # raised here; re-exported for old imports

__all__ = [
    "DailyLimitExhausted",
    "LocationGates",
    "LocationLimiter",
    "RateHint",
    "parse_rate",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateHint:
    """What one response said about the location's budget (parsed by the job kind from headers)."""

    limit: int | None = None  # requests per interval the server advertises
    remaining: int | None = None  # requests left in the current window
    interval: float | None = None  # seconds
    daily_remaining: int | None = None
    retry_after: float | None = None  # seconds, from a 429


def _check(limit: int, interval: float) -> None:
    if limit < 1:
        raise ValueError(f"rate limit must be at least 1 request, got {limit}")
    if not interval > 0 or not math.isfinite(interval):
        raise ValueError(f"rate interval must be a positive number of seconds, got {interval}")


class LocationLimiter:
    """Admits requests to one location under the strict window rule (see the module docstring).

    Waiting is FIFO: waiters queue on tickets and only the head of the queue looks at the
    budget, so a burst cannot starve an early waiter. The head waits in one of two ways:

    * on time, through the injected ``sleep``, until the window entry whose expiry frees a
      slot (or the end of a penalty) is reached. A completion can never make that earlier,
      because completing only turns an in-flight request into a window entry: the count
      is unchanged. So this sleep never needs an early wake-up, and tests can drive it
      with a fake clock.
    * on an event, when every used slot is still in flight and no expiry time is known
      yet; it is set by each completion and by :meth:`observe`.

    Anyio objects are created only while waiting, so a limiter may be built outside a loop.
    """

    __slots__ = (
        "_advertised",
        "_blocked_until",
        "_ceiling",
        "_changed",
        "_clock",
        "_done",
        "_exhausted",
        "_in_flight",
        "_interval",
        "_queue",
        "_sleep",
    )

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        _check(limit, interval)
        self._advertised = limit
        self._ceiling: int | None = None  # learned from 429s; only ever lowered
        self._interval = float(interval)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._done: deque[float] = deque()  # completion (and phantom) times, oldest first
        self._blocked_until = -math.inf
        self._exhausted = False
        self._queue: deque[anyio.Event] = deque()  # one ticket per waiter; head may go
        self._changed: anyio.Event | None = None

    @property
    def limit(self) -> int:
        """Requests allowed per interval: the advertised limit, capped by the learned ceiling."""
        if self._ceiling is None:
            return self._advertised
        return min(self._advertised, self._ceiling)

    @property
    def interval(self) -> float:
        """Window length in seconds, as last advertised (or the starting guess)."""
        return self._interval

    @property
    def exhausted(self) -> bool:
        """True once a response said the daily budget is spent."""
        return self._exhausted

    def ready(self) -> bool:
        """Whether :meth:`slot` would admit a request now, without waiting."""
        if self._exhausted or self._queue:
            return False
        delay = self._delay(self._clock())
        return delay is not None and delay <= 0

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Hold one request slot: wait for the budget, then count the request until exit.

        Raises :class:`DailyLimitExhausted` on entry, before waiting, if the daily budget is
        known to be spent. The exit records a completion even on error or cancellation: a
        request that may have reached the server has to count.
        """
        return _Slot(self)

    def penalize(self, seconds: float) -> None:
        """Block every new start at this location for ``seconds`` from now."""
        if seconds > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def observe(self, hint: RateHint, *, throttled: bool = False) -> None:
        """Adapt to what a response said; ``throttled`` marks a 429."""
        now = self._clock()
        # The server is the source of truth; --rate was only a guess.
        if hint.interval is not None and hint.interval > 0 and math.isfinite(hint.interval):
            self._interval = float(hint.interval)
        if hint.limit is not None and hint.limit >= 1:
            self._advertised = hint.limit
        used = self._used(now)
        if throttled:
            # Some tokens get 429s well below the advertised rate, so the headers cannot be
            # trusted to go up again. Aim 10% under what the window held when it failed,
            # but at most halve per 429: a 429 that arrives when our window is almost
            # empty (the server counts over a longer span) says little about the limit.
            limit = self.limit
            estimate = math.floor(used * 0.9)
            self._ceiling = min(max(estimate, limit // 2, 1), max(limit - 1, 1))
            self.penalize(hint.retry_after if hint.retry_after is not None else self._interval)
        elif hint.retry_after is not None:
            self.penalize(hint.retry_after)
        if hint.remaining is not None:
            # Fewer left than we predict means someone else spends this budget: book the
            # difference as phantom completions now, so they leave the window in time.
            shortfall = (self.limit - used) - max(hint.remaining, 0)
            self._done.extend([now] * max(shortfall, 0))
        if hint.daily_remaining is not None and hint.daily_remaining <= 0:
            self._exhausted = True
        # A higher limit or exhaustion changes what a waiter blocked on completions should do.
        self._notify()

    # -- internals ---------------------------------------------------------------------------

    def _used(self, now: float) -> int:
        cutoff = now - self._interval
        done = self._done
        while done and done[0] <= cutoff:
            done.popleft()
        return self._in_flight + len(done)

    def _delay(self, now: float) -> float | None:
        """Seconds until a start is allowed (<= 0: now), or None to wait for a completion."""
        must_leave = self._used(now) - self.limit + 1  # window entries that must expire first
        if must_leave <= 0:
            ready = now
        elif must_leave <= len(self._done):
            ready = self._done[must_leave - 1] + self._interval
        else:
            return None  # in-flight requests hold the slots; their expiry is not known yet
        return max(ready, self._blocked_until) - now

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _acquire(self) -> None:
        if self._exhausted:
            raise DailyLimitExhausted("the location's daily request budget is spent")
        if self.ready():
            # Nobody waiting and a slot free: take it at once, without a ticket (an Event).
            self._in_flight += 1
            return
        ticket = anyio.Event()
        self._queue.append(ticket)
        try:
            if self._queue[0] is not ticket:
                await ticket.wait()
            while True:
                if self._exhausted:
                    raise DailyLimitExhausted("the location's daily request budget is spent")
                delay = self._delay(self._clock())
                if delay is None:
                    if self._changed is None:
                        self._changed = anyio.Event()
                    await self._changed.wait()
                elif delay > 0:
                    await self._sleep(delay)
                else:
                    break
            self._in_flight += 1
        finally:
            # Leave the queue however we got here; a departing head (served, cancelled or
            # failed) hands the turn on, so a cancelled waiter never stalls the others.
            was_head = self._queue[0] is ticket
            self._queue.remove(ticket)
            if was_head and self._queue:
                self._queue[0].set()

    def _release(self) -> None:
        self._in_flight -= 1
        self._done.append(self._clock())
        self._notify()


class _Slot(AbstractAsyncContextManager[None]):
    __slots__ = ("_limiter",)

    def __init__(self, limiter: LocationLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        await self._limiter._acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._release()


class LocationGates:
    """Lazily creates one LocationLimiter per location, inside the running loop.

    Each location is a separate budget on the server, so one location's 429s or exhausted
    daily budget never slow another.
    """

    __slots__ = ("_clock", "_gates", "_interval", "_limit", "_sleep")

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        _check(limit, interval)
        self._limit = limit
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._gates: dict[str, LocationLimiter] = {}

    def __getitem__(self, location_id: str) -> LocationLimiter:
        gate = self._gates.get(location_id)
        if gate is None:
            gate = LocationLimiter(
                self._limit, self._interval, clock=self._clock, sleep=self._sleep
            )
            self._gates[location_id] = gate
        return gate

    def __len__(self) -> int:
        return len(self._gates)

    # Explicit, because the fallbacks for ``in`` and iteration would call __getitem__ with
    # 0, 1, 2, ... and create limiters forever.
    def __contains__(self, location_id: object) -> bool:
        return location_id in self._gates

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._gates))


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
