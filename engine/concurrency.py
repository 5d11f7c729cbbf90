"""How many records a run works on at once: as many as the work needs, up to a bound.

A fixed number is wrong both ways. Too few, and a run over many locations idles the budgets
the rate limits allow (400 locations at 100 ms answers need about 400 requests in flight to
use theirs; 32 made such a run four times slower than its limits). Too many, and requests
only queue: behind a location's limiter, or in a server (or a client) that is already
working as fast as it can, where each one more adds latency and CPU and nothing else.

So the number follows the work, by Little's law: to keep a location at ``r`` requests per
second when an answer takes ``L`` seconds, about ``r * L`` of its requests must be in
flight. The run needs the sum over the locations that still have records, each capped by
its records left; twice that, for the spread of answer times and for bursts (a location's
whole window may go at once), plus one per location so that none waits for a worker. ``r``
is each location's budget as its limiter knows it (learned from the server's headers, 429s
included); ``L`` is a moving average of answer times (a quarter second until the first
answers).

Little's number is a ceiling, not a goal: it says what the budgets could use, not what the
server (or this process) can serve. Against a server that is already as fast as it can be,
more in flight only makes answers slower, and slower answers ask Little for more in flight;
each request more also costs this process CPU (measured: 25% more per request at a few
hundred in flight than at 32, for the same throughput). So the run starts at one record
per location with records (at least 8, at most Little's number), then doubles toward
Little's number, keeping a doubling only when the requests answered per second grew by a
fifth, judged once the new requests' answers are in; a doubling that did not pay is undone
and tried again a few seconds later (as a gradient concurrency limiter does). And, as in
TCP Vegas and BBR, it shrinks when answers queue: when even the fastest answers of the last
look are more than twice as slow as the fastest of the last few seconds, every request is
waiting somewhere. The fastest answers, not the average, because a server's own answer
times may vary widely (50 to 150 ms, say) without anything queueing: the fastest of a few
dozen answers stays put then.

The bound is ``--concurrency`` when given, else :data:`PROCESS_BOUND` (fewer when the
process may not open that many files: each request in flight holds a connection). The run
looks at the target ten times a second, starts workers up to it, and lets workers go as they
finish a record when the work needs fewer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["PROCESS_BOUND", "Latency", "Sizer", "in_flight", "process_bound"]

#: most records (so requests) in flight at once in one process, by default
PROCESS_BOUND = 512
#: files the process keeps for itself (report, journal, store, lock, logs...)
_RESERVED_FILES = 64
#: fewest workers a run keeps (when it has that many records)
_FLOOR = 8
#: the fastest answers of a look this many times slower than the fastest recent one: queueing
_QUEUEING = 2.0
#: answers needed before answer times are believed: in all, and in one look
_SAMPLES, _LOOK_SAMPLES = 32, 8


class Latency:
    """Answer times: a moving average, the fastest answer of the last look, and the fastest
    of the last few seconds."""

    __slots__ = (
        "_fastest",
        "_look_fastest",
        "_look_samples",
        "_previous",
        "_since",
        "average",
        "recent",
        "samples",
    )

    #: the average before the first answer, and each answer's weight in it
    FIRST, WEIGHT = 0.25, 0.05
    #: the fastest answer is kept over two spans of this many seconds
    SPAN = 5.0

    def __init__(self) -> None:
        self.average = self.FIRST  # seconds
        self.samples = 0
        self.recent = math.inf  # the fastest answer of the last look with enough answers
        self._look_fastest = math.inf
        self._look_samples = 0
        self._fastest = math.inf  # in the current span
        self._previous = math.inf  # in the span before
        self._since = -math.inf  # when the current span began

    def answered(self, seconds: float) -> None:
        """Note how long one answer took."""
        self.average += self.WEIGHT * (seconds - self.average)
        self.samples += 1
        self._look_samples += 1
        if seconds < self._look_fastest:
            self._look_fastest = seconds
            if seconds < self._fastest:
                self._fastest = seconds

    @property
    def fastest(self) -> float:
        """The fastest answer of the last one or two spans (inf before any)."""
        return min(self._fastest, self._previous)

    def look(self, now: float) -> None:
        """End a look: keep its fastest answer (when it had enough), and start a new span
        when the current one is over (so the fastest can rise again)."""
        if self._look_samples >= _LOOK_SAMPLES:
            self.recent = self._look_fastest
            self._look_fastest, self._look_samples = math.inf, 0
        if now - self._since >= self.SPAN:
            self._previous, self._fastest, self._since = self._fastest, math.inf, now

    @property
    def queueing(self) -> float:
        """How many times slower than the fastest recent answer the last look's fastest
        answer was (1.0: not at all)."""
        fastest = self.fastest
        if self.samples < _SAMPLES or not 0 < fastest < math.inf or self.recent == math.inf:
            return 1.0
        return max(1.0, self.recent / fastest)


def process_bound() -> int:
    """:data:`PROCESS_BOUND`, or fewer when the open-files limit would not allow it."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # not on this platform
        return PROCESS_BOUND
    if soft == resource.RLIM_INFINITY:
        return PROCESS_BOUND
    return max(1, min(PROCESS_BOUND, soft - _RESERVED_FILES))


def in_flight(budgets: Iterable[tuple[int, float]], latency: float, bound: int) -> int:
    """Little's number: records to work on at once, given ``(records left, requests per
    second)`` for each location that still has records, the answers' ``latency`` in seconds,
    and the bound. Reads ``budgets`` only until the bound is reached."""
    need = 0.0
    for left, rate in budgets:
        need += min(float(left), 2 * rate * latency + 1)
        if need >= bound:
            break  # every location adds at least one: the rest cannot lower it
    return max(1, min(bound, max(_FLOOR, math.ceil(need))))


class Sizer:
    """The target number of records in progress, looked at a few times a second.

    It starts at one per location with records (so each makes progress at once), at least
    8, at most Little's number. Then, while Little's number is higher, it doubles, and keeps
    a doubling only when the requests answered per second grew by a fifth or more, judged
    once the answers of the new requests are in (two average answer times later, at least a
    look): no gain means something else (the server, this process) is the bottleneck, so it
    goes back and tries again a few seconds later. It follows Little's number down at once,
    and shrinks when answers queue (:attr:`Latency.queueing`).
    """

    __slots__ = ("_before", "_done", "_hold", "_judge", "_rate_at", "target")

    #: seconds before trying to grow again after a doubling that did not pay
    HOLD = 3.0

    def __init__(self) -> None:
        self.target = 0
        self._before: tuple[int, float] | None = None  # (target, rate) before a doubling
        self._judge = 0.0  # when that doubling is judged
        self._hold = -math.inf  # no doubling before this time
        self._done = 0  # records finished at the last look...
        self._rate_at = -math.inf  # ...and when

    def look(self, now: float, *, little: int, locations: int, done: int, latency: Latency) -> int:
        """The target now, given Little's number, the locations with records, the requests
        answered so far and the answers' latency."""
        elapsed = now - self._rate_at
        rate = (done - self._done) / elapsed if elapsed > 0 else 0.0
        if self.target <= 0:
            self.target = min(little, max(_FLOOR, locations))
        elif little < self.target:
            self.target, self._before = little, None  # less work: fewer at once
        elif latency.queueing > _QUEUEING:
            shrunk = math.floor(self.target * max(0.5, _QUEUEING / latency.queueing))
            self.target, self._before = max(min(_FLOOR, little), shrunk), None
        elif self._before is not None:
            if now < self._judge:
                return self.target  # the doubling's answers are not in yet: keep counting
            before, before_rate = self._before
            self._before = None
            if rate < 1.2 * before_rate:
                self.target, self._hold = before, now + self.HOLD  # it did not pay: back
        elif self.target < little and now >= self._hold and elapsed > 0:
            self._before = (self.target, rate)
            self._judge = now + max(2 * latency.average, 0.1)
            self.target = min(little, 2 * self.target)
        self._done, self._rate_at = done, now
        return self.target
