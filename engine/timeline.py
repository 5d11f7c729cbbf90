"""The run's timeline: what was sent to each location, second by second, kept beside the report.

A report says what became of each record; it cannot say whether a run was held back by the
server's limits, by 429s and retries, or by nothing at all. The client tells a
:class:`TimelineWriter` of every attempt (:class:`AttemptRecorder`); the writer counts them
per location for the current second only and, when the second is over, appends one line
for it to ``out.csv.timeline`` (JSON Lines). Memory holds one second's counters for the
locations busy in that second, whatever the length of the run; the file grows by one line
per busy second. A process killed loses at most its current second.

The file::

    {"timeline": "ghl-migrate-timeline/1", "fields": ["requests", "throttled", ...]}
    {"start": "2026-11-28T09:00:00Z", "t": 1795856400.2, "pid": 4242, "resumed": false, ...}
    {"t": 1795856400, "loc": {"locA": [3, 0, 0, 0, 0, 0, 412, 100, 10.0], ...}}
    ...
    {"end": "2026-11-28T09:03:10Z", "t": 1795856590.7, "exit_code": 1, "elapsed": 190.5, ...}

The first line names the format and the order of the per-location counters (``FIELDS``);
each run (each process: a killed run and its resume append to the same file) adds a
``start`` line, one line per busy second (``t`` in whole seconds of the wall clock), and an
``end`` line with its exit code, unless it was killed. The counters of one location in one
second are: attempts that reached the server, 429 answers, retries, 5xx answers, attempts
lost after connecting (reset, timeout), attempts that could not connect at all, the summed
answer time in milliseconds, and the location's limit and interval (seconds) as the limiter
knew them at the end of that second.

:mod:`engine.timeline_view` reads it back for a report's page (a run never does: that half
loads with the page). Nothing here knows any API. The timeline is an aid: if it cannot be
written (a full disk) the run goes on without it, with one warning.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import structlog

from .appendlog import AppendLog
from .errors import StorageError
from .model import LocationId

__all__ = ["FIELDS", "FORMAT", "AttemptRecorder", "TimelineWriter", "timeline_path"]

log = structlog.get_logger("engine")

#: the first line's "timeline": the format and its version
FORMAT = "ghl-migrate-timeline/1"
_SUFFIX = ".timeline"

#: the per-location counters of one second, in the order the file stores them
FIELDS = (
    "requests",
    "throttled",
    "retries",
    "server_errors",
    "lost",
    "unreached",
    "answer_ms",
    "limit",
    "interval",
)
_REQ, _429, _RETRY, _5XX, _LOST, _UNREACHED, _MS, _LIMIT, _INTERVAL = range(len(FIELDS))


def timeline_path(report_path: str) -> str:
    """The timeline file that belongs to ``report_path``."""
    return f"{report_path}{_SUFFIX}"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AttemptRecorder(Protocol):
    """Told of every attempt the client makes (a :class:`TimelineWriter` records them)."""

    def attempt(
        self,
        location: LocationId,
        *,
        status: int | None,
        retry: bool,
        reached: bool,
        seconds: float,
        limit: int,
        interval: float,
    ) -> None:
        """One attempt ended: answered with ``status`` (None: no answer), a ``retry`` or
        not, ``reached`` the server or could not connect, ``seconds`` to answer, under the
        location's ``limit`` per ``interval`` seconds as the limiter knew it then."""
        ...


class TimelineWriter:
    """Appends a run's timeline to ``path`` (see the module docstring).

    ``clock`` is the wall clock (seconds since the epoch), injectable for tests.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        sync_interval: float = 5.0,
    ) -> None:
        self.path = path
        self._clock = clock
        self._log = AppendLog(path, sync_interval=sync_interval, clock=time.monotonic)
        self._second: int | None = None
        #: this second's counters per location: the only per-attempt state held
        self._now: dict[LocationId, list[float]] = {}
        self._open = False
        self._warned = False

    @property
    def pending(self) -> Mapping[LocationId, Sequence[float]]:
        """The counters of the current second, not yet written (one second's worth)."""
        return self._now

    def open(self, *, fresh: bool) -> None:
        """Open for appending; ``fresh`` starts the file over (a new report). Never raises:
        a timeline that cannot be opened is left out, with a warning."""
        try:
            if fresh and os.path.lexists(self.path):
                os.unlink(self.path)
            new = self._log.open()
        except OSError as exc:
            self._give_up(exc)
            return
        self._open = True
        if new:
            self._write({"timeline": FORMAT, "fields": list(FIELDS)})

    def started(self, **facts: Any) -> None:
        """A run (this process) starts: its ``start`` line, with ``facts`` about it."""
        now = self._clock()
        self._write({"start": _iso(now), "t": round(now, 3), "pid": os.getpid(), **facts})

    def attempt(
        self,
        location: LocationId,
        *,
        status: int | None,
        retry: bool,
        reached: bool,
        seconds: float,
        limit: int,
        interval: float,
    ) -> None:
        second = int(self._clock())
        if self._second is None:
            self._second = second
        elif second > self._second:  # a clock stepped back keeps counting in this second
            self.flush()
            self._second = second
        counts = self._now.get(location)
        if counts is None:
            counts = self._now[location] = [0, 0, 0, 0, 0, 0, 0, limit, interval]
        if not reached:
            counts[_UNREACHED] += 1
        else:
            counts[_REQ] += 1
            if status is None:
                counts[_LOST] += 1
            else:
                counts[_MS] += round(seconds * 1000)
                if status == 429:
                    counts[_429] += 1
                elif status >= 500:
                    counts[_5XX] += 1
        if retry:
            counts[_RETRY] += 1
        counts[_LIMIT], counts[_INTERVAL] = limit, interval

    def flush(self) -> None:
        """Write the current second's counters (they are then dropped from memory)."""
        if self._now and self._second is not None:
            self._write({"t": self._second, "loc": self._now})
        self._now = {}

    def finished(self, **facts: Any) -> None:
        """The run ends: the last second, then its ``end`` line; the file is closed."""
        self.flush()
        now = self._clock()
        self._write({"end": _iso(now), "t": round(now, 3), **facts})
        self.close()

    def close(self) -> None:
        """Close (the last second is written first)."""
        if self._open:
            self.flush()
        try:
            self._log.close()  # also after a failed write: the file is closed either way
        except StorageError as exc:
            self._give_up(exc)
        self._open = False

    def _write(self, item: Mapping[str, Any]) -> None:
        if not self._open:
            return
        try:
            self._log.write(orjson.dumps(item) + b"\n")
        except StorageError as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        """Stop recording, saying so once: the run goes on without its timeline."""
        if not self._warned:
            self._warned = True
            log.warning(
                f"the run's timeline {self.path} cannot be written ({exc}); the run goes on "
                "without it (its page will show no timeline)"
            )
        self._open = False
