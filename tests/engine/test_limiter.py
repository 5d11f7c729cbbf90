"""The per-location limiter: the strict window rule, learning from headers and 429s, --rate."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.limiter import (
    DailyLimitExhausted,
    LocationGates,
    LocationLimiter,
    RateHint,
    parse_rate,
)
from tests.fakes import FakeClock


def make(clock: FakeClock, limit: int, interval: float) -> LocationLimiter:
    return LocationLimiter(limit, interval, clock=clock.time, sleep=clock.sleep)


async def instant(limiter: LocationLimiter, clock: FakeClock, starts: list[float]) -> None:
    async with limiter.slot():
        starts.append(clock.now)


async def run_instant(limiter: LocationLimiter, clock: FakeClock, n: int) -> list[float]:
    starts: list[float] = []
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(instant, limiter, clock, starts)
    return starts


def busiest_window(spans: list[tuple[float, float]], interval: float) -> int:
    """Most requests whose [start, end] meets one window [a, a + interval)."""
    # The count only drops just after some end, so windows starting at an end (or a
    # start, for good measure) include the maximum.
    candidates = {e for _, e in spans} | {s for s, _ in spans}
    return max(
        (sum(1 for s, e in spans if e >= a and s < a + interval) for a in candidates),
        default=0,
    )


# -- the window rule ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, database=None)
@given(
    limit=st.integers(1, 5),
    interval=st.sampled_from([0.5, 1.0, 2.5, 10.0]),
    # Multiples of 1/4 keep fake-clock arithmetic exact, so window edges are tested exactly.
    requests=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 16)).map(lambda t: (t[0] / 4, t[1] / 4)),
        min_size=1,
        max_size=25,
    ),
)
def test_no_window_ever_holds_more_than_limit(
    limit: int, interval: float, requests: list[tuple[float, float]]
) -> None:
    """No span of `interval` meets more than `limit` requests, counted from send to response."""
    clock = FakeClock()
    limiter = make(clock, limit, interval)
    spans: list[tuple[float, float]] = []

    async def one(offset: float, duration: float) -> None:
        await clock.sleep(offset)
        async with limiter.slot():
            start = clock.now
            await clock.sleep(duration)
            spans.append((start, clock.now))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for offset, duration in requests:
                tg.start_soon(one, offset, duration)

    anyio.run(main)
    assert len(spans) == len(requests)
    assert busiest_window(spans, interval) <= limit


async def test_starts_at_once_while_under_limit() -> None:
    """Up to `limit` requests start immediately without any wait."""
    clock = FakeClock()
    starts = await run_instant(make(clock, 3, 10), clock, 3)
    assert starts == [0, 0, 0]
    assert clock.sleeps == []


@pytest.mark.parametrize(("n", "limit"), [(1, 5), (5, 5), (6, 5), (23, 5), (40, 10)])
async def test_throughput_is_limit_per_interval(n: int, limit: int) -> None:
    """With instant responses, N requests take ceil(N/limit)-1 intervals, not twice that."""
    clock = FakeClock()
    starts = await run_instant(make(clock, limit, 10), clock, n)
    assert clock.now == pytest.approx((math.ceil(n / limit) - 1) * 10)
    for batch in range(math.ceil(n / limit)):
        assert starts[batch * limit : (batch + 1) * limit] == [batch * 10] * len(
            starts[batch * limit : (batch + 1) * limit]
        )


async def test_slot_is_held_until_response_then_for_interval() -> None:
    """A slow request blocks the slot until its response plus one interval."""
    clock = FakeClock()
    limiter = make(clock, 1, 10)
    async with limiter.slot():
        await clock.sleep(7)
    starts = await run_instant(limiter, clock, 1)
    assert starts == [17]


async def test_failed_request_still_counts() -> None:
    """A request that raised inside its slot is recorded as a completion."""
    clock = FakeClock()
    limiter = make(clock, 1, 10)
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("connection reset")
    assert await run_instant(limiter, clock, 1) == [10]


async def test_waiters_are_served_in_arrival_order() -> None:
    """Waiters start in the order they asked for a slot."""
    clock = FakeClock()
    limiter = make(clock, 1, 1)
    order: list[int] = []

    async def one(i: int) -> None:
        async with limiter.slot():
            order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert order == list(range(6))


# -- learning from responses --------------------------------------------------------------------


async def test_headers_adopt_limit_and_interval() -> None:
    """An advertised limit and interval replace the --rate guess."""
    clock = FakeClock()
    limiter = make(clock, 5, 10)
    limiter.observe(RateHint(limit=100, interval=1.0))
    assert (limiter.limit, limiter.interval) == (100, 1.0)
    starts = await run_instant(limiter, clock, 101)
    assert starts.count(0) == 100
    assert starts[-1] == 1.0


async def test_throttle_lowers_ceiling_that_headers_cannot_raise() -> None:
    """A 429 sets a ceiling below the used count; advertised limits never raise it again."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    await run_instant(limiter, clock, 10)
    limiter.observe(RateHint(limit=10), throttled=True)
    assert limiter.limit == 9
    limiter.observe(RateHint(limit=100))
    assert limiter.limit == 9
    limiter.observe(RateHint(limit=4))
    assert limiter.limit == 4
    limiter.observe(RateHint(limit=100))
    assert limiter.limit == 9


async def test_throttle_at_most_halves_the_limit() -> None:
    """A 429 seen with an almost empty window lowers the limit by half, not to 1."""
    clock = FakeClock()
    limiter = make(clock, 100, 10)
    await run_instant(limiter, clock, 1)
    limiter.observe(RateHint(), throttled=True)
    assert limiter.limit == 50


async def test_throttle_keeps_limit_of_one() -> None:
    """A 429 never takes the limit below one request per interval."""
    clock = FakeClock()
    limiter = make(clock, 1, 10)
    limiter.observe(RateHint(), throttled=True)
    limiter.observe(RateHint(), throttled=True)
    assert limiter.limit == 1


async def test_retry_after_blocks_every_start_until_then() -> None:
    """A 429's Retry-After pauses all new starts at the location, not just one request."""
    clock = FakeClock()
    limiter = make(clock, 10, 1)
    limiter.observe(RateHint(retry_after=30), throttled=True)
    starts = await run_instant(limiter, clock, 3)
    assert starts == [30, 30, 30]


async def test_throttle_without_retry_after_waits_one_interval() -> None:
    """A 429 without Retry-After pauses the location for one interval."""
    clock = FakeClock()
    limiter = make(clock, 10, 4)
    limiter.observe(RateHint(), throttled=True)
    assert await run_instant(limiter, clock, 1) == [4]


async def test_penalize_blocks_new_starts() -> None:
    """penalize(s) holds back new starts for s seconds from now."""
    clock = FakeClock(start=5)
    limiter = make(clock, 10, 1)
    limiter.penalize(12)
    assert await run_instant(limiter, clock, 2) == [17, 17]


async def test_remaining_below_prediction_books_phantom_usage() -> None:
    """When the server reports fewer left than we predict, the gap counts as used."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    limiter.observe(RateHint(remaining=2))
    starts = await run_instant(limiter, clock, 3)
    assert starts == [0, 0, 10]


async def test_remaining_above_prediction_changes_nothing() -> None:
    """A higher remaining count than predicted never adds budget."""
    clock = FakeClock()
    limiter = make(clock, 2, 10)
    limiter.observe(RateHint(remaining=50))
    assert await run_instant(limiter, clock, 3) == [0, 0, 10]


async def test_negative_remaining_counts_as_zero() -> None:
    """A negative remaining count is treated as none left."""
    clock = FakeClock()
    limiter = make(clock, 3, 10)
    limiter.observe(RateHint(remaining=-4))
    assert await run_instant(limiter, clock, 1) == [10]


async def test_daily_budget_spent_raises() -> None:
    """After daily_remaining == 0, slot() raises DailyLimitExhausted without waiting."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    limiter.observe(RateHint(daily_remaining=0))
    assert limiter.exhausted
    with pytest.raises(DailyLimitExhausted):
        async with limiter.slot():
            pytest.fail("must not start")
    assert clock.sleeps == []


async def test_daily_budget_spent_releases_waiters_with_error() -> None:
    """Waiters already queued raise DailyLimitExhausted once the budget is known spent."""
    clock = FakeClock()
    limiter = make(clock, 1, 10)
    release = anyio.Event()
    outcomes: list[str] = []

    async def holder() -> None:
        async with limiter.slot():
            await release.wait()

    async def waiter() -> None:
        try:
            async with limiter.slot():
                outcomes.append("started")
        except DailyLimitExhausted:
            outcomes.append("exhausted")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        limiter.observe(RateHint(daily_remaining=0))
        release.set()
    assert outcomes == ["exhausted", "exhausted"]


# -- locations ----------------------------------------------------------------------------------


async def test_gates_isolate_locations() -> None:
    """A throttled location waits while another location keeps its full budget."""
    clock = FakeClock()
    gates = LocationGates(2, 10, clock=clock.time, sleep=clock.sleep)
    gates["a"].observe(RateHint(retry_after=60), throttled=True)
    assert gates["b"].limit == 2
    assert await run_instant(gates["b"], clock, 2) == [0, 0]
    assert await run_instant(gates["a"], clock, 1) == [60]


async def test_gates_create_one_limiter_per_location() -> None:
    """The same location id always maps to the same limiter, created on first use."""
    gates = LocationGates(5, 1)
    assert len(gates) == 0
    assert "x" not in gates
    assert gates["x"] is gates["x"]
    assert gates["y"] is not gates["x"]
    assert len(gates) == 2
    assert sorted(gates) == ["x", "y"]


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelled_head_waiting_on_completion_does_not_stall_others() -> None:
    """Cancelling the first waiter (blocked on in-flight requests) lets the next one proceed."""
    clock = FakeClock(auto=False)
    limiter = make(clock, 1, 10)
    release = anyio.Event()
    starts: list[str] = []

    async def holder() -> None:
        async with limiter.slot():
            await release.wait()

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with limiter.slot():
                starts.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "second", second)
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert starts == []  # the slot stays used for one interval after the response
        clock.advance(10)
    assert starts == ["second"]


async def test_cancelled_head_sleeping_on_time_does_not_stall_others() -> None:
    """Cancelling a waiter asleep until a slot frees hands the turn to the next waiter."""
    clock = FakeClock(auto=False)
    limiter = make(clock, 1, 10)
    starts: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with limiter.slot():
                starts.append(name)

    async with limiter.slot():
        pass
    scopes = [anyio.CancelScope() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for name, scope in zip("abc", scopes, strict=True):
            tg.start_soon(waiter, name, scope)
            await anyio.wait_all_tasks_blocked()
        scopes[0].cancel()  # the head, asleep until t=10
        scopes[1].cancel()  # queued behind it
        await anyio.wait_all_tasks_blocked()
        clock.advance(10)
    assert starts == ["c"]


async def test_cancelled_request_in_flight_still_counts() -> None:
    """A request cancelled while in flight may have reached the server, so it counts."""
    clock = FakeClock()
    limiter = make(clock, 1, 10)
    with anyio.CancelScope() as scope:
        async with limiter.slot():
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    assert await run_instant(limiter, clock, 1) == [10]


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/10s", (100, 10.0)),
        ("25/10s", (25, 10.0)),
        ("50/1s", (50, 1.0)),
        ("600/1m", (600, 60.0)),
        ("100/10", (100, 10.0)),
        ("100/500ms", (100, 0.5)),
        (" 10 / 2.5s ", (10, 2.5)),
        ("5/s", (5, 1.0)),
        ("1/1h", (1, 3600.0)),
    ],
)
def test_parse_rate_accepts(text: str, expected: tuple[int, float]) -> None:
    """--rate accepts LIMIT/INTERVAL with an optional ms, s, m or h unit."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "100", "100/", "/10s", "0/10s", "-1/10s", "100/0s", "100/0ms", "1.5/10s", "10/10d", "a/b"],
)
def test_parse_rate_rejects(text: str) -> None:
    """--rate rejects malformed text, a limit below 1 and a zero interval."""
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


@pytest.mark.parametrize(("limit", "interval"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, math.inf)])
def test_limiter_rejects_bad_settings(limit: int, interval: float) -> None:
    """A limiter needs a limit of at least 1 and a positive, finite interval."""
    with pytest.raises(ValueError, match="rate"):
        LocationLimiter(limit, interval)
