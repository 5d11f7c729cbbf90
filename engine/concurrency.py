"""How many records a run works on at once: as many as the work needs, up to a bound.

A fixed number is wrong both ways. Too few, and a run over many locations idles the budgets
the rate limits allow (400 locations at 100 ms answers need about 400 requests in flight to
use theirs; 32 made such a run four times slower than its limits). Too many, and a run over
a few slow locations only queues records behind their limiters, holding connections for
nothing. So the number follows the work, by Little's law: to keep a location at ``r``
requests per second when an answer takes ``L`` seconds, about ``r * L`` of its requests must
be in flight. The run needs the sum over the locations that still have records, each capped
by its records left; twice that, for the spread of answer times and for bursts (a location's
whole window may go at once), plus one per location so that none waits for a worker.

``r`` is each location's budget as its limiter knows it (learned from the server's headers,
429s included); ``L`` is the client's moving average of answer times
(:attr:`engine.client.Client.latency`, a quarter second until the first answers). The bound
is ``--concurrency`` when given, else :data:`PROCESS_BOUND` (fewer when the process may not
open that many files: each request in flight holds a connection). The run starts as many
workers as the target at once, looks at the target again ten times a second, and lets
workers go as they finish a record when the work needs fewer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["PROCESS_BOUND", "in_flight", "process_bound"]

#: most records (so requests) in flight at once in one process, by default
PROCESS_BOUND = 512
#: files the process keeps for itself (report, journal, store, lock, logs...)
_RESERVED_FILES = 64
#: fewest workers a run starts (when it has that many records)
_FLOOR = 8


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
    """Records to work on at once, given ``(records left, requests per second)`` for each
    location that still has records, the answers' ``latency`` in seconds, and the bound."""
    need = 0.0
    for left, rate in budgets:
        need += min(float(left), 2 * rate * latency + 1)
    return max(1, min(bound, max(_FLOOR, math.ceil(need))))
