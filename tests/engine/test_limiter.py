"""The per-location limiter: the strict window rule, learning from headers and 429s, --rate."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DailyLimitExhausted
from engine.gates import LocationGates
from engine.limiter import LocationLimiter
from engine.rates import RateHint, parse_rate
from tests.fakes import FakeClock


def make(
    clock: FakeClock, limit: int, interval: float, *, answered: bool = True
) -> LocationLimiter:
    """A limiter; ``answered``: past the location's first answer (see the test of that)."""
    limiter = LocationLimiter(limit, interval, clock=clock.time, sleep=clock.sleep)
    if answered:
        limiter.observe(RateHint())
    return limiter


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


async def test_one_request_at_a_time_until_the_first_answer() -> None:
    """Until a location's first answer says what its budget is, one request at a time goes."""
    clock = FakeClock()
    limiter = make(clock, 100, 10, answered=False)
    first = await limiter.slot().__aenter__()
    assert not limiter.ready()
    limiter.observe(RateHint(limit=3, interval=1.0), slot=first)
    await first.__aexit__(None, None, None)
    assert await run_instant(limiter, clock, 2) == [0, 0]  # the answer said 3 per second


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


async def test_retry_after_blocks_every_start_until_then() -> None:
    """A 429's Retry-After pauses all new starts at the location, not just one request."""
    clock = FakeClock()
    limiter = make(clock, 10, 1)
    limiter.observe(RateHint(retry_after=30), throttled=True)
    starts = await run_instant(limiter, clock, 3)
    assert starts == [30, 30, 30]


async def test_throttle_without_retry_after_waits_one_interval() -> None:
    """A 429 with neither Retry-After nor rate headers pauses the location for one interval."""
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


# -- what a 429 means ---------------------------------------------------------------------------


async def burst(limiter: LocationLimiter, answers: list[tuple[RateHint, bool]]) -> None:
    """Send len(answers) requests at once, then answer them in order (hint, throttled)."""
    slots = [await limiter.slot().__aenter__() for _ in answers]
    for slot, (hint, throttled) in zip(slots, answers, strict=True):
        limiter.observe(hint, throttled=throttled, slot=slot)
        await slot.__aexit__(None, None, None)


def ok(**hint: int) -> tuple[RateHint, bool]:
    return RateHint(**hint), False


def refused(**hint: float) -> tuple[RateHint, bool]:
    return RateHint(**hint), True  # type: ignore[arg-type]


async def test_throttled_token_settles_on_what_the_server_admitted() -> None:
    """A 429 while the server reports room sets the ceiling to what its window held."""
    clock = FakeClock()
    limiter = make(clock, 20, 2)
    # 17 sent at once; the server admits 8 of them and refuses the rest, reporting
    # X-RateLimit-Remaining 12 of the 20 it advertises.
    await burst(
        limiter,
        [ok(limit=20, remaining=20 - n) for n in range(1, 9)]
        + [refused(limit=20, remaining=12)] * 9,
    )
    assert limiter.limit == 8
    limiter.observe(RateHint(limit=20, remaining=20))  # the headers alone never raise it
    assert limiter.limit == 8


async def test_a_burst_of_429s_counts_as_one_signal() -> None:
    """429s to requests already in flight when the first 429 arrived lower the ceiling once."""
    clock = FakeClock()
    limiter = make(clock, 20, 2)
    await burst(
        limiter,
        [refused(limit=20, remaining=12)]
        + [ok(limit=20, remaining=11)] * 3
        + [refused(limit=20, remaining=12)] * 10,
    )
    assert limiter.limit == 8  # not 8 minus one per further 429


async def test_lone_429_without_rate_headers_is_waited_out_not_believed() -> None:
    """The first unexplained 429 waits one interval (or Retry-After) and keeps the limit."""
    clock = FakeClock()
    limiter = make(clock, 10, 4)
    await burst(limiter, [refused()] * 3)
    assert limiter.limit == 10
    assert await run_instant(limiter, clock, 10) == [4] * 10
    limiter = make(clock, 10, 4)
    await burst(limiter, [refused(retry_after=1.5)])
    assert limiter.limit == 10
    assert await run_instant(limiter, clock, 1) == [clock.now]  # already waited out
    assert clock.sleeps[-1] == 1.5


async def test_repeated_429_lowers_to_what_the_window_admitted() -> None:
    """An unexplained 429 after one was waited out sets the ceiling to our admitted count."""
    clock = FakeClock()
    limiter = make(clock, 10, 4)
    await burst(limiter, [ok()] * 3 + [refused()] * 3)  # waited out: 4 s
    assert limiter.limit == 10
    await clock.sleep(4)
    await burst(limiter, [ok()] * 3 + [refused()] * 2 + [ok()] + [refused()])
    assert limiter.limit == 4  # three, then one more of the burst got through


async def test_429_while_others_share_the_budget_is_not_a_lower_limit() -> None:
    """When an answer showed another client in the last two windows, a 429 keeps the limit."""
    clock = FakeClock()
    limiter = make(clock, 10, 2)
    # Our one request counted, yet 6 used: someone else spends 5 of this budget.
    await burst(limiter, [ok(limit=10, remaining=4)])
    await clock.sleep(1)
    await burst(limiter, [refused(limit=10, remaining=0)] * 2)
    await clock.sleep(2)
    await burst(limiter, [refused(limit=10, remaining=0)])
    assert limiter.limit == 10


async def test_a_full_window_that_is_not_ours_is_another_clients_share() -> None:
    """429s saying the window is full, when our admitted requests do not fill it, are
    another client's share, however often they come: never a lower limit."""
    clock = FakeClock()
    limiter = make(clock, 10, 2)
    for _ in range(3):
        await burst(limiter, [ok(limit=10, remaining=5)] * 2 + [refused(limit=10, remaining=0)] * 8)
        await clock.sleep(2)
    assert limiter.limit == 10


# -- others' requests, peeks ---------------------------------------------------------------------


async def test_remaining_below_our_count_books_others_usage() -> None:
    """Fewer left than our own count means others' requests: they hold their slots."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    limiter.observe(RateHint(remaining=2))
    assert await run_instant(limiter, clock, 2) == [0, 0]
    assert not limiter.ready()


async def test_a_lone_peek_recounts_others() -> None:
    """When only others' requests fill the window, one request goes after interval/8; its
    answer counts them again, and the slots they left are used at once."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    limiter.observe(RateHint(limit=10, remaining=2))
    await run_instant(limiter, clock, 2)
    async with limiter.slot() as slot:
        assert clock.now == 1.25
        limiter.observe(RateHint(limit=10, remaining=7), slot=slot)  # theirs are gone
    assert await run_instant(limiter, clock, 7) == [1.25] * 7


async def test_refused_peeks_back_off_and_never_lower_the_limit() -> None:
    """A peek answered 429 doubles the wait for the next one and leaves the limit alone."""
    clock = FakeClock()
    limiter = make(clock, 10, 8)
    limiter.observe(RateHint(limit=10, remaining=0))
    peeks = []
    for _ in range(4):
        async with limiter.slot() as slot:
            peeks.append(clock.now)
            limiter.observe(RateHint(limit=10, remaining=0), throttled=True, slot=slot)
    assert peeks == [1, 3, 7, 15]  # 1/8 of the window, then 2/8, 4/8, a whole window
    assert limiter.limit == 10


async def test_remaining_above_prediction_changes_nothing() -> None:
    """A higher remaining count than predicted never adds budget."""
    clock = FakeClock()
    limiter = make(clock, 2, 10)
    limiter.observe(RateHint(remaining=50))
    assert await run_instant(limiter, clock, 3) == [0, 0, 10]


async def test_negative_remaining_counts_as_zero() -> None:
    """A negative remaining count is treated as none left: only a peek may go."""
    clock = FakeClock()
    limiter = make(clock, 3, 10)
    limiter.observe(RateHint(remaining=-4))
    assert await run_instant(limiter, clock, 1) == [1.25]


# -- probing back up ----------------------------------------------------------------------------


async def paced(
    limiter: LocationLimiter, clock: FakeClock, n: int, *, real: int, advertised: int = 10
) -> tuple[list[float], list[float]]:
    """Send n requests as fast as the limiter lets, each answered at once by a server that
    admits ``real`` per 1 s window (by arrival) and reports its count against ``advertised``.
    Returns the admitted and the refused start times."""
    admitted: list[float] = []
    refused: list[float] = []

    async def one() -> None:
        async with limiter.slot() as slot:
            held = sum(1 for s in admitted if s > clock.now - 1)
            refuse = held >= real
            (refused if refuse else admitted).append(clock.now)
            remaining = advertised - held - (not refuse)
            limiter.observe(
                RateHint(limit=advertised, remaining=remaining), throttled=refuse, slot=slot
            )

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return admitted, refused


def per_window(starts: list[float], interval: float) -> list[int]:
    counts: list[int] = [0] * (int(max(starts) // interval) + 1)
    for start in starts:
        counts[int(start // interval)] += 1
    return counts


async def throttled_to_four(limiter: LocationLimiter) -> None:
    """10 sent at once; the server (advertising 10) admits 4 and refuses the rest."""
    await burst(
        limiter,
        [ok(limit=10, remaining=10 - n) for n in range(1, 5)]
        + [refused(limit=10, remaining=6)] * 6,
    )
    assert limiter.limit == 4


async def test_ceiling_probes_back_up_after_a_quiet_period() -> None:
    """After two quiet windows the ceiling rises one request at a time to the advertised
    limit, each level confirmed before the next."""
    clock = FakeClock()
    limiter = make(clock, 10, 1)
    await throttled_to_four(limiter)
    admitted, refused = await paced(limiter, clock, 40, real=10)
    counts = per_window(admitted, 1.0)
    assert counts[:2] == [0, 4]  # two quiet windows: the refused burst's, and one more
    assert counts[2] > 4  # then up, one level per confirmed answer
    assert max(counts) == 10
    assert refused == []
    assert limiter.limit == 10


async def test_failed_probe_returns_to_the_confirmed_level_and_waits_longer() -> None:
    """A probe's 429 puts the ceiling back without a pause; the next probe waits twice as long."""
    clock = FakeClock()
    limiter = make(clock, 10, 1)
    await throttled_to_four(limiter)
    admitted, refusals = await paced(limiter, clock, 60, real=4)
    assert limiter.limit == 4
    assert [math.floor(t) for t in refusals] == [2, 6, 14]  # 2 windows after the cut, +4, +8
    counts = per_window(admitted, 1.0)
    assert counts[1:-1] == [4] * (len(counts) - 2)  # never below the level that works


# -- the daily budget ---------------------------------------------------------------------------


async def test_daily_budget_is_spent_by_count() -> None:
    """No more is sent than the last daily remaining, less what was in flight then."""
    clock = FakeClock()
    limiter = make(clock, 100, 10)
    first = [await limiter.slot().__aenter__() for _ in range(3)]
    limiter.observe(RateHint(daily_remaining=3), slot=first[0])  # 2 others in flight
    extra = await limiter.slot().__aenter__()  # 3 - 2 = 1 more
    assert not limiter.ready()
    for slot in [first[0], extra]:
        await slot.__aexit__(None, None, None)
    assert not limiter.ready()  # the two in flight will say what is left
    limiter.observe(RateHint(daily_remaining=1), slot=first[1])
    await first[1].__aexit__(None, None, None)
    assert not limiter.ready()  # 1 left, 1 in flight
    limiter.observe(RateHint(daily_remaining=1), slot=first[2])  # that one was not counted
    await first[2].__aexit__(None, None, None)
    assert limiter.ready()


async def test_daily_count_lost_to_failed_requests_lets_one_find_out() -> None:
    """When the requests that would report the daily count fail, one request at a time goes."""
    clock = FakeClock()
    limiter = make(clock, 100, 10)
    slots = [await limiter.slot().__aenter__() for _ in range(2)]
    limiter.observe(RateHint(daily_remaining=2), slot=slots[0])
    await slots[0].__aexit__(None, None, None)
    await slots[1].__aexit__(None, None, None)  # a reset: no answer
    assert limiter.ready()
    probe = await limiter.slot().__aenter__()
    assert not limiter.ready()
    await probe.__aexit__(None, None, None)


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


async def test_daily_429_is_not_a_burst_signal() -> None:
    """A 429 that says the daily budget is spent leaves the burst ceiling alone."""
    clock = FakeClock()
    limiter = make(clock, 10, 10)
    await burst(limiter, [refused(limit=10, remaining=9, daily_remaining=0)])
    assert limiter.limit == 10
    assert limiter.exhausted


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


async def test_a_probe_answered_without_a_count_does_not_stall_the_location() -> None:
    """A probe whose answer carries no rate headers (a proxy's 5xx page, a reset) is given
    up, never waited on: the location goes on at the level that works."""
    clock = FakeClock()
    limiter = make(clock, 10, 1)
    await throttled_to_four(limiter)
    starts: list[float] = []

    async def blank() -> None:
        async with limiter.slot():
            starts.append(clock.now)
            limiter.observe(RateHint())  # answered, but not a word about the budget

    with anyio.fail_after(10):  # real seconds: a stalled location never ends
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(blank)
    assert len(starts) == 30
    assert max(per_window(starts, 1.0)) <= 5  # the confirmed level, and at most one probe
