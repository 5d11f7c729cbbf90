"""How many requests a run keeps in flight: as many as the work needs, or --concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from engine import Request, Response, RunConfig
from engine.concurrency import PROCESS_BOUND, Latency, Sizer, in_flight, process_bound
from jobs.api import run_job
from tests.fakes import run_virtual

HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)


class SlowApi:
    """The associations API, answering every request after ``latency`` seconds (virtual time);
    it counts how many requests are in flight at once."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.most = 0
        self.sent = 0

    async def send(self, request: Request) -> Response:
        self.sent += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        if request.method == "POST":
            return self._json(201, {"id": f"id{self.sent}", **request.json})
        if "/objects/" in request.url:
            return self._json(200, {"objects": [{"key": "contact"}, {"key": "opportunity"}]})
        return self._json(200, {"associations": []})

    @staticmethod
    def _json(status: int, body: object) -> Response:
        return Response(status=status, body=orjson.dumps(body), elapsed=0.1)

    async def aclose(self) -> None:
        pass


def many_locations(write_job: Callable[[str, str], str], locations: int, each: int) -> str:
    rows = "".join(
        f"loc{n:017d},k{i},contact,opportunity,A{i},B{i}\n"
        for i in range(each)
        for n in range(locations)
    )
    return write_job("jobs.csv", HEADER + rows)


def run(job: str, api: SlowApi, **config: object) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await run_job(
            RunConfig(job_files=(job,), **config),  # type: ignore[arg-type]
            base_url="https://api.example.test",
            tokens=lambda location: "token",
            transport=api,
        )
        assert set(result.summary.counts) == {"created"}
        result.close()
        return loop.time() - started

    return run_virtual(main)


def test_many_locations_get_as_many_requests_in_flight_as_they_need(
    write_job: Callable[[str, str], str],
) -> None:
    """400 locations x 5 records at 100 ms answers: hundreds in flight, not 32, by default."""
    job = many_locations(write_job, 400, 5)
    api = SlowApi(0.1)
    elapsed = run(job, api)
    assert api.most >= 400
    assert api.most <= PROCESS_BOUND
    # Two reads per location one after the other, then its creates at once: 0.3 s, and a
    # little more for the creates that find every worker busy (32 at a time took 8.8 s).
    assert elapsed < 1.0


def test_concurrency_option_is_a_hard_cap(write_job: Callable[[str, str], str]) -> None:
    """--concurrency N never lets more than N requests be in flight, and costs what it must."""
    job = many_locations(write_job, 400, 5)
    api = SlowApi(0.1)
    elapsed = run(job, api, concurrency=32)
    assert api.most == 32
    assert elapsed >= api.sent * 0.1 / 32  # 32 at a time


def test_one_location_keeps_few_requests_in_flight(write_job: Callable[[str, str], str]) -> None:
    """One location at 100 requests / 10 s needs a handful in flight, not hundreds."""
    job = many_locations(write_job, 1, 90)  # within one window: the limiter never waits
    api = SlowApi(0.1)
    run(job, api)
    assert api.most <= 8


def test_in_flight_follows_littles_law() -> None:
    """Twice rate x latency per location, plus one, capped by its records left and the bound."""
    assert in_flight([(5, 10.0)] * 400, 0.1, 512) == 512  # 400 x min(5, 3) = 1,200
    assert in_flight([(5, 10.0)] * 100, 0.1, 512) == 300
    assert in_flight([(1, 10.0)] * 100, 0.1, 512) == 100  # one record each
    assert in_flight([(1000, 50.0)] * 20, 0.2, 512) == 420  # 20 x (2 x 50 x 0.2 + 1)
    assert in_flight([(1000, 10.0)], 0.01, 512) == 8  # never fewer than 8...
    assert in_flight([(1000, 10.0)], 0.01, 4) == 4  # ...unless the bound says so
    assert in_flight([], 0.1, 512) == 8


def test_in_flight_stops_reading_locations_at_the_bound() -> None:
    """With more locations than the bound, the rest are not read (each adds at least one):
    a look over 4,000 locations costs 512 budget lookups, not 4,000."""
    read = 0

    def budgets() -> Iterator[tuple[int, float]]:
        nonlocal read
        for _ in range(4000):
            read += 1
            yield 5, 10.0

    assert in_flight(budgets(), 0.1, 512) == 512
    assert read == 171  # 171 x min(5, 3) = 513 >= 512


def test_process_bound_leaves_room_under_the_open_files_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With few files allowed, the bound leaves room for the run's own files."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 4096))
    assert process_bound() == 256 - 64
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100_000, 100_000))
    assert process_bound() == PROCESS_BOUND


def test_cli_concurrency_defaults_to_following_the_work(tmp_path: Path) -> None:
    """`run --help` says what the default does; no number is passed unless asked."""
    from click.testing import CliRunner

    from engine.cli import main

    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert "--concurrency N" in result.output
    assert f"up to {PROCESS_BOUND}" in result.output


def quiet() -> Latency:
    """Answer times of 10 ms, nothing queueing."""
    latency = Latency()
    for _ in range(40):
        latency.answered(0.01)
    latency.look(0.0)
    return latency


def test_sizer_starts_at_one_per_location_within_littles_number() -> None:
    """The first target is one record per location with records: at least 8, at most
    Little's number."""
    assert Sizer().look(0.0, little=512, locations=400, done=0, latency=quiet()) == 400
    assert Sizer().look(0.0, little=512, locations=3, done=0, latency=quiet()) == 8
    assert Sizer().look(0.0, little=100, locations=400, done=0, latency=quiet()) == 100


def test_sizer_keeps_a_doubling_only_when_it_pays() -> None:
    """Toward Little's number the target doubles; it stays doubled when the answers per
    second grew by a fifth, and goes back (and waits before trying again) when not."""
    latency, sizer = quiet(), Sizer()
    assert sizer.look(0.0, little=512, locations=50, done=0, latency=latency) == 50
    assert sizer.look(0.1, little=512, locations=50, done=500, latency=latency) == 100
    assert sizer.look(0.2, little=512, locations=50, done=1_500, latency=latency) == 100
    assert sizer.look(0.3, little=512, locations=50, done=2_500, latency=latency) == 200
    # 10,000/s again: the server is the bottleneck, 200 is no better than 100
    assert sizer.look(0.4, little=512, locations=50, done=3_500, latency=latency) == 100
    assert sizer.look(0.5, little=512, locations=50, done=4_500, latency=latency) == 100
    assert sizer.look(3.5, little=512, locations=50, done=34_500, latency=latency) == 200


def test_sizer_follows_less_work_down_and_shrinks_when_answers_queue() -> None:
    """Less work lowers the target at once; answers that queue shrink it (by half at most)."""
    latency, sizer = quiet(), Sizer()
    sizer.look(0.0, little=512, locations=400, done=0, latency=latency)
    assert sizer.look(0.1, little=120, locations=40, done=100, latency=latency) == 120
    for _ in range(8):
        latency.answered(0.05)  # even the fastest now waits 40 ms more: five times slower
    latency.look(0.2)
    assert sizer.look(0.2, little=120, locations=40, done=200, latency=latency) == 60


def test_queueing_compares_a_looks_fastest_answer_with_the_fastest_recent_one() -> None:
    """Answers that vary on their own are not queueing; answers that are all slower are.
    Believed after 32 answers, and 8 in the look; the fastest is forgotten two spans on."""
    latency = Latency()
    latency.look(0.0)
    for n in range(31):
        latency.answered(0.05 + (n % 10) * 0.01)  # 50 to 140 ms, nothing queueing
    latency.look(0.1)
    assert latency.queueing == 1.0  # too few answers yet
    for n in range(40):
        latency.answered(0.05 + (n % 10) * 0.01)
    latency.look(0.2)
    assert latency.queueing == 1.0
    for _ in range(7):
        latency.answered(0.3)
    latency.look(0.3)
    assert latency.queueing == 1.0  # too few answers in that look: the last one stands
    latency.answered(0.3)
    latency.look(0.4)
    assert latency.queueing == pytest.approx(6.0)  # even the fastest waited 250 ms
    latency.look(Latency.SPAN)
    for _ in range(8):
        latency.answered(0.3)
    latency.look(Latency.SPAN + 0.1)
    assert latency.queueing == pytest.approx(6.0)  # the span before still counts
    latency.look(2 * Latency.SPAN)
    for _ in range(8):
        latency.answered(0.3)
    latency.look(2 * Latency.SPAN + 0.1)
    assert latency.queueing == 1.0  # 300 ms is how fast it is now
