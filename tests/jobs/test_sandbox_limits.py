"""The sandbox's rate-limit switches: window kinds, another client, bare 429s, the CLI."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

import jobs.sandbox
from engine.cli import main
from jobs.sandbox import Sandbox, SandboxConfig, SandboxStats
from jobs.sandbox.limits import RateLimiter
from tests.fakes import FakeClock


def limiter(clock: FakeClock, **settings: Any) -> tuple[RateLimiter, SandboxStats]:
    stats = SandboxStats()
    return RateLimiter(SandboxConfig(clock=clock, **settings), stats), stats


def admitted(rl: RateLimiter, n: int, location: str = "L") -> list[bool]:
    return [rl.admit(location)[0] for _ in range(n)]


def test_sliding_window_frees_each_slot_one_interval_after_its_arrival() -> None:
    """Sliding: a slot frees exactly `interval` after the request that took it arrived."""
    clock = FakeClock()
    rl, _ = limiter(clock, rate_limit=2, rate_interval=10.0)
    assert admitted(rl, 1) == [True]
    clock.now = 6
    assert admitted(rl, 2) == [True, False]
    clock.now = 10  # the first left the window; the second is still in it
    assert admitted(rl, 2) == [True, False]


def test_fixed_window_resets_at_each_boundary() -> None:
    """Fixed: the count starts again at each multiple of `interval`, whatever came just before."""
    clock = FakeClock()
    rl, _ = limiter(clock, rate_limit=2, rate_interval=10.0, window="fixed")
    clock.now = 9.5
    assert admitted(rl, 3) == [True, True, False]
    clock.now = 10.0  # a new window: two more at once, half a second after the last two
    ok, headers = rl.admit("L")
    assert ok
    assert headers["X-RateLimit-Remaining"] == "1"
    assert admitted(rl, 2) == [True, False]


def test_fixed_window_retry_after_points_at_the_next_window() -> None:
    """A fixed window's 429 says to come back when the next window starts."""
    clock = FakeClock()
    rl, _ = limiter(clock, rate_limit=1, rate_interval=10.0, window="fixed", retry_after=True)
    clock.now = 3
    rl.admit("L")
    ok, headers = rl.admit("L")
    assert not ok
    assert headers["Retry-After"] == "7"


def test_bare_429_carries_retry_after_and_nothing_else() -> None:
    """With bare_429, a 429 has Retry-After and no X-RateLimit-* header; answers still do."""
    clock = FakeClock()
    rl, _ = limiter(clock, rate_limit=1, rate_interval=4.0, bare_429=True)
    ok, headers = rl.admit("L")
    assert ok
    assert headers["X-RateLimit-Remaining"] == "0"
    clock.now = 1.5
    assert rl.admit("L") == (False, {"Retry-After": "3"})


def test_no_rate_headers_still_limits() -> None:
    """advertise_limit=0 sends no burst headers, yet the limit applies."""
    clock = FakeClock()
    rl, _ = limiter(clock, rate_limit=1, advertise_limit=0, daily_limit=0)
    assert rl.admit("L") == (True, {})
    assert rl.admit("L") == (False, {})


def test_other_client_takes_its_share_then_stops() -> None:
    """The other client's evenly spaced requests count in the window while it runs, not after."""
    clock = FakeClock()
    rl, stats = limiter(
        clock,
        rate_limit=10,
        rate_interval=1.0,
        contention=(4, 1.0),
        contention_after=2.0,
        contention_for=3.0,
    )
    rl.admit("L")  # t=0: the location's first request starts the plan
    clock.now = 2.9  # the other client sent at 2.0, 2.25, 2.5, 2.75
    ok, headers = rl.admit("L")
    assert ok
    assert headers["X-RateLimit-Remaining"] == "5"  # 10 - its 4 - our 1
    assert (stats.contention_admitted, stats.contention_refused) == (4, 0)
    clock.now = 20.0  # it stopped at 5.0 (12 requests in all); its last left long ago
    assert rl.admit("L")[1]["X-RateLimit-Remaining"] == "9"
    assert stats.contention_admitted == 12


def test_other_client_is_refused_when_the_window_is_full() -> None:
    """The other client obeys the same window: its requests past the limit are refused."""
    clock = FakeClock()
    rl, stats = limiter(
        clock, rate_limit=3, rate_interval=10.0, contention=(10, 1.0), contention_after=0.01
    )
    assert admitted(rl, 3) == [True, True, True]  # t=0: ours; the window is full
    clock.now = 0.95  # it tried at 0.01, 0.11, ..., 0.91
    assert admitted(rl, 1) == [False]
    assert (stats.contention_admitted, stats.contention_refused) == (0, 10)


def test_other_client_spends_the_daily_budget_too() -> None:
    """The other client's admitted requests count against the location's daily budget."""
    clock = FakeClock()
    rl, stats = limiter(clock, rate_limit=0, daily_limit=5, contention=(3, 1.0))
    rl.admit("L")
    clock.now = 0.9
    ok, headers = rl.admit("L")
    assert ok
    assert headers["X-RateLimit-Daily-Remaining"] == "0"  # ours 2, theirs 3
    assert not rl.admit("L")[0]
    assert stats.daily_throttled == 1


async def test_bare_429_over_http() -> None:
    """Over HTTP, a bare 429 is the NestJS body with only Retry-After among the rate headers."""
    clock = FakeClock()
    async with (
        Sandbox(SandboxConfig(rate_limit=1, bare_429=True, clock=clock)) as sb,
        aiohttp.ClientSession() as http,
    ):
        token = sb.issue_token("L1")
        headers = {"Version": "2021-07-28", "Authorization": f"Bearer {token}"}
        url = f"{sb.url}/objects/?locationId=L1"
        async with http.get(url, headers=headers) as first:
            assert first.status == 200
        async with http.get(url, headers=headers) as second:
            assert second.status == 429
            assert second.headers["Retry-After"] == "10"
            assert not [h for h in second.headers if h.lower().startswith("x-ratelimit")]
        assert sb.stats.throttled == 1
        assert [r.at for r in sb.log] == [0.0, 0.0]  # arrival times, on the sandbox's clock


def test_cli_switches_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ghl-migrate sandbox` maps its rate-limit switches onto SandboxConfig."""
    seen: list[SandboxConfig] = []
    monkeypatch.setattr(jobs.sandbox, "serve", lambda config, **_: seen.append(config))
    args = ["sandbox", "--rate-limit", "20/2s", "--window", "fixed", "--bare-429"]
    args += ["--no-rate-headers", "--contention", "10/2s", "--contention-after", "3"]
    args += ["--contention-for", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.rate_limit, config.rate_interval, config.window) == (20, 2.0, "fixed")
    assert (config.bare_429, config.advertise_limit) == (True, 0)
    assert (config.contention, config.contention_after, config.contention_for) == (
        (10, 2.0),
        3.0,
        5.0,
    )
    result = CliRunner().invoke(main, ["sandbox"])
    assert result.exit_code == 0, result.output
    assert (seen[-1].window, seen[-1].contention, seen[-1].advertise_limit) == (
        "sliding",
        None,
        None,
    )
    assert seen[-1].contention_for == math.inf
    bad = CliRunner().invoke(main, ["sandbox", "--contention", "lots"])
    assert bad.exit_code == 2
    assert "invalid rate" in bad.output
