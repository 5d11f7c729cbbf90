"""Rate limits, daily budgets, stopping, and token hygiene, end to end against the sandbox."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from engine import NOT_RUN, Outcome, Request, Response, RunConfig, Runner
from engine.console import configure_logging
from jobs.associations import AssociationsJob
from jobs.sandbox import Sandbox

from .helpers import run_against, statuses, writes

LOC_A, LOC_B = "locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB"


def job_rows(location: str, count: int) -> str:
    """``count`` creates for one location, each with its own labels (no duplicate pairs)."""
    return "".join(
        f"{location},k{i},custom_objects.property,contact,P{i},C{i}\n" for i in range(count)
    )


HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)


async def test_known_limit_is_never_exceeded(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """A location limited to N per window, with the client told N, never gets a 429."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 12))
    async with sandbox_factory(rate_limit=5, rate_interval=0.2) as sb:
        result = await run_against(sb, job, rate=(5, 0.2))
        assert statuses(result) == ["created"] * 12
        assert sb.stats.throttled == 0
        assert result.summary.rate_limited == 0


async def test_unknown_limit_is_learned_from_headers(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """With the default --rate, the client adopts the advertised limit and earns no 429."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 12))
    async with sandbox_factory(rate_limit=5, rate_interval=0.2) as sb:
        result = await run_against(sb, job)
        assert statuses(result) == ["created"] * 12
        assert sb.stats.throttled == 0


async def test_lower_real_limit_is_learned_from_429s(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """Headers advertising more than the real limit cost a few 429s, then the client adapts."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 20))
    async with sandbox_factory(rate_limit=10, rate_interval=0.2, throttle_below=4) as sb:
        result = await run_against(sb, job)
        assert statuses(result) == ["created"] * 20
        assert sb.stats.throttled > 0
        assert result.summary.rate_limited == sb.stats.throttled
        # Adapted: after the first burst, only a probe now and then meets a 429.
        refused = [r.at for r in sb.log if r.status == 429]
        assert len([t for t in refused if t > refused[0] + 0.2]) <= 2


async def test_one_throttled_location_does_not_slow_another(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """Each location has its own budget: B finishes although A is throttled."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 8) + job_rows(LOC_B, 3))
    async with sandbox_factory(rate_limit=3, rate_interval=0.3) as sb:
        result = await run_against(sb, job)
        assert set(statuses(result)) == {"created"}
        a_times = [r for r in sb.log if r.location_id == LOC_A]
        b_done = max(i for i, r in enumerate(sb.log) if r.location_id == LOC_B)
        # B's last request arrives before most of A's: it was not queued behind A.
        assert b_done < len(sb.log) - len(a_times) // 2


class _Always429:
    """A transport whose every answer is 429 with a zero Retry-After."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, request: Request) -> Response:
        self.sent += 1
        return Response(status=429, headers={"retry-after": "0"}, body=b'{"message":"slow"}')

    async def aclose(self) -> None:
        pass


async def test_a_location_that_always_answers_429_ends_failed(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """429 forever ends within the attempt budget, reported failed, never a hang."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 3))
    transport = _Always429()
    result = await run_against(sandbox, job, transport=transport, rate=(100, 0.05))
    assert statuses(result) == ["failed"] * 3
    assert result.outcomes[0].http_status == 429
    assert "gave up after 5 attempts" in result.outcomes[0].error
    assert transport.sent == 5  # the location read failed once for all three records


async def test_spent_daily_budget_leaves_not_run_rows_and_others_go_on(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """A location whose daily budget runs out stops; its rest are not_run, others finish."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 10) + job_rows(LOC_B, 2))
    async with sandbox_factory(daily_limit=5) as sb:
        result = await run_against(sb, job, concurrency=1)
        a = [o for o in result.outcomes if o.record.location_id == LOC_A]
        b = [o for o in result.outcomes if o.record.location_id == LOC_B]
        assert [o.status for o in b] == ["created", "created"]
        assert {o.status for o in a} == {"created", NOT_RUN}
        assert sum(o.status == NOT_RUN for o in a) == 10 - writes(sb) + 2
        assert all("daily" in o.error for o in a if o.status == NOT_RUN)
        assert result.summary.exit_code == 1


async def test_daily_budget_is_spent_by_count_with_many_in_flight(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """With 16 requests in flight at once, not one is sent past the daily budget."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 40))
    async with sandbox_factory(daily_limit=20) as sb:
        result = await run_against(sb, job, concurrency=16)
        assert sb.stats.daily_throttled == 0
        assert sb.stats.throttled == 0
        assert writes(sb) == 17  # 20 less the three reads
        assert statuses(result).count(NOT_RUN) == 23


async def test_stop_leaves_one_row_per_record(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """Stopping mid-run reports the unsent records not_run and rewrites one row each."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 30) + job_rows(LOC_B, 30))
    report = tmp_path / "out.csv"
    runner: Runner

    class StopAfterFive:
        def __init__(self) -> None:
            self.seen = 0

        def started(self, total: int, done: int) -> None:
            pass

        def finished(self, outcome: Outcome) -> None:
            self.seen += 1
            if self.seen == 5:
                runner.stop()

    runner = Runner(
        AssociationsJob(base_url=sandbox.url),
        RunConfig(job_files=(job,), report=str(report), concurrency=2),
        tokens=sandbox.issue_token,
        observer=StopAfterFive(),
    )
    result = await runner.run()
    assert result.summary.stopped
    assert len(result.outcomes) == 60
    assert 5 <= sum(o.status == "created" for o in result.outcomes) <= 7
    assert sum(o.status == NOT_RUN for o in result.outcomes) >= 53
    lines = report.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 61
    assert writes(sandbox) == sum(o.status == "created" for o in result.outcomes)


async def test_tokens_never_leak_and_never_cross_locations(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """With faults on, no token shows in logs or report, and each goes to its own location."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 10) + job_rows(LOC_B, 10))
    logs = io.StringIO()
    configure_logging("json", verbose=True, stream=logs)
    report = tmp_path / "out.jsonl"
    async with sandbox_factory(fail_rate=0.2, reset_rate=0.1, seed=7) as sb:
        result = await run_against(sb, job, report=str(report), timeout=5)
        tokens = [sb.issue_token(LOC_A), sb.issue_token(LOC_B)]
        # Requests failed by an injected fault never get their location resolved.
        seen = [r for r in sb.log if r.token_location is not None and r.location_id is not None]
        assert len(seen) > 20
        assert all(r.token_location == r.location_id for r in seen)
        assert sb.stats.cross_location_token_uses == 0
    text = logs.getvalue() + report.read_text(encoding="utf-8") + repr(result)
    assert "retry" in logs.getvalue()  # the faults were logged...
    for token in tokens:
        assert token not in text  # ...without a token


async def test_stop_does_not_wait_for_the_rate_window(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str]
) -> None:
    """Records queued behind a long rate window are released at once when the run stops."""
    job = write_job("jobs.csv", HEADER + job_rows(LOC_A, 10))
    runner: Runner

    class StopAtFirst:
        def started(self, total: int, done: int) -> None:
            pass

        def finished(self, outcome: Outcome) -> None:
            runner.stop()

    async with sandbox_factory(rate_limit=4, rate_interval=30) as sb:
        runner = Runner(
            AssociationsJob(base_url=sb.url),
            RunConfig(job_files=(job,), rate=(4, 30.0)),
            tokens=sb.issue_token,
            observer=StopAtFirst(),
        )
        result = await runner.run()
    assert result.summary.elapsed < 10  # not the 30 s window
    assert statuses(result).count("not_run") >= 9
    assert sb.stats.throttled == 0
