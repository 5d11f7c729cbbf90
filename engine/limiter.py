"""Per-location request budgets that never show a server more than ``limit`` requests per window.

A :class:`LocationLimiter` admits one location's requests, in order, when the location's
:class:`~engine.window.Window` has room: no span of ``interval`` may hold more than
``limit`` of them, each counted from send until answer (the strict rule, and why not a
token bucket: see engine/window.py).

The limit is learned, not fixed: the user's ``--rate`` is only the starting guess, and the
server's answers (parsed by the job kind into a :class:`~engine.rates.RateHint`) refine it.

* ``X-RateLimit-Max`` and ``-Interval`` advertise the limit and the window.
* ``X-RateLimit-Remaining`` lower than our own count means someone else spends this budget:
  the difference is booked in the window as *others'* requests. When that booking is all
  that holds the window full, one lone request (a *peek*, at most one 429) goes every so
  often, and its answer counts the others again.
* The daily budget is spent by count: never more is sent than the last reported daily
  remaining, less what was in flight then.
* A 429 may lower the location's ceiling, which later probes back up toward the advertised
  limit (see engine/ceiling.py); the limiter pauses every start for as long as it says.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import anyio

from .ceiling import Ceiling
from .errors import DailyLimitExhausted
from .rates import RateHint, check_rate
from .window import Window

__all__ = ["LocationLimiter", "Slot"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: the first peek's delay after the last answer, in windows (doubled after each 429, up to 1)
_PEEK_FIRST = 1 / 8


class LocationLimiter:
    """Admits requests to one location under the strict window rule (see engine/window.py).

    Waiting is FIFO: waiters queue on tickets and only the head of the queue looks at the
    budget, so a burst cannot starve an early waiter. The head waits in one of two ways:

    * on time, through the injected ``sleep``, until the window entry whose expiry frees a
      slot (or the end of a penalty, or the next peek) is reached. A completion only turns
      an in-flight request into a window entry, so it never makes that time earlier; an
      answer that counts fewer others than booked can, and the head then notices at its
      next wake-up, at most one peek delay later. Tests can drive it with a fake clock.
    * on an event, when every used slot is still in flight and no expiry time is known
      yet; it is set by each completion and by :meth:`observe`.

    Anyio objects are created only while waiting, so a limiter may be built outside a loop.
    """

    __slots__ = (
        "_blocked_until",
        "_ceiling",
        "_changed",
        "_clock",
        "_daily_left",
        "_exhausted",
        "_last_answer",
        "_last_peek",
        "_peek_gap",
        "_peek_seq",
        "_queue",
        "_seq",
        "_sleep",
        "_taken_at",
        "_window",
    )

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        name: str = "",
    ) -> None:
        check_rate(limit, interval)
        self._window = Window(float(interval))
        self._ceiling = Ceiling(limit, self._window, name=name)
        self._clock = clock
        self._sleep = sleep
        self._seq = 0  # sequence number of the next request admitted
        self._taken_at = 0.0  # when the last one was admitted
        self._blocked_until = -math.inf
        self._exhausted = False
        self._daily_left: int | None = None  # sends allowed by the last daily count
        self._queue: deque[anyio.Event] = deque()  # one ticket per waiter; head may go
        self._changed: anyio.Event | None = None
        self._last_answer = self._last_peek = -math.inf
        self._peek_gap = _PEEK_FIRST
        self._peek_seq: int | None = None

    @property
    def limit(self) -> int:
        """Requests allowed per interval: the advertised limit, capped by the learned ceiling."""
        return self._ceiling.limit

    @property
    def advertised(self) -> int:
        """The limit the server advertises (or the starting guess, before it says)."""
        return self._ceiling.advertised

    @property
    def interval(self) -> float:
        """Window length in seconds, as last advertised (or the starting guess)."""
        return self._window.interval

    @property
    def exhausted(self) -> bool:
        """True once a response said the daily budget is spent."""
        return self._exhausted

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return self._window.in_flight

    def ready(self) -> bool:
        """Whether :meth:`slot` would admit a request now, without waiting."""
        if self._exhausted or self._queue:
            return False
        now = self._clock()
        if now < self._blocked_until:
            return False
        free = self._free_at(now)
        return free is not None and free <= now

    def slot(self) -> Slot:
        """Hold one request slot: wait for the budget, then count the request until exit.

        ``async with limiter.slot() as slot:`` yields the :class:`Slot`; pass it to
        :meth:`observe` with the answer, inside the block. Raises
        :class:`DailyLimitExhausted` on entry, before waiting, if the daily budget is known
        to be spent. The exit records a completion even on error or cancellation: a request
        that may have reached the server has to count.
        """
        return Slot(self)

    def penalize(self, seconds: float) -> None:
        """Block every new start at this location for ``seconds`` from now."""
        if seconds > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def observe(self, hint: RateHint, *, throttled: bool = False, slot: Slot | None = None) -> None:
        """Adapt to what an answer said; ``throttled`` marks a 429.

        ``slot`` is the answered request's slot, still held; without it the answer is taken
        as one to the latest request sent.
        """
        now = self._clock()
        window, ceiling = self._window, self._ceiling
        # The server is the source of truth; --rate was only a guess.
        if hint.interval is not None and hint.interval > 0 and math.isfinite(hint.interval):
            window.interval = float(hint.interval)
        if hint.limit is not None and hint.limit >= 1:
            ceiling.advertised = hint.limit
        inside = slot is not None
        seq = slot.seq if slot is not None else self._seq - 1
        if hint.daily_remaining is not None:
            if hint.daily_remaining <= 0:
                self._exhausted = True
            else:  # less what else of ours is in flight: the server may not have counted it
                self._daily_left = hint.daily_remaining - (window.in_flight - inside)
        self._last_answer = now
        peek = seq == self._peek_seq
        if peek:
            self._peek_seq = None
            if not throttled:
                self._peek_gap = _PEEK_FIRST
            elif hint.retry_after is not None:
                self.penalize(hint.retry_after)
        elif throttled and not self._exhausted:
            wait = ceiling.refused(hint, seq, now, next_seq=self._seq)
            if wait is not None:
                self.penalize(wait)
        elif not throttled:
            ceiling.answered(seq, hint, now)
        sent = slot.sent if slot is not None else now
        window.book_others(
            hint,
            ceiling.advertised,
            now,
            sent,
            throttled=throttled,
            inside=inside,
            refresh=peek and throttled,
        )
        if throttled:
            window.refused(sent, seq)
        # A higher limit, fewer others or exhaustion change what a waiter should do.
        self._notify()

    # -- internals ---------------------------------------------------------------------------

    def _free_at(self, now: float) -> float | None:
        """When a start is allowed by the window and the daily count (ignoring penalties),
        or None to wait for a completion."""
        window = self._window
        used = window.used(now)
        if window.in_flight:
            if self._last_answer == -math.inf:
                return None  # one request until the first answer says what the budget is
            daily = self._daily_left
            if daily is not None and daily <= 0:
                return None  # what is in flight will report the daily count again
        ceiling = self._ceiling
        limit = ceiling.limit
        if used < limit or (used == limit and ceiling.may_probe(now)):
            return now
        if ceiling.probing and window.in_flight:
            return None  # the probe's answer says whether the ceiling rises: wait for it
        free = window.expiry(used - limit + 1)  # when enough window entries have left it
        if window.counted and window.in_flight == 0 and used - window.booked() < limit:
            # Only others' requests, as booked, hold the window full: peek.
            peek = max(self._last_answer, self._last_peek) + self._peek_gap * window.interval
            free = peek if free is None else min(free, peek)
        return free  # None: in-flight requests hold the slots; their expiry is not known yet

    def _take(self, now: float) -> int:
        """Count an admitted request; returns its sequence number."""
        seq = self._seq
        self._seq += 1
        self._taken_at = now
        window, ceiling = self._window, self._ceiling
        used = window.used(now)  # before this request
        window.sent(now)
        limit = ceiling.limit
        if used >= limit:
            if used == limit and ceiling.may_probe(now):
                ceiling.probe(seq)
            else:
                # A peek: the gap to the next one doubles (up to a window) until one is let in.
                self._peek_seq, self._last_peek = seq, now
                self._peek_gap = min(2 * self._peek_gap, 1.0)
        if self._daily_left is not None:
            self._daily_left -= 1
        return seq

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _acquire(self) -> int:
        if self._exhausted:
            raise DailyLimitExhausted("the location's daily request budget is spent")
        if self.ready():
            # Nobody waiting and a slot free: take it at once, without a ticket (an Event).
            return self._take(self._clock())
        ticket = anyio.Event()
        self._queue.append(ticket)
        try:
            if self._queue[0] is not ticket:
                await ticket.wait()
            while True:
                if self._exhausted:
                    raise DailyLimitExhausted("the location's daily request budget is spent")
                now = self._clock()
                free = self._free_at(now)
                if free is None:
                    if self._changed is None:
                        self._changed = anyio.Event()
                    await self._changed.wait()
                    continue
                delay = max(free, self._blocked_until) - now
                if delay > 0:
                    await self._sleep(delay)
                else:
                    return self._take(now)
        finally:
            # Leave the queue however we got here; a departing head (served, cancelled or
            # failed) hands the turn on, so a cancelled waiter never stalls the others.
            was_head = self._queue[0] is ticket
            self._queue.remove(ticket)
            if was_head and self._queue:
                self._queue[0].set()

    def _release(self, seq: int) -> None:
        now = self._clock()
        self._window.answered(now)
        self._ceiling.released(seq, now)
        self._notify()


class Slot(AbstractAsyncContextManager["Slot"]):
    """One request's hold on a location's budget; ``seq`` orders it among the location's,
    ``sent`` is when it was admitted (the limiter's clock)."""

    __slots__ = ("_limiter", "sent", "seq")

    def __init__(self, limiter: LocationLimiter) -> None:
        self._limiter = limiter
        self.seq = -1
        self.sent = 0.0

    async def __aenter__(self) -> Slot:
        self.seq = await self._limiter._acquire()
        self.sent = self._limiter._taken_at
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._release(self.seq)
