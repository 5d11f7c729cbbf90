"""A run's timeline read back (see :mod:`engine.timeline` for the file): what a report's
page shows of it, and several timelines merged into one.

:func:`read_timeline` reads one or more timelines in two streaming passes and returns a
:class:`TimelineView`: the runs, per-location totals, and requests per second against the
known limits at a bounded resolution, for the whole run and its busiest locations. Memory
holds the locations and a bounded number of points per series, never the seconds.

Apart from the writer, so that a run, which only writes its timeline, does not load this
half at start-up (its classes cost ~3 ms of CPU to make).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from .model import LocationId
from .timeline import FIELDS, FORMAT

__all__ = [
    "Bin",
    "LocationActivity",
    "RunSpan",
    "Series",
    "TimelineView",
    "merge_timelines",
    "read_timeline",
]

log = structlog.get_logger("engine")

#: where each counter is in a location's list (the order of ``FIELDS``)
_REQ, _429, _RETRY, _5XX, _LOST, _UNREACHED, _MS, _LIMIT, _INTERVAL = range(len(FIELDS))

#: points per chart at most: a chart stays small (and readable) whatever the run's length
MAX_BINS = 300
#: the busiest locations that get a chart of their own
BUSIEST = 6


def merge_timelines(paths: Sequence[str], out: str) -> None:
    """Write the timelines at ``paths`` that exist one after another to ``out``, through a
    temporary file (each run keeps its start, seconds and end, in its own order); remove
    ``out`` when none exists. Used for a merged report: its page shows every shard's runs.
    A timeline that cannot be written is left out with a warning (it is an aid)."""
    present = [p for p in paths if os.path.exists(p)]
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        if not present:
            if os.path.lexists(out):
                os.unlink(out)
            return
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"timeline": FORMAT, "fields": list(FIELDS)}) + b"\n")
            for path in present:
                for item in _items(path):
                    if "timeline" not in item:
                        fh.write(orjson.dumps(item) + b"\n")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        log.warning(f"the merged timeline {out} cannot be written ({exc}); its page has none")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpan:
    """One process's run, from its ``start`` line to its ``end`` line (None: killed, or
    still running)."""

    start: Mapping[str, Any]
    end: Mapping[str, Any] | None = None
    #: the first and last busy seconds (wall clock), None when nothing was sent
    first: int | None = None
    last: int | None = None
    #: requests that reached the server, 429s and retries, as this run's seconds hold them
    requests: int = 0
    throttled: int = 0
    retries: int = 0

    @property
    def began(self) -> float:
        """Seconds since the epoch when it started."""
        return float(self.start.get("t", self.first or 0))

    @property
    def ended(self) -> float:
        """When it ended: its ``end`` line, else just after its last busy second."""
        if self.end is not None:
            return float(self.end.get("t", self.began))
        return max(self.began, (self.last + 1) if self.last is not None else self.began)


@dataclass(slots=True)
class LocationActivity:
    """What one location's requests did over every run of the timeline."""

    location: LocationId
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    server_errors: int = 0
    lost: int = 0
    unreached: int = 0
    answer_ms: int = 0
    #: seconds from its first to its last busy second, summed over runs
    busy: int = 0
    #: the limit and interval (seconds) last known
    limit: int = 0
    interval: float = 0.0
    _first: int | None = field(default=None, repr=False)
    _last: int | None = field(default=None, repr=False)
    _run: int = field(default=-1, repr=False)

    @property
    def answer_avg_ms(self) -> float | None:
        """Mean answer time in milliseconds (None: no answer)."""
        answered = self.requests - self.lost
        return self.answer_ms / answered if answered > 0 else None

    @property
    def rate(self) -> float | None:
        """Requests per second while busy."""
        return self.requests / self.busy if self.busy > 0 else None

    @property
    def limit_rate(self) -> float | None:
        """The known limit in requests per second."""
        return self.limit / self.interval if self.interval > 0 and self.limit > 0 else None

    @property
    def pace(self) -> float | None:
        """Requests per second while busy as a share of the known limit (1.0: at the limit)."""
        rate, limit = self.rate, self.limit_rate
        return rate / limit if rate is not None and limit else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bin:
    """One point of a series: ``seconds`` of running time from its ``x`` (seconds since the
    start of the first run, with the idle time between runs left out)."""

    x: float
    requests: float  #: per second, over the bin
    limit: float | None  #: per second, the known limit (None: unknown)
    throttled: int
    retries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """Requests per second against the known limit, for one location or the whole run."""

    label: str
    bins: tuple[Bin, ...]
    #: seconds each bin spans
    width: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineView:
    """What a report page shows of one or more timelines (see :func:`read_timeline`)."""

    runs: tuple[RunSpan, ...]
    locations: Mapping[LocationId, LocationActivity]
    overall: Series | None
    busiest: tuple[Series, ...]
    #: x (seconds of running time) where each later run (a resume) starts, after every
    #: earlier one ended
    breaks: tuple[float, ...] = ()
    #: whether idle time between runs was left out of the x axis
    gaps: bool = False
    #: timeline files that were not there (an older report, or none was written)
    missing: tuple[str, ...] = ()


def _items(path: str) -> Iterator[dict[str, Any]]:
    """The timeline's objects, in order, read as consumed; damaged lines are skipped (a
    torn last line is what a killed process leaves)."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(item, dict):
                yield item


def _seconds(paths: Iterable[str]) -> Iterator[tuple[int, int, dict[str, list[float]]]]:
    """(run number, second, counters per location) of every busy second."""
    run = -1
    for path in paths:
        for item in _items(path):
            if "start" in item:
                run += 1
            elif "loc" in item and isinstance(item["loc"], dict):
                yield max(run, 0), int(item.get("t", 0)), item["loc"]


class _Axis:
    """Running time: wall-clock seconds with the idle gaps between runs left out."""

    def __init__(self, spans: Sequence[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.segments: list[tuple[float, float, float]] = []  # (start, end, offset)
        offset = 0.0
        for start, end in merged:
            self.segments.append((start, end, offset))
            offset += max(end - start, 1.0)
        self.length = offset

    def x(self, second: float) -> float:
        for start, end, offset in reversed(self.segments):
            if second >= start:
                return offset + min(second - start, end - start)
        return 0.0


def read_timeline(
    paths: Sequence[str],
    *,
    max_bins: int = MAX_BINS,
    busiest: int = BUSIEST,
    series: bool = True,
) -> TimelineView:
    """The runs, per-location totals and series of the timelines at ``paths`` (the ones that
    exist; the others are listed in ``missing``). Two streaming passes (one without
    ``series``): memory holds the locations and ``max_bins`` points per series, never the
    seconds."""
    present = [p for p in paths if os.path.exists(p)]
    missing = tuple(p for p in paths if p not in present)
    starts: list[Mapping[str, Any]] = []
    ends: dict[int, Mapping[str, Any]] = {}
    for path in present:
        for item in _items(path):
            if "start" in item:
                starts.append(item)
            elif "end" in item and starts:
                ends[len(starts) - 1] = item
    # Pass 1: totals per run and per location.
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    per_run = [[0, 0, 0] for _ in range(max(len(starts), 1))]
    locations: dict[LocationId, LocationActivity] = {}
    for run, second, counters in _seconds(present):
        first.setdefault(run, second)
        last[run] = max(last.get(run, second), second)
        for location, c in counters.items():
            if not isinstance(c, list) or len(c) < len(FIELDS):
                continue
            activity = locations.get(location)
            if activity is None:
                activity = locations[location] = LocationActivity(location=location)
            _add(activity, run, second, c)
            per_run[run][0] += int(c[_REQ])
            per_run[run][1] += int(c[_429])
            per_run[run][2] += int(c[_RETRY])
    for activity in locations.values():
        _close_run(activity)
    if not starts and first:  # a timeline without start lines: one run from its seconds
        starts = [{"t": float(first[0])}]
    runs = tuple(
        RunSpan(
            start=start,
            end=ends.get(i),
            first=first.get(i),
            last=last.get(i),
            requests=per_run[i][0],
            throttled=per_run[i][1],
            retries=per_run[i][2],
        )
        for i, start in enumerate(starts)
    )
    if not locations or not series:
        return TimelineView(
            runs=runs, locations=locations, overall=None, busiest=(), missing=missing
        )
    # Pass 2: series, for the whole run and the busiest locations.
    axis = _Axis([(math.floor(run.began), run.ended) for run in runs])
    top = sorted(locations.values(), key=lambda a: (-a.requests, a.location))[:busiest]
    widest = max((a.interval for a in top), default=1.0)
    # A bin at least as wide as the limit's window, so that it compares with the limit.
    width = max(1, math.ceil(axis.length / max_bins), math.ceil(widest))
    count = math.ceil(axis.length / width) + 1
    overall = _Bins(count)
    own = {a.location: _Bins(count) for a in top}
    seen: dict[LocationId, int] = {}  # the last bin each location's limit was added to
    for _run, second, counters in _seconds(present):
        index = int(axis.x(second) // width)
        for location, c in counters.items():
            if not isinstance(c, list) or len(c) < len(FIELDS):
                continue
            limit_rate = c[_LIMIT] / c[_INTERVAL] if c[_INTERVAL] else 0.0
            # The whole run's limit: the sum of the limits of the locations busy in the bin.
            add_limit = seen.get(location) != index
            seen[location] = index
            overall.add(index, c, limit_rate if add_limit else 0.0)
            bins = own.get(location)
            if bins is not None:
                bins.add(index, c, limit_rate, replace_limit=True)
    return TimelineView(
        runs=runs,
        locations=locations,
        overall=overall.series("whole run", width),
        busiest=tuple(own[a.location].series(a.location, width) for a in top),
        breaks=_later_starts(runs, axis),
        gaps=len(axis.segments) > 1,
        missing=missing,
    )


def _later_starts(runs: Sequence[RunSpan], axis: _Axis) -> tuple[float, ...]:
    """Where each run that started after every earlier one had ended (a resume) begins on
    the axis; runs side by side (shards) mark nothing."""
    starts: set[float] = set()
    ended = -math.inf
    for run in sorted(runs, key=lambda r: r.began):
        if run.began >= ended - 1 and ended > -math.inf:
            starts.add(axis.x(math.floor(run.began)))
        ended = max(ended, run.ended)
    return tuple(sorted(starts))


def _add(activity: LocationActivity, run: int, second: int, c: list[float]) -> None:
    if activity._run != run:
        _close_run(activity)
        activity._run = run
    if activity._first is None:
        activity._first = second
    activity._last = second
    activity.requests += int(c[_REQ])
    activity.throttled += int(c[_429])
    activity.retries += int(c[_RETRY])
    activity.server_errors += int(c[_5XX])
    activity.lost += int(c[_LOST])
    activity.unreached += int(c[_UNREACHED])
    activity.answer_ms += int(c[_MS])
    activity.limit, activity.interval = int(c[_LIMIT]), float(c[_INTERVAL])


def _close_run(activity: LocationActivity) -> None:
    """Add the run's busy span (first to last busy second, inclusive) to the location's."""
    if activity._first is not None and activity._last is not None:
        activity.busy += activity._last - activity._first + 1
    activity._first = activity._last = None


class _Bins:
    """Sums per bin; the limit is summed (whole run) or the last one kept (one location)."""

    def __init__(self, count: int) -> None:
        self.requests = [0] * count
        self.throttled = [0] * count
        self.retries = [0] * count
        self.limit: list[float | None] = [None] * count
        self.used = [False] * count

    def add(self, index: int, c: list[float], limit: float, *, replace_limit: bool = False) -> None:
        self.used[index] = True
        self.requests[index] += int(c[_REQ])
        self.throttled[index] += int(c[_429])
        self.retries[index] += int(c[_RETRY])
        if replace_limit:
            self.limit[index] = limit or None
        elif limit:
            self.limit[index] = (self.limit[index] or 0.0) + limit

    def series(self, label: str, width: int) -> Series:
        # Idle bins inside the run are points at 0 (nothing sent is a fact worth seeing);
        # the limit there is unknown.
        last = max((i for i, used in enumerate(self.used) if used), default=-1)
        bins = tuple(
            Bin(
                x=float(i * width),
                requests=self.requests[i] / width,
                limit=None if self.limit[i] is None else round(self.limit[i] or 0.0, 3),
                throttled=self.throttled[i],
                retries=self.retries[i],
            )
            for i in range(last + 1)
        )
        return Series(label=label, bins=bins, width=width)
