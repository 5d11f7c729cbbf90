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

    in_flight + #(completions with completion_time > t - interval) + #(others' requests) < limit

Completion times sit in a deque, oldest first, pruned as they leave the window; it holds
about ``limit`` entries, so the check is exact and memory is bounded.

The limit is learned, not fixed: the user's ``--rate`` is only the starting guess, and the
server's answers (parsed by the job kind into a :class:`~engine.rates.RateHint`) refine it.

* ``X-RateLimit-Max`` and ``-Interval`` advertise the limit and the window.
* ``X-RateLimit-Remaining`` lower than our own count means someone else spends this budget
  (another client, or our own process killed a moment ago): the difference is booked as
  *others'* requests, which leave the window one interval after we learned of them. When
  that booking is all that holds the window full, one lone request (a *peek*, at most one
  429) goes every so often, and its answer counts the others again.
* The daily budget is spent by count: never more is sent than the last reported daily
  remaining, less what was in flight then.

A 429 may mean four things, and only one of them is a lower limit:

* it answers a request already in flight when an earlier 429 was sent: the same *burst*,
  one signal however many 429s it holds;
* it answers a probe (see below): the probed level was one too many;
* the server still reports room (``Remaining > 0``), so the token is throttled below what
  it advertises: the ceiling becomes what the server's window held (``Max - Remaining``);
* the window is full (``Remaining`` 0, or no rate headers): when another client was seen
  sharing the budget in the last two windows, that is contention, already booked; else it
  is waited out (``Retry-After``, else one interval, else the booked count does it), and
  only a repeat within eight windows is taken as a lower limit, set to how many of our
  requests the window admitted. So a 429 right after start-up or ``--resume`` (the server
  still counts the last process's requests) costs a wait, not the rest of the run.

The ceiling is an estimate, not a ratchet. After a quiet period (two windows after it was
lowered, doubled after each failed probe, up to 64) it probes back up, additively, toward
the advertised limit: when the window is full, one request may go at ceiling + 1; when
every request sent up to it has been answered without a 429, that level is confirmed and
the next may follow at once. A probe is one request beyond a level that works, so under the
strict rule it costs at most one 429, and a failed probe returns to the confirmed level
without pausing (the window count already holds the excess). This is TCP's additive
increase, multiplicative decrease (AIMD), with the decrease taken from the server's count
rather than by halving, so a throttled token settles on its real limit instead of
oscillating below it.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import structlog

from .errors import DailyLimitExhausted  # raised here; re-exported for old imports
from .rates import RateHint, check_rate, parse_rate  # re-exported for old imports

if TYPE_CHECKING:
    from .gates import LocationGates  # re-exported for old imports (see __getattr__ below)

__all__ = [
    "DailyLimitExhausted",
    "LocationGates",
    "LocationLimiter",
    "RateHint",
    "Slot",
    "parse_rate",
]

log = structlog.get_logger("engine.pacing")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: windows after a cut before the first probe; doubled after each failed probe, up to the max
_QUIET, _QUIET_MAX = 2.0, 64.0
#: a 429 this many windows after an answer showed another client is put down to contention
_CONTENTION_MEMORY = 2.0
#: an unexplained 429 is waived once; a repeat within this many windows lowers the ceiling
_PASS_RENEWAL = 8.0
#: the first peek's delay after the last answer, in windows (doubled after each 429, up to 1)
_PEEK_FIRST = 1 / 8


class LocationLimiter:
    """Admits requests to one location under the strict window rule (see the module docstring).

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
        "_advertised",
        "_barrier_pending",
        "_barrier_seq",
        "_blocked_until",
        "_burst_base",
        "_burst_ok",
        "_burst_seq",
        "_ceiling",
        "_changed",
        "_clock",
        "_confirmed",
        "_counted",
        "_daily_left",
        "_done",
        "_exhausted",
        "_in_flight",
        "_interval",
        "_last_answer",
        "_last_peek",
        "_name",
        "_others",
        "_others_seen",
        "_pass_at",
        "_peek_gap",
        "_peek_seq",
        "_probe_at",
        "_probe_seq",
        "_queue",
        "_quiet",
        "_refused",
        "_sends",
        "_seq",
        "_sleep",
        "_taken_at",
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
        self._name = name
        self._advertised = limit
        self._interval = float(interval)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._seq = 0  # sequence number of the next request admitted
        self._taken_at = 0.0  # when the last one was admitted
        self._done: deque[float] = deque()  # our completion times, oldest first
        # when our requests of the last two intervals were sent, and those answered 429
        # (a list, not a deque: it is searched by bisection, and a deque's middle is slow)
        self._sends: list[float] = []
        self._refused: deque[tuple[float, int]] = deque()  # (sent, seq), in answer order
        self._others: deque[float] = deque()  # when we learned of others' requests
        self._blocked_until = -math.inf
        self._exhausted = False
        self._daily_left: int | None = None  # sends allowed by the last daily count
        self._queue: deque[anyio.Event] = deque()  # one ticket per waiter; head may go
        self._changed: anyio.Event | None = None
        # the ceiling: an estimate of the real limit when it is below the advertised one
        self._ceiling: int | None = None
        self._confirmed = 0  # highest level that worked since the ceiling was last set
        self._quiet = _QUIET  # windows before the next probe after a failed one
        self._probe_at = -math.inf  # no probe before this time
        self._probe_seq: int | None = None  # the request probing ceiling + 1, if any
        # one barrier at a time: it falls when every request up to _barrier_seq is answered
        self._barrier_seq = -1
        self._barrier_pending = 0
        # the current burst: 429s to requests with seq < _burst_seq are one signal
        self._burst_seq = -1
        self._burst_base = -1  # our admitted requests in the window at the burst's start
        self._burst_ok = 0  # burst members admitted since (-1 base: nothing to resolve)
        self._others_seen = -math.inf  # when an answer last showed another client
        self._pass_at = -math.inf  # when an unexplained 429 was last waived
        self._counted = False  # whether the server reports X-RateLimit-Remaining
        self._last_answer = self._last_peek = -math.inf
        self._peek_gap = _PEEK_FIRST
        self._peek_seq: int | None = None

    @property
    def limit(self) -> int:
        """Requests allowed per interval: the advertised limit, capped by the learned ceiling."""
        ceiling = self._ceiling
        if ceiling is None or ceiling >= self._advertised:
            return self._advertised
        return ceiling

    @property
    def advertised(self) -> int:
        """The limit the server advertises (or the starting guess, before it says)."""
        return self._advertised

    @property
    def interval(self) -> float:
        """Window length in seconds, as last advertised (or the starting guess)."""
        return self._interval

    @property
    def exhausted(self) -> bool:
        """True once a response said the daily budget is spent."""
        return self._exhausted

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return self._in_flight

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
        # The server is the source of truth; --rate was only a guess.
        if hint.interval is not None and hint.interval > 0 and math.isfinite(hint.interval):
            self._interval = float(hint.interval)
        if hint.limit is not None and hint.limit >= 1:
            self._advertised = hint.limit
        inside = slot is not None
        seq = slot.seq if slot is not None else self._seq - 1
        others_in_flight = self._in_flight - inside
        if hint.daily_remaining is not None:
            if hint.daily_remaining <= 0:
                self._exhausted = True
            else:
                self._daily_left = hint.daily_remaining - others_in_flight
        self._last_answer = now
        peek = seq == self._peek_seq
        if peek:
            self._peek_seq = None
            if not throttled:
                self._peek_gap = _PEEK_FIRST
            elif hint.retry_after is not None:
                self.penalize(hint.retry_after)
        elif throttled and not self._exhausted:
            self._throttled(hint, seq, now)
        elif not throttled:
            if self._burst_base >= 0 and seq <= self._barrier_seq:
                self._burst_ok += 1  # admitted during a burst being resolved
            elif self._probe_seq is not None and hint.remaining is not None:
                # The server's own count confirms a probe: it held the probed level and
                # still admitted. (Our count runs ahead of the server's, so an admitted
                # probe alone may only mean an old request had just left its window.)
                advertised = hint.limit if hint.limit is not None else self._advertised
                if advertised - hint.remaining >= self.limit:
                    self._confirm(now)
        sent = slot.sent if slot is not None else now
        self._book_others(hint, throttled, inside, now, sent, seq, refresh=peek and throttled)
        if throttled:
            self._refused.append((sent, seq))
        # A higher limit, fewer others or exhaustion change what a waiter should do.
        self._notify()

    # -- what a 429 means -----------------------------------------------------------------------

    def _throttled(self, hint: RateHint, seq: int, now: float) -> None:
        if seq < self._burst_seq:
            # Sent before an earlier 429 arrived: part of that burst, not a new signal.
            if hint.retry_after is not None:
                self.penalize(hint.retry_after)
            return
        self._burst_seq = self._seq
        wait = hint.retry_after
        if self._probe_seq is not None:
            # The probe's level was one too many: back to the level that worked.
            self._probe_seq = None
            self._barrier_pending = 0
            self._quiet = min(2 * self._quiet, _QUIET_MAX)
            self._probe_at = now + self._quiet * self._interval
            self._ceiling = max(self._confirmed, 1)
            log.debug(
                "pacing: probe refused",
                location=self._name,
                ceiling=self._ceiling,
                next_probe_in=round(self._quiet * self._interval, 3),
            )
        elif hint.remaining is not None and hint.remaining > 0:
            # Refused although the server reports room: throttled below what it advertises.
            advertised = hint.limit if hint.limit is not None else self._advertised
            held = advertised - hint.remaining
            self._lower(held, now, "refused while the server reported room")
        elif hint.remaining is not None and self._admitted(now) < (hint.limit or self._advertised):
            # The server says its window is full, and not with ours: another client shares
            # this budget (or our own process, killed a moment ago). Its share is booked from
            # this answer's count; the ceiling stays.
            self._others_seen = now
        elif now - self._others_seen <= _CONTENTION_MEMORY * self._interval:
            pass  # another client was seen sharing the budget: booked from the counts
        elif now - self._pass_at > _PASS_RENEWAL * self._interval:
            # Perhaps someone we cannot see (our own killed process) filled the window: wait
            # it out once; only a repeat says the limit is lower.
            self._pass_at = now
            log.info(
                "pacing: 429 waited out; not yet taken as a lower limit",
                location=self._name,
                wait=round(wait if wait is not None else self._interval, 3),
            )
        else:
            # A repeat: the limit is lower. Until this burst's answers are in, assume every
            # request still in flight gets through; then count how many did.
            admitted = self._admitted(now)
            self._lower(admitted + self._in_flight - 1, now, "429 repeated")
            self._burst_base, self._burst_ok = admitted, 0
            self._barrier_seq, self._barrier_pending = self._seq - 1, self._in_flight
        if wait is None and hint.remaining is None:
            wait = self._interval  # nothing says how full the window is: wait it out
        if wait is not None:
            self.penalize(wait)

    def _lower(self, estimate: int, now: float, why: str) -> None:
        old = self.limit
        new = max(1, min(estimate, old - 1))
        self._ceiling = self._confirmed = new
        self._quiet = _QUIET
        self._probe_at = now + _QUIET * self._interval
        self._probe_seq = None
        self._barrier_pending = 0
        self._burst_base = -1
        # The client warns of it (at the request's place); the reason is a detail for -v.
        log.debug("pacing: ceiling lowered", location=self._name, old=old, new=new, why=why)

    def _admitted(self, now: float) -> int:
        """Our requests sent in the last interval and answered, 429s excepted."""
        low = now - self._interval
        refused = sum(1 for t, _ in self._refused if t > low)
        return max(len(self._sends) - bisect_right(self._sends, low) - refused - self._in_flight, 0)

    def _resolve(self, now: float) -> None:
        """Every request up to the barrier is answered: confirm a probe or settle a burst."""
        if self._burst_base >= 0:
            count = self._burst_base + self._burst_ok
            self._burst_base = -1
            if self._ceiling is not None and count < self._ceiling:
                self._ceiling = self._confirmed = max(1, count)
                log.debug("pacing: ceiling settled", location=self._name, new=self._ceiling)
            return
        if self._probe_seq is not None:
            if not self._counted:
                self._confirm(now)  # nothing to count with: no 429 is the confirmation
            else:
                # Answered without a count (a proxy's 5xx page, a dropped connection) or
                # with one that cannot tell: the probe proved nothing. Back to the level
                # that works, and probe again after the same quiet period.
                self._probe_seq = None
                self._ceiling = max(self._confirmed, 1)
                self._probe_at = now + self._quiet * self._interval
                log.debug("pacing: probe undecided", location=self._name, ceiling=self._ceiling)

    def _confirm(self, now: float) -> None:
        """The probed level works."""
        if self._probe_seq is None or self._ceiling is None:
            return
        self._probe_seq = None
        self._barrier_pending = 0
        self._confirmed = self._ceiling
        self._quiet = max(_QUIET, self._quiet / 2)
        self._probe_at = now  # additive increase: the next level may follow at once
        if self._ceiling >= self._advertised:
            self._ceiling = None
            log.info("pacing: ceiling back to the advertised limit", location=self._name)

    # -- others' requests ---------------------------------------------------------------------

    def _book_others(
        self,
        hint: RateHint,
        throttled: bool,
        inside: bool,
        now: float,
        sent: float,
        seq: int,
        *,
        refresh: bool,
    ) -> None:
        """Book others' requests from the server's count (see the module docstring).

        ``sent`` and ``seq``: when the answered request went, and its number; ``refresh``: a
        refused peek, so the window is still full of others' requests now.
        """
        if hint.remaining is None:
            return
        self._counted = True
        if now - sent > self._interval:
            return  # an answer that took longer than a window: its count is out of date
        advertised = hint.limit if hint.limit is not None else self._advertised
        server = advertised - max(hint.remaining, 0)  # what the server counts
        # At most what of ours the server counted when it answered: those sent from an
        # interval before this one (and half a round trip more: one sent just before may
        # have arrived just after) until now, 429s excepted, this one too if refused. By
        # send time, as the server counts by arrival: counting our completions instead would
        # hide another client that takes the slots freed while our answers are on their
        # way back. An upper bound, so the others it shows are there for sure.
        low = sent - self._interval - (now - sent) / 2
        sends = self._sends
        refused = sum(1 for t, _ in self._refused if t > low)
        ours = len(sends) - bisect_right(sends, low) - refused - (inside and throttled)
        others = server - ours
        booked = self._others
        if refresh:
            booked.clear()
        if others > len(booked):
            booked.extend([now] * (others - len(booked)))
        elif others < len(booked) and self._in_flight - inside == 0:
            # Nothing else of ours is on its way, so the count is exact: those booked
            # first have left the server's window.
            for _ in range(len(booked) - max(others, 0)):
                booked.popleft()

    # -- internals ---------------------------------------------------------------------------

    def _used(self, now: float) -> int:
        cutoff = now - self._interval
        done = self._done
        while done and done[0] <= cutoff:
            done.popleft()
        used = self._in_flight + len(done)
        others = self._others
        if others:
            while others and others[0] <= cutoff:
                others.popleft()
            used += len(others)
        return used

    def _free_at(self, now: float) -> float | None:
        """When a start is allowed by the window and the daily count (ignoring penalties),
        or None to wait for a completion."""
        used = self._used(now)
        if self._in_flight:
            if self._last_answer == -math.inf:
                return None  # one request until the first answer says what the budget is
            daily = self._daily_left
            if daily is not None and daily <= 0:
                return None  # what is in flight will report the daily count again
        limit = self.limit
        if used < limit or (used == limit and self._may_probe(now)):
            return now
        if self._probe_seq is not None and self._in_flight:
            return None  # the probe's answer says whether the ceiling rises: wait for it
        must_leave = used - limit + 1  # window entries that must expire first
        free: float | None = None
        if must_leave <= len(self._done) + len(self._others):
            free = self._expiry(must_leave) + self._interval
        if self._counted and self._in_flight == 0 and used - len(self._others) < limit:
            # Only others' requests, as booked, hold the window full: peek.
            peek = max(self._last_answer, self._last_peek) + self._peek_gap * self._interval
            free = peek if free is None else min(free, peek)
        return free  # None: in-flight requests hold the slots; their expiry is not known yet

    def _expiry(self, k: int) -> float:
        """The k-th oldest entry among our completions and others' bookings."""
        done, others = self._done, self._others
        if not others:
            return done[k - 1]
        if not done:
            return others[k - 1]
        merged = sorted([*done, *others])
        return merged[k - 1]

    def _may_probe(self, now: float) -> bool:
        return (
            self._ceiling is not None
            and self._ceiling < self._advertised
            and self._probe_seq is None
            and self._barrier_pending == 0
            and now >= self._probe_at
        )

    def _take(self, now: float) -> int:
        """Count an admitted request; returns its sequence number."""
        seq = self._seq
        self._seq += 1
        self._taken_at = now
        sends, refused, old = self._sends, self._refused, now - 2 * self._interval
        sends.append(now)
        if sends[0] <= old:
            stale = bisect_right(sends, old)
            if 2 * stale >= len(sends):  # in chunks: each entry is moved O(1) times
                del sends[:stale]
        while refused and refused[0][0] <= old:
            refused.popleft()
        used = self._used(now)
        if used >= self.limit:
            if used == self.limit and self._may_probe(now):
                assert self._ceiling is not None
                self._ceiling += 1
                self._probe_seq = seq
                self._barrier_seq, self._barrier_pending = seq, self._in_flight + 1
                log.debug("pacing: probing", location=self._name, level=self._ceiling)
            else:
                # A peek: the gap to the next one doubles (up to a window) until one is let in.
                self._peek_seq, self._last_peek = seq, now
                self._peek_gap = min(2 * self._peek_gap, 1.0)
        self._in_flight += 1
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
        self._in_flight -= 1
        now = self._clock()
        self._done.append(now)
        if seq <= self._barrier_seq and self._barrier_pending > 0:
            self._barrier_pending -= 1
            if self._barrier_pending == 0:
                self._resolve(now)
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


if not TYPE_CHECKING:  # hidden from mypy, so that a misspelt name stays an error

    def __getattr__(name: str) -> object:
        # LocationGates moved to engine/gates.py, which imports this module; it is
        # imported from there on first use, so old imports keep working without a cycle.
        if name == "LocationGates":
            from .gates import LocationGates

            return LocationGates
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
