"""What a server may still count against a location's budget, under the strict window rule.

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

Others' requests: ``X-RateLimit-Remaining`` lower than our own count means someone else
spends this budget (another client, or our own process killed a moment ago). The difference
is booked as *others'* requests, which leave the window one interval after we learned of
them. Our own count is taken by send time, as the server counts by arrival, so the window
also keeps when our requests of the last two intervals were sent, and which were refused.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from .rates import RateHint

__all__ = ["Window"]


class Window:
    """Our requests in flight, our completions of the last interval and others' requests
    booked from the server's counts: what one location's window holds (see the module
    docstring). The limiter decides what to admit; this only counts."""

    __slots__ = ("_done", "_others", "_refused", "_sends", "counted", "in_flight", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval  # seconds, as last advertised (or the starting guess)
        self.in_flight = 0  # requests sent and not yet answered
        self.counted = False  # whether the server reports X-RateLimit-Remaining
        self._done: deque[float] = deque()  # our completion times, oldest first
        # when our requests of the last two intervals were sent, and those answered 429
        # (a list, not a deque: it is searched by bisection, and a deque's middle is slow)
        self._sends: list[float] = []
        self._refused: deque[tuple[float, int]] = deque()  # (sent, seq), in answer order
        self._others: deque[float] = deque()  # when we learned of others' requests

    def used(self, now: float) -> int:
        """Slots used at ``now``: in flight, answered within an interval, others' booked."""
        cutoff = now - self.interval
        done = self._done
        while done and done[0] <= cutoff:
            done.popleft()
        used = self.in_flight + len(done)
        others = self._others
        if others:
            while others and others[0] <= cutoff:
                others.popleft()
            used += len(others)
        return used

    def expiry(self, k: int) -> float | None:
        """When the k-th oldest entry among our completions and others' bookings leaves the
        window; None if there are fewer (the rest are in flight: their expiry is not known)."""
        done, others = self._done, self._others
        if k > len(done) + len(others):
            return None
        if not others:
            oldest = done[k - 1]
        elif not done:
            oldest = others[k - 1]
        else:
            oldest = sorted([*done, *others])[k - 1]
        return oldest + self.interval

    def booked(self) -> int:
        """Others' requests booked in the window (as pruned by the last :meth:`used`)."""
        return len(self._others)

    def sent(self, now: float) -> None:
        """Count a request sent at ``now``: it is in flight until :meth:`answered`."""
        sends, refused, old = self._sends, self._refused, now - 2 * self.interval
        sends.append(now)
        if sends[0] <= old:
            stale = bisect_right(sends, old)
            if 2 * stale >= len(sends):  # in chunks: each entry is moved O(1) times
                del sends[:stale]
        while refused and refused[0][0] <= old:
            refused.popleft()
        self.in_flight += 1

    def answered(self, now: float) -> None:
        """A request ended at ``now`` (answered, failed or cancelled): its slot stays used
        one interval more."""
        self.in_flight -= 1
        self._done.append(now)

    def refused(self, sent: float, seq: int) -> None:
        """Request ``seq``, sent at ``sent``, was answered 429: the server did not count it."""
        self._refused.append((sent, seq))

    def admitted(self, now: float) -> int:
        """Our requests sent in the last interval and answered, 429s excepted."""
        low = now - self.interval
        refused = sum(1 for t, _ in self._refused if t > low)
        return max(len(self._sends) - bisect_right(self._sends, low) - refused - self.in_flight, 0)

    def book_others(
        self,
        hint: RateHint,
        advertised: int,
        now: float,
        sent: float,
        *,
        throttled: bool,
        inside: bool,
        refresh: bool,
    ) -> None:
        """Book others' requests from the server's count (see the module docstring).

        ``advertised``: the limit, if ``hint`` does not say; ``sent``: when the answered
        request went; ``inside``: the answered request is still in flight; ``refresh``: a
        refused peek, so the window is still full of others' requests now.
        """
        if hint.remaining is None:
            return
        self.counted = True
        if now - sent > self.interval:
            return  # an answer that took longer than a window: its count is out of date
        if hint.limit is not None:
            advertised = hint.limit
        server = advertised - max(hint.remaining, 0)  # what the server counts
        # At most what of ours the server counted when it answered: those sent from an
        # interval before this one (and half a round trip more: one sent just before may
        # have arrived just after) until now, 429s excepted, this one too if refused. By
        # send time, as the server counts by arrival: counting our completions instead would
        # hide another client that takes the slots freed while our answers are on their
        # way back. An upper bound, so the others it shows are there for sure.
        low = sent - self.interval - (now - sent) / 2
        sends = self._sends
        refused = sum(1 for t, _ in self._refused if t > low)
        ours = len(sends) - bisect_right(sends, low) - refused - (inside and throttled)
        others = server - ours
        booked = self._others
        if refresh:
            booked.clear()
        if others > len(booked):
            booked.extend([now] * (others - len(booked)))
        elif others < len(booked) and self.in_flight - inside == 0:
            # Nothing else of ours is on its way, so the count is exact: those booked
            # first have left the server's window.
            for _ in range(len(booked) - max(others, 0)):
                booked.popleft()
