"""A host that cannot be reached: the run stops early with one message, sends nothing more,
counts only what reached the server, and still reports every record."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from engine import (
    NOT_RUN,
    AiohttpTransport,
    Request,
    Response,
    RetryPolicy,
    RunConfig,
    RunResult,
)
from engine.cli import main
from engine.console import configure_logging
from jobs.api import run_job
from jobs.sandbox import Sandbox
from tests.fakes import FakeResolver

from .helpers import run_against

TOKEN = "tok-unreachable-SECRET"
HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)
ATTEMPTS = 3  # --max-attempts of these runs
#: short waits in case stamina's testing mode (instant retries, see conftest) is ever off
POLICY = RetryPolicy(attempts=ATTEMPTS, wait_initial=0.01, wait_max=0.01, wait_jitter=0)


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def job_text(locations: int, per_location: int) -> str:
    """Creates over many locations, each row with its own labels (no duplicate pairs)."""
    return HEADER + "".join(
        f"loc{n:03d},k{i},custom_objects.property,contact,P{i},C{i}\n"
        for n in range(locations)
        for i in range(per_location)
    )


async def run_at(
    base_url: str, job: str, transport: AiohttpTransport | None = None, **config: object
) -> RunResult:
    return await run_job(
        RunConfig(job_files=(job,), **config),  # type: ignore[arg-type]
        base_url=base_url,
        tokens=lambda location: TOKEN,
        transport=transport,
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def test_nothing_listening_stops_early_and_sends_nothing(
    write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A port with nothing listening: one give-up stops the run; every record is not_run
    with the reason, nothing counts as sent, connection failures are counted, exit code 2."""
    port = free_port()
    job = write_job("jobs.csv", job_text(locations=100, per_location=2))
    report = tmp_path / "out.csv"
    log = io.StringIO()
    configure_logging("json", stream=log)
    concurrency = 8

    result = await run_at(
        f"http://127.0.0.1:{port}",
        job,
        report=str(report),
        concurrency=concurrency,
        retry=POLICY,
    )

    reason = f"not sent: cannot reach 127.0.0.1:{port}: connection refused"
    summary = result.summary
    assert [(o.status, o.error) for o in result.outcomes] == [(NOT_RUN, reason)] * 200
    assert [(r["outcome"], r["error"]) for r in read_rows(report)] == [(NOT_RUN, reason)] * 200
    assert summary.unreachable == f"cannot reach 127.0.0.1:{port}: connection refused"
    assert (summary.requests, summary.transport_errors, summary.exit_code) == (0, 0, 2)
    # Stopped at the first give-up: at most one round of attempts per worker, not 200 x 3.
    assert ATTEMPTS <= summary.connect_failures <= concurrency * ATTEMPTS
    assert summary.stopped is True
    assert summary.elapsed < 5
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    loud = [line for line in lines if line["level"] in ("warning", "error")]
    assert [line["event"] for line in loud] == [
        f"cannot reach 127.0.0.1:{port}: connection refused; stopping the run"
    ]
    assert (loud[0]["host"], loud[0]["cause"]) == (f"127.0.0.1:{port}", "connection refused")


async def test_a_name_that_does_not_resolve_stops_with_a_dns_message(
    write_job: Callable[[str, str], str],
) -> None:
    """An unresolvable host (RFC 2606 .invalid, resolved by a resolver that never leaves the
    machine) stops the run naming the host and the DNS failure; nothing is sent."""
    job = write_job("jobs.csv", job_text(locations=20, per_location=2))
    resolver = FakeResolver()
    transport = AiohttpTransport(timeout=2, resolver=resolver)
    try:
        result = await run_at("https://ghl-test.invalid", job, transport, retry=POLICY)
    finally:
        await transport.aclose()

    summary = result.summary
    assert summary.unreachable.startswith("cannot reach ghl-test.invalid: DNS lookup failed (")
    assert {o.status for o in result.outcomes} == {NOT_RUN}
    assert {o.error for o in result.outcomes} == {f"not sent: {summary.unreachable}"}
    assert (summary.requests, summary.exit_code) == (0, 2)
    assert set(resolver.asked) == {"ghl-test.invalid"}


async def test_https_to_a_plain_http_port_stops_with_a_tls_message(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """TLS spoken to the (plain HTTP) sandbox fails every handshake: the run stops naming the
    TLS failure, and the sandbox never saw a request."""
    job = write_job("jobs.csv", job_text(locations=5, per_location=2))
    port = sandbox.url.rsplit(":", 1)[1]

    result = await run_at(f"https://127.0.0.1:{port}", job, retry=POLICY)

    assert result.summary.unreachable.startswith(f"cannot reach 127.0.0.1:{port}: TLS handshake")
    assert {o.status for o in result.outcomes} == {NOT_RUN}
    assert (result.summary.requests, result.summary.exit_code) == (0, 2)
    assert sandbox.log == []


class GoesAway:
    """A real transport to the sandbox, which it shuts down before request number ``after``:
    from then on nothing listens on its port."""

    def __init__(self, sandbox: Sandbox, after: int) -> None:
        self.sandbox = sandbox
        self.after = after
        self.sent = 0
        self.inner = AiohttpTransport(timeout=2)

    async def send(self, request: Request) -> Response:
        self.sent += 1
        if self.sent == self.after:
            await self.sandbox.aclose()
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_host_that_goes_away_mid_run_stops_the_run(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """The server disappears mid-run: what was done stays done, the run stops with the same
    message instead of failing every remaining record one by one, and exit code is 1."""
    job = write_job("jobs.csv", job_text(locations=20, per_location=5))
    transport = GoesAway(sandbox, after=40)
    try:
        result = await run_against(sandbox, job, transport=transport, concurrency=4, retry=POLICY)
    finally:
        await transport.aclose()

    summary = result.summary
    counts = summary.counts
    assert summary.unreachable == f"cannot reach {sandbox.url[7:]}: connection refused"
    assert counts.get("created", 0) > 0
    assert counts.get(NOT_RUN, 0) > 50  # most of the 100 were never tried
    assert set(counts) <= {"created", "failed", NOT_RUN}
    assert sum(counts.values()) == 100
    assert summary.exit_code == 1  # something was sent
    # The 40th went out on a kept-alive connection that the closing server dropped: it may
    # have landed as far as the client can tell, so it counts (aiohttp does not resend it).
    assert 0 < summary.requests <= 40
    assert summary.connect_failures <= 4 * 2 * ATTEMPTS  # a round or two per worker


def test_cli_says_it_once_and_exits_2(tmp_path: Path) -> None:
    """On the command line: exit 2, one log line, and a summary saying plainly that nothing
    was sent and why; no traceback, no token."""
    port = free_port()
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(locations=50, per_location=4), encoding="utf-8")
    report = tmp_path / "out.csv"
    result = CliRunner(env={"GHL_TOKEN": TOKEN}).invoke(
        main,
        ["run", str(job), "--base-url", f"http://127.0.0.1:{port}", "--report", str(report),
         "--max-attempts", str(ATTEMPTS)],
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    cause = f"cannot reach 127.0.0.1:{port}: connection refused"
    assert [line for line in result.stderr.splitlines() if "info" not in line] == [
        line for line in result.stderr.splitlines() if cause in line
    ]
    assert len([line for line in result.stderr.splitlines() if cause in line]) == 1
    assert "0 requests sent" in result.stdout
    assert "could not connect" in result.stdout
    assert f"stopped: {cause} (nothing was sent)" in result.stdout
    assert "nothing was sent" in result.stdout.splitlines()[-1]
    assert "Traceback" not in result.output
    assert TOKEN not in result.output + report.read_text(encoding="utf-8")
    assert len(read_rows(report)) == 200
