"""The timeline: per-second counters per location, written as seconds end, read back bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from engine import Client, LocationGates, RateHint, Request, Response, RetryPolicy
from engine.timeline import FIELDS, TimelineWriter
from engine.timeline_view import merge_timelines, read_timeline
from tests.fakes import FakeClock, FakeTransport


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def attempt(writer: TimelineWriter, location: str, status: int | None = 200, **kw: Any) -> None:
    args: dict[str, Any] = {
        "retry": False,
        "reached": True,
        "seconds": 0.1,
        "limit": 10,
        "interval": 1.0,
    }
    args.update(kw)
    writer.attempt(location, status=status, **args)


def test_only_the_current_second_is_held_and_each_ended_second_is_one_line(
    tmp_path: Path,
) -> None:
    """Counters of a second are written when a later second starts, then dropped from memory."""
    clock = FakeClock(start=1000.2)
    path = tmp_path / "out.csv.timeline"
    writer = TimelineWriter(str(path), clock=clock)
    writer.open(fresh=True)
    writer.started(records=3)
    attempt(writer, "locA")
    attempt(writer, "locB")
    assert set(writer.pending) == {"locA", "locB"}
    clock.now = 1001.5
    attempt(writer, "locB")
    assert set(writer.pending) == {"locB"}  # second 1000 is on disk, not in memory
    written = lines(path)
    assert written[0] == {"timeline": "ghl-migrate-timeline/1", "fields": list(FIELDS)}
    assert written[1]["start"]
    assert written[1]["records"] == 3
    assert written[2]["t"] == 1000
    assert set(written[2]["loc"]) == {"locA", "locB"}
    writer.finished(exit_code=0)
    written = lines(path)
    assert written[3] == {"t": 1001, "loc": {"locB": [1, 0, 0, 0, 0, 0, 100, 10, 1.0]}}
    assert written[4]["exit_code"] == 0
    assert written[4]["end"]


def test_each_kind_of_attempt_lands_in_its_own_counter(tmp_path: Path) -> None:
    """Reached, 429, retry, 5xx, lost and unreached attempts are told apart; answer time summed."""
    clock = FakeClock(start=50.0)
    path = tmp_path / "t.timeline"
    writer = TimelineWriter(str(path), clock=clock)
    writer.open(fresh=True)
    attempt(writer, "loc", 200, seconds=0.25)
    attempt(writer, "loc", 429, seconds=0.05, retry=True)
    attempt(writer, "loc", 503, seconds=0.1, retry=True)
    attempt(writer, "loc", None, retry=True)  # reset after connecting
    attempt(writer, "loc", None, reached=False, retry=True, limit=5, interval=2.0)
    writer.close()
    counters = dict(zip(FIELDS, lines(path)[-1]["loc"]["loc"], strict=True))
    assert counters == {
        "requests": 4,
        "throttled": 1,
        "retries": 4,
        "server_errors": 1,
        "lost": 1,
        "unreached": 1,
        "answer_ms": 400,
        "limit": 5,
        "interval": 2.0,
    }


def test_a_resumed_run_appends_and_a_new_report_starts_over(tmp_path: Path) -> None:
    """Opening without ``fresh`` appends a second run; ``fresh`` replaces the file."""
    clock = FakeClock(start=10.0)
    path = tmp_path / "t.timeline"
    for _ in range(2):
        writer = TimelineWriter(str(path), clock=clock)
        writer.open(fresh=False)
        writer.started()
        attempt(writer, "loc")
        writer.finished(exit_code=1)
        clock.now += 100
    view = read_timeline([str(path)])
    assert [run.end is not None for run in view.runs] == [True, True]
    assert view.locations["loc"].requests == 2
    writer = TimelineWriter(str(path), clock=clock)
    writer.open(fresh=True)
    writer.close()
    assert len(lines(path)) == 1  # only the format line


def test_a_killed_run_reads_back_without_an_end_and_its_torn_line_is_skipped(
    tmp_path: Path,
) -> None:
    """No end line means killed (or still running); a torn last line is ignored."""
    clock = FakeClock(start=10.0)
    path = tmp_path / "t.timeline"
    writer = TimelineWriter(str(path), clock=clock)
    writer.open(fresh=True)
    writer.started()
    attempt(writer, "loc")
    clock.now = 11.0
    attempt(writer, "loc")  # second 10 is written; second 11 dies with the process
    with path.open("a") as fh:
        fh.write('{"t": 12, "loc": {"loc": [5')
    view = read_timeline([str(path)])
    (run,) = view.runs
    assert run.end is None
    assert run.first == run.last == 10
    assert view.locations["loc"].requests == 1


def test_a_timeline_that_cannot_be_written_warns_once_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """No folder for the file: one warning, no exception, nothing recorded."""
    path = tmp_path / "missing" / "t.timeline"
    with structlog.testing.capture_logs() as logs:
        writer = TimelineWriter(str(path), clock=FakeClock(start=1.0))
        writer.open(fresh=True)
        writer.started()
        attempt(writer, "loc")
        writer.finished(exit_code=0)
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert "cannot be written" in logs[0]["event"]
    assert not path.exists()


def write_run(path: Path, start: int, seconds: list[dict[str, list[float]]], end: bool) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps({"start": "x", "t": start}) + "\n")
        for i, loc in enumerate(seconds):
            fh.write(json.dumps({"t": start + i, "loc": loc}) + "\n")
        if end:
            fh.write(json.dumps({"end": "y", "t": start + len(seconds), "exit_code": 0}) + "\n")


def c(requests: int, throttled: int = 0, retries: int = 0, limit: int = 10) -> list[float]:
    return [requests, throttled, retries, 0, 0, 0, requests * 100, limit, 1.0]


def test_totals_per_location_and_busy_time_sum_every_second_of_every_run(
    tmp_path: Path,
) -> None:
    """Requests, 429s and retries add up per location; busy time spans first to last second."""
    path = tmp_path / "t.timeline"
    write_run(path, 1000, [{"a": c(5, 1)}, {"a": c(3), "b": c(1)}, {}, {"a": c(2, 0, 2)}], True)
    write_run(path, 5000, [{"a": c(4)}, {"b": c(6, 2, 2)}], False)
    view = read_timeline([str(path)])
    a, b = view.locations["a"], view.locations["b"]
    assert (a.requests, a.throttled, a.retries, a.busy) == (14, 1, 2, 4 + 1)
    assert (b.requests, b.throttled, b.retries, b.busy) == (7, 2, 2, 1 + 1)
    assert a.answer_avg_ms == 100
    assert [r.requests for r in view.runs] == [11, 10]
    assert view.runs[1].end is None
    # The idle hour between the runs is left out of the axis; the second run is marked.
    assert view.breaks == (4.0,)
    assert view.gaps
    assert view.overall is not None
    assert sum(b.requests * view.overall.width for b in view.overall.bins) == 21


def test_series_stay_bounded_and_never_finer_than_the_limit_window(tmp_path: Path) -> None:
    """A long run keeps at most max_bins points; a bin is at least one window wide."""
    path = tmp_path / "t.timeline"
    write_run(path, 0, [{"a": c(1), "b": c(2)} for _ in range(10_000)], True)
    view = read_timeline([str(path)], max_bins=100)
    assert view.overall is not None
    assert len(view.overall.bins) <= 101
    assert view.overall.width == 100
    assert view.overall.bins[0].requests == pytest.approx(3.0)
    assert view.overall.bins[0].limit == pytest.approx(20.0)  # both locations' limits
    assert [s.label for s in view.busiest] == ["b", "a"]
    assert view.busiest[0].bins[0].limit == pytest.approx(10.0)
    path2 = tmp_path / "t2.timeline"
    with path2.open("a") as fh:
        fh.write(json.dumps({"start": "x", "t": 0}) + "\n")
        for i in range(30):
            fh.write(json.dumps({"t": i, "loc": {"a": [1, 0, 0, 0, 0, 0, 0, 100, 10.0]}}) + "\n")
    wide = read_timeline([str(path2)])
    assert wide.overall is not None
    assert wide.overall.width == 10
    assert wide.busiest[0].bins[0].requests == pytest.approx(1.0)
    assert wide.busiest[0].bins[0].limit == pytest.approx(10.0)


def test_a_missing_timeline_is_reported_as_missing(tmp_path: Path) -> None:
    """An older report has no timeline: nothing to show, and it says which file is missing."""
    view = read_timeline([str(tmp_path / "old.csv.timeline")])
    assert view.runs == ()
    assert view.overall is None
    assert view.missing == (str(tmp_path / "old.csv.timeline"),)


class ListRecorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, bool, bool, int]] = []

    def attempt(self, location: str, **kw: Any) -> None:
        self.seen.append((location, kw["status"], kw["retry"], kw["reached"], kw["limit"]))


async def test_the_client_tells_the_recorder_of_every_attempt() -> None:
    """A 429 then a 201: two attempts, the second a retry, each with its status and the
    limit as known after it (a lone 429 without rate headers is waited out: it stays)."""
    clock = FakeClock()
    recorder = ListRecorder()
    transport = FakeTransport([Response(status=429), Response(status=201)])
    client = Client(
        transport=transport,
        tokens={"loc1": "t"}.get,
        gates=LocationGates(100, 10.0, clock=clock.time, sleep=clock.sleep),
        read_rate=lambda response: RateHint(),
        policy=RetryPolicy(attempts=3),
        recorder=recorder,
    )
    request = Request(method="POST", url="https://api.example/x", location_id="loc1")
    exchange = await client.call(request)
    assert exchange.response.status == 201
    assert recorder.seen == [("loc1", 429, False, True, 100), ("loc1", 201, True, True, 100)]


def test_merged_timelines_keep_every_runs_lines_and_read_as_all_of_them(
    tmp_path: Path,
) -> None:
    """Shards' timelines merged into one: every run and location is there; none: no file."""
    one, two, out = tmp_path / "a.timeline", tmp_path / "b.timeline", tmp_path / "m.timeline"
    write_run(one, 1000, [{"a": c(5)}, {"a": c(3)}], True)
    write_run(two, 1000, [{"b": c(4, 1)}], False)
    merge_timelines([str(one), str(tmp_path / "missing.timeline"), str(two)], str(out))
    view = read_timeline([str(out)])
    assert [r.requests for r in view.runs] == [8, 4]
    assert (view.locations["a"].requests, view.locations["b"].throttled) == (8, 1)
    assert view.runs[1].end is None
    assert view.breaks == ()  # the shards ran side by side: no run is a resume
    merge_timelines([str(tmp_path / "none.timeline")], str(out))
    assert not out.exists()
