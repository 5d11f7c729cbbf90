"""The learned limit: what the server advertises, capped by a ceiling that 429s lower and
probes raise again.

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

A *barrier* waits for the answers that decide something: those of every request in flight
when a probe went (without the server's counts, the probe is confirmed when they all end
without a 429), or when a repeated 429 lowered the ceiling (how many of them got through
settles it). One barrier at a time; it falls when the last of them ends.
"""

from __future__ import annotations

import math

import structlog

from .rates import RateHint
from .window import Window

__all__ = ["Ceiling"]

log = structlog.get_logger("engine.pacing")

#: windows after a cut before the first probe; doubled after each failed probe, up to the max
_QUIET, _QUIET_MAX = 2.0, 64.0
#: a 429 this many windows after an answer showed another client is put down to contention
_CONTENTION_MEMORY = 2.0
#: an unexplained 429 is waived once; a repeat within this many windows lowers the ceiling
_PASS_RENEWAL = 8.0


class Ceiling:
    """One location's limit: the advertised one, capped by what its 429s taught.

    It reads the location's :class:`~engine.window.Window` (its interval, what is in
    flight, how many of ours the server admitted) and changes only itself; the limiter
    tells it of each admitted request, answer and 429.
    """

    __slots__ = (
        "_barrier_pending",
        "_barrier_seq",
        "_burst_base",
        "_burst_ok",
        "_burst_seq",
        "_ceiling",
        "_confirmed",
        "_name",
        "_others_seen",
        "_pass_at",
        "_probe_at",
        "_probe_seq",
        "_quiet",
        "_window",
        "advertised",
    )

    def __init__(self, advertised: int, window: Window, *, name: str = "") -> None:
        self.advertised = advertised  # the server's limit (or the starting guess, before it says)
        self._window = window
        self._name = name  # the location, for the log
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

    @property
    def limit(self) -> int:
        """Requests allowed per interval: the advertised limit, capped by the learned ceiling."""
        ceiling = self._ceiling
        if ceiling is None or ceiling >= self.advertised:
            return self.advertised
        return ceiling

    @property
    def probing(self) -> bool:
        """Whether a probe is out: its answer says whether the ceiling rises."""
        return self._probe_seq is not None

    def may_probe(self, now: float) -> bool:
        """Whether one request may go beyond the ceiling now (the window being full)."""
        return (
            self._ceiling is not None
            and self._ceiling < self.advertised
            and self._probe_seq is None
            and self._barrier_pending == 0
            and now >= self._probe_at
        )

    def probe(self, seq: int) -> None:
        """Request ``seq``, just counted in the window, goes at the ceiling plus one."""
        assert self._ceiling is not None
        self._ceiling += 1
        self._probe_seq = seq
        self._barrier_seq, self._barrier_pending = seq, self._window.in_flight
        log.debug("pacing: probing", location=self._name, level=self._ceiling)

    def answered(self, seq: int, hint: RateHint, now: float) -> None:
        """Request ``seq`` was answered without a 429."""
        if self._burst_base >= 0 and seq <= self._barrier_seq:
            self._burst_ok += 1  # admitted during a burst being resolved
        elif self._probe_seq is not None and hint.remaining is not None:
            # The server's own count confirms a probe: it held the probed level and
            # still admitted. (Our count runs ahead of the server's, so an admitted
            # probe alone may only mean an old request had just left its window.)
            advertised = hint.limit if hint.limit is not None else self.advertised
            if advertised - hint.remaining >= self.limit:
                self._confirm(now)

    def released(self, seq: int, now: float) -> None:
        """Request ``seq`` ended (answered or not): it may be the last the barrier waits for."""
        if seq <= self._barrier_seq and self._barrier_pending > 0:
            self._barrier_pending -= 1
            if self._barrier_pending == 0:
                self._resolve(now)

    def refused(self, hint: RateHint, seq: int, now: float, *, next_seq: int) -> float | None:
        """Read a 429 to request ``seq`` (see the module docstring); ``next_seq`` is the number
        the next request will get. Returns how long every start should pause, if at all."""
        if seq < self._burst_seq:
            # Sent before an earlier 429 arrived: part of that burst, not a new signal.
            return hint.retry_after
        self._burst_seq = next_seq
        window = self._window
        wait = hint.retry_after
        if self._probe_seq is not None:
            # The probe's level was one too many: back to the level that worked.
            self._probe_seq = None
            self._barrier_pending = 0
            self._quiet = min(2 * self._quiet, _QUIET_MAX)
            self._probe_at = now + self._quiet * window.interval
            self._ceiling = max(self._confirmed, 1)
            log.debug(
                "pacing: probe refused",
                location=self._name,
                ceiling=self._ceiling,
                next_probe_in=round(self._quiet * window.interval, 3),
            )
        elif hint.remaining is not None and hint.remaining > 0:
            # Refused although the server reports room: throttled below what it advertises.
            advertised = hint.limit if hint.limit is not None else self.advertised
            held = advertised - hint.remaining
            self._lower(held, now, "refused while the server reported room")
        elif hint.remaining is not None and window.admitted(now) < (hint.limit or self.advertised):
            # The server says its window is full, and not with ours: another client shares
            # this budget (or our own process, killed a moment ago). Its share is booked from
            # this answer's count; the ceiling stays.
            self._others_seen = now
        elif now - self._others_seen <= _CONTENTION_MEMORY * window.interval:
            pass  # another client was seen sharing the budget: booked from the counts
        elif now - self._pass_at > _PASS_RENEWAL * window.interval:
            # Perhaps someone we cannot see (our own killed process) filled the window: wait
            # it out once; only a repeat says the limit is lower.
            self._pass_at = now
            log.info(
                "pacing: 429 waited out; not yet taken as a lower limit",
                location=self._name,
                wait=round(wait if wait is not None else window.interval, 3),
            )
        else:
            # A repeat: the limit is lower. Until this burst's answers are in, assume every
            # request still in flight gets through; then count how many did.
            admitted = window.admitted(now)
            self._lower(admitted + window.in_flight - 1, now, "429 repeated")
            self._burst_base, self._burst_ok = admitted, 0
            self._barrier_seq, self._barrier_pending = next_seq - 1, window.in_flight
        if wait is None and hint.remaining is None:
            wait = window.interval  # nothing says how full the window is: wait it out
        return wait

    def _lower(self, estimate: int, now: float, why: str) -> None:
        old = self.limit
        new = max(1, min(estimate, old - 1))
        self._ceiling = self._confirmed = new
        self._quiet = _QUIET
        self._probe_at = now + _QUIET * self._window.interval
        self._probe_seq = None
        self._barrier_pending = 0
        self._burst_base = -1
        # The client warns of it (at the request's place); the reason is a detail for -v.
        log.debug("pacing: ceiling lowered", location=self._name, old=old, new=new, why=why)

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
            if not self._window.counted:
                self._confirm(now)  # nothing to count with: no 429 is the confirmation
            else:
                # Answered without a count (a proxy's 5xx page, a dropped connection) or
                # with one that cannot tell: the probe proved nothing. Back to the level
                # that works, and probe again after the same quiet period.
                self._probe_seq = None
                self._ceiling = max(self._confirmed, 1)
                self._probe_at = now + self._quiet * self._window.interval
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
        if self._ceiling >= self.advertised:
            self._ceiling = None
            log.info("pacing: ceiling back to the advertised limit", location=self._name)
