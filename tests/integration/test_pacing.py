"""How pacing adapts, run on virtual time: the engine's client against the sandbox's limits.

The server here is the sandbox's own rate limiter (:mod:`jobs.sandbox.limits`, fault switches
included) behind a transport that answers without HTTP, on a :class:`VirtualTimeLoop`: runs
of hundreds of requests over minutes of windows take milliseconds, and every time is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from engine import (
    Client,
    DailyLimitExhausted,
    LocationGates,
    Request,
    RequestError,
    Response,
    RetryPolicy,
)
from jobs.highlevel import read_rate
from jobs.sandbox import SandboxConfig, SandboxStats
from jobs.sandbox.limits import RateLimiter
from tests.fakes import run_virtual

LOC = "loc00000000000000001"


@dataclass
class SimServer:
    """A Transport answering from the sandbox's rate limits, ``latency`` seconds per request
    (half before it is counted, half after)."""

    config: SandboxConfig
    latency: float = 0.02
    stats: SandboxStats = field(default_factory=SandboxStats)
    log: list[tuple[float, str, int]] = field(default_factory=list)  # (arrival, location, status)

    def __post_init__(self) -> None:
        self.limits = RateLimiter(self.config, self.stats)

    def fill(self, location: str, n: int) -> None:
        """n requests of someone we cannot see (a killed process), admitted now."""
        for _ in range(n):
            self.limits.admit(location)

    async def send(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.latency / 2)
        admitted, headers = self.limits.admit(request.location_id)
        status = 201 if admitted else 429
        self.log.append((loop.time(), request.location_id, status))
        await asyncio.sleep(self.latency / 2)
        return Response(status=status, headers={k.lower(): v for k, v in headers.items()})

    async def aclose(self) -> None:
        pass

    def admitted(self, location: str = LOC) -> list[float]:
        return [t for t, loc, status in self.log if loc == location and status != 429]

    @property
    def refused(self) -> int:
        return sum(1 for _, _, status in self.log if status == 429)


@dataclass
class Run:
    server: SimServer
    client: Client
    elapsed: float
    failures: list[BaseException]

    def limit(self, location: str = LOC) -> int:
        return self.client.gates[location].limit


def simulate(
    *,
    records: int,
    locations: tuple[str, ...] = (LOC,),
    rate: tuple[int, float] = (100, 10.0),
    workers: int = 16,
    latency: float = 0.02,
    before: int = 0,
    **settings: Any,
) -> Run:
    """Send ``records`` requests per location through the engine's Client, ``workers`` at a
    time, round-robin; ``before`` requests of an unseen client fill each window first."""

    async def main() -> Run:
        loop = asyncio.get_running_loop()
        config = SandboxConfig(clock=loop.time, **{"daily_limit": 0, **settings})
        server = SimServer(config, latency=latency)
        for location in locations:
            server.fill(location, before)
        client = Client(
            transport=server,
            tokens=lambda location: "token",
            gates=LocationGates(*rate, clock=loop.time, sleep=anyio.sleep),
            read_rate=read_rate,
            policy=RetryPolicy(attempts=50),
        )
        todo: Iterator[str] = iter([loc for _ in range(records) for loc in locations])
        failures: list[BaseException] = []

        async def worker() -> None:
            for location in todo:
                request = Request(method="POST", url="http://sim/x", location_id=location)
                try:
                    await client.call(request)
                except (RequestError, DailyLimitExhausted) as exc:
                    failures.append(exc)

        started = loop.time()
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        return Run(server, client, loop.time() - started, failures)

    return run_virtual(main)


def bound(requests: int, limit: int, interval: float) -> float:
    """The least time the limit allows for ``requests`` at one location."""
    return requests / limit * interval


def per_window(times: list[float], start: float, interval: float, count: int) -> list[int]:
    return [
        sum(1 for t in times if start + k * interval <= t < start + (k + 1) * interval)
        for k in range(count)
    ]


# -- honest limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["sliding", "fixed"])
@pytest.mark.parametrize("told", [False, True])
def test_honest_limit_is_met_exactly_without_a_429(window: str, told: bool) -> None:
    """Learned from headers or told by --rate, sliding or fixed: no 429, ≤ 1.03x the bound."""
    settings: dict[str, Any] = {"rate_limit": 20, "rate_interval": 2.0, "window": window}
    if told:
        settings["advertise_limit"] = 0  # no rate headers: only --rate knows
    run = simulate(records=200, rate=(20, 2.0) if told else (100, 10.0), **settings)
    assert run.server.refused == 0
    assert run.failures == []
    assert run.elapsed <= 1.03 * bound(200, 20, 2.0)


# -- a token throttled below what it advertises -------------------------------------------------


def test_throttled_token_settles_on_its_real_limit() -> None:
    """Advertised 20/2s, enforced 8: the ceiling ends at 8, ≤ 1.08x the bound, ≤ 10% 429s."""
    run = simulate(records=200, rate_limit=20, rate_interval=2.0, throttle_below=8)
    assert run.failures == []
    assert run.limit() == 8
    assert run.elapsed <= 1.08 * bound(200, 8, 2.0)
    assert run.server.refused <= 0.10 * len(run.server.log)


@pytest.mark.parametrize("locations", [1, 8])
def test_throttled_token_costs_few_429s_after_the_first_burst(locations: int) -> None:
    """After the first burst, 429s come only from probes: a handful, however long the run."""
    ids = tuple(f"loc{n:017d}" for n in range(locations))
    run = simulate(
        records=300,
        locations=ids,
        workers=16 * locations,
        rate_limit=20,
        rate_interval=2.0,
        throttle_below=8,
    )
    assert run.failures == []
    for location in ids:
        assert run.limit(location) == 8
        refused = [t for t, loc, s in run.server.log if loc == location and s == 429]
        later = [t for t in refused if t > refused[0] + 2.0]
        assert len(later) <= 6  # one per probe: after 2, 4, 8, 16, 32... windows


# -- another client sharing the budget ----------------------------------------------------------


@pytest.mark.parametrize(("latency", "share"), [(0.02, 1), (0.05, 5), (0.2, 20)])
def test_recovers_within_three_windows_after_contention_ends(latency: float, share: int) -> None:
    """Another client takes part of the budget for 5 s (the slots that free while our
    answers are on their way back: more the slower they are); 3 windows after it stops we
    are back to ≥ 90% of the limit (≤ 20 per interval + a round trip, under the strict
    rule), and the ceiling was never lowered."""
    with capture_logs() as logs:
        run = simulate(
            records=200,
            latency=latency,
            rate_limit=20,
            rate_interval=2.0,
            contention=(40, 2.0),
            contention_after=4.0,
            contention_for=5.0,
        )
    assert run.failures == []
    assert run.server.stats.contention_admitted >= share  # it did take a share
    ours = run.server.admitted()
    ended = ours[0] + 4.0 + 5.0
    assert per_window(ours, ended + 4.0, 2.0, 1)[0] >= 18  # the third window after
    assert [e for e in logs if e["event"] == "pacing: ceiling lowered"] == []


def test_contention_during_the_whole_run_is_not_a_lower_limit() -> None:
    """A client that never stops costs its share of the budget, never the ceiling."""
    with capture_logs() as logs:
        run = simulate(records=120, rate_limit=20, rate_interval=2.0, contention=(8, 2.0))
    assert run.failures == []
    assert [e for e in logs if e["event"] == "pacing: ceiling lowered"] == []
    # we got what it left: about 12 per window
    assert run.elapsed <= 1.15 * bound(120, 12, 2.0)


# -- start-up and resume ------------------------------------------------------------------------


@pytest.mark.parametrize("bare", [False, True])
def test_window_full_at_start_is_waited_out_not_learned(bare: bool) -> None:
    """A killed process's requests still fill the window when we start: the 429 they cause
    (with counts, or with only Retry-After) costs a wait, never the limit."""
    settings: dict[str, Any] = {"rate_limit": 20, "rate_interval": 2.0}
    if bare:
        settings |= {"bare_429": True}
    run = simulate(records=100, rate=(20, 2.0), before=20, **settings)
    assert run.failures == []
    assert run.limit() == 20
    # The unseen 20 leave the window at 2 s; then ours go at the full rate.
    assert run.elapsed <= 2.0 + 1.03 * bound(100, 20, 2.0) + 0.5


def test_a_429_that_repeats_is_learned() -> None:
    """Unexplained 429s (no counts) that come back after one was waited out lower the limit."""
    run = simulate(
        records=120, rate=(20, 2.0), rate_limit=20, rate_interval=2.0, throttle_below=10,
        bare_429=True, advertise_limit=0,
    )  # fmt: skip
    assert run.failures == []
    assert run.limit() == 10
    assert run.elapsed <= 1.2 * bound(120, 10, 2.0)


# -- the daily budget ---------------------------------------------------------------------------


def test_daily_budget_is_never_overspent() -> None:
    """With many requests in flight, exactly the daily budget is sent, none past it."""
    run = simulate(records=100, workers=32, daily_limit=30, rate_limit=0)
    assert len(run.server.admitted()) == 30
    assert run.server.stats.daily_throttled == 0
    assert len(run.failures) == 70
    assert all(isinstance(f, DailyLimitExhausted) for f in run.failures)
