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

Little's law alone would follow a queue up: when the server (or this process) is the
bottleneck, more in flight makes answers slower, and slower answers ask for more in flight.
So, as in TCP Vegas and BBR, the run also watches for queueing: when even the fastest
answers of the last look are more than twice as slow as the fastest of the last few
seconds, every request is waiting somewhere, and the target shrinks in proportion (by half
at most per look); otherwise it grows toward Little's number, by half at most per look. The
fastest answers, not the average, because a server's own answer times may vary widely
(50 to 150 ms, say) without anything queueing: the fastest of a few dozen answers stays put
then.

The bound is ``--concurrency`` when given, else :data:`PROCESS_BOUND` (fewer when the
process may not open that many files: each request in flight holds a connection). The run
looks at the target ten times a second, starts workers up to it, and lets workers go as they
finish a record when the work needs fewer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["PROCESS_BOUND", "Latency", "in_flight", "next_target", "process_bound"]

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
    and the bound."""
    need = 0.0
    for left, rate in budgets:
        need += min(float(left), 2 * rate * latency + 1)
    return max(1, min(bound, max(_FLOOR, math.ceil(need))))


def next_target(current: int, little: int, queueing: float) -> int:
    """The next target, from the current one (0 at the start), Little's number, and how
    many times slower than the fastest recent answers the last ones were
    (``Latency.queueing``)."""
    if current <= 0:
        return little
    if queueing > _QUEUEING:
        shrunk = math.floor(current * max(0.5, _QUEUEING / queueing))
        return max(min(_FLOOR, little), min(shrunk, little))
    return min(little, max(current + 1, math.floor(current * 1.5)))
