"""Report pages and summaries of real sandbox runs (clean, with faults, killed and resumed),
their numbers held to the CSV and to what the run and the sandbox counted."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from jobs.api import report_page
from jobs.associations import AssociationsJob
from jobs.sandbox import Sandbox
from tests.pagecheck import Page, assert_page_matches_report, expected, read_page
from tests.reliability.test_faults import Harness, wait_for_progress
from tests.reliability.test_faults import write_job as write_fault_job

from ..conftest import ThreadedSandbox
from .helpers import run_against

OK = AssociationsJob.ok_statuses
LOC_A, LOC_B = "locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB"
HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def column_sum(page: Page, column: str) -> int:
    return sum(int(row[column]) for row in page.locations if row[column] not in ("", "—"))


def page_of(report: Path) -> Page:
    out = report.with_suffix(".html")
    report_page([str(report)], str(out))
    return read_page(out)


async def test_a_clean_run_page_matches_its_report_and_its_summary(
    sandbox: Sandbox, samples: Path, tmp_path: Path
) -> None:
    """Every record ok; totals, per-location counts, requests and the exit code agree."""
    report = tmp_path / "out.csv"
    result = await run_against(sandbox, str(samples / "onboarding.json"), report=str(report))
    with result:
        summary = result.summary
    page = page_of(report)
    assert_page_matches_report(page, report, OK)
    assert page.data["not_ok"] == 0
    assert [run["exit_code"] for run in page.data["runs"]] == [0]
    assert page.data["timeline"]["requests"] == summary.requests == len(sandbox.log)
    assert column_sum(page, "requests") == summary.requests
    assert column_sum(page, "throttled") == 0
    assert "all ok" in page.text
    assert page.groups == []


async def test_a_run_with_faults_shows_its_429s_retries_and_causes(
    sandbox_factory: Callable[..., Sandbox], write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """429s, 5xx retries and failures on the page are the ones the run and the sandbox saw."""
    rows = "".join(
        f"{loc},k{i},custom_objects.property,contact,P{i},C{i}\n"
        for loc in (LOC_A, LOC_B)
        for i in range(10)
    )
    # The same missing object in both locations: one cause across two locations.
    rows += (
        f"{LOC_A},boat,custom_objects.boat,contact,,\n{LOC_B},boat,custom_objects.boat,contact,,\n"
    )
    rows += f"{LOC_B},,custom_objects.pet,contact,,\n"  # invalid: no key
    job = write_job("jobs.csv", HEADER + rows)
    report = tmp_path / "out.csv"
    settings = {"rate_limit": 10, "rate_interval": 0.2, "throttle_below": 4}
    async with sandbox_factory(**settings, fail_rate=0.15, seed=3) as sb:
        result = await run_against(sb, job, report=str(report))
        with result:
            summary = result.summary
        sent_429 = sb.stats.throttled
    assert sent_429 > 0
    assert summary.server_errors > 0  # 5xx answers, retried too
    page = page_of(report)
    assert_page_matches_report(page, report, OK)
    assert page.data["timeline"]["throttled"] == summary.rate_limited == sent_429
    assert page.data["timeline"]["retries"] == summary.retries
    assert page.data["timeline"]["requests"] == summary.requests
    assert column_sum(page, "throttled") == sent_429
    assert column_sum(page, "retries") == summary.retries
    assert column_sum(page, "requests") == summary.requests
    causes = {(g[0], g[2]) for g in page.groups}
    assert ("failed", 2) in causes
    boat = next(g for g in page.data["groups"] if g["outcome"] == "failed")
    assert boat["pattern"] == "object '…' does not exist in location <location_id>"
    assert boat["locations"] == 2
    assert [run["exit_code"] for run in page.data["runs"]] == [1]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A sandbox process and CLI runs against it, ended with the test."""
    h = Harness(tmp_path)
    yield h
    h.close()


def test_a_killed_run_then_its_resume_each_get_a_true_page(
    harness: Harness, tmp_path: Path
) -> None:
    """kill -9 mid-run: show and html read the half-written report (last rows win) and the
    run has no end; after --resume the page holds both runs and every record."""
    locations = [f"loc{c * 17}" for c in "CDE"]
    harness.start_sandbox(locations, "--rate-limit", "6/1s", "--seed", "1")
    job = tmp_path / "jobs.csv"
    write_fault_job(job, locations, 8)
    report = tmp_path / "out.csv"
    started = harness.start_run(job, "--no-progress", report=report)
    wait_for_progress(started, report, 500)  # some rows written, the run not done
    os.kill(started.proc.pid, signal.SIGKILL)
    started.proc.wait(timeout=10)

    code, out, err = cli("report", "show", str(report))
    assert code == 0, err
    totals, _ = expected(report)
    assert 0 < sum(totals.values()) < 24
    assert "no end recorded" in out
    assert re.search(rf"^total\s+{sum(totals.values())}$", out, re.M), out

    page = page_of(report)
    assert_page_matches_report(page, report, OK)
    assert page.runs == [""]  # killed: no exit code
    assert "no end recorded" in page.text

    finished = harness.run(job, "--no-progress", "--resume", report=report)
    assert finished.rc == 0, finished.err
    page = page_of(report)
    assert_page_matches_report(page, report, OK)
    assert page.totals == {"created": 24, "total": 24}
    assert page.runs == ["", "0"]
    assert "(resumed)" in page.text
    served = harness.admin("GET", "/_sandbox/state")["stats"]["requests"]
    assert 0 < page.data["timeline"]["requests"] <= served  # a killed run loses <= 1 s


def test_plan_run_and_rollback_write_their_pages_with_html(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """--html on plan, run and rollback writes each one's page beside the summary."""
    job = tmp_path / "jobs.csv"
    job.write_text(
        HEADER + f"{LOC_A},k1,custom_objects.property,contact,P,C\n"
        f"{LOC_B},k1,custom_objects.property,contact,P,C\n",
        encoding="utf-8",
    )
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", LOC_A, LOC_B)
    plan, plan_html = tmp_path / "plan.csv", tmp_path / "plan.html"
    code, out, err = cli(
        "plan", str(job), "--base-url", threaded_sandbox.url, "--tokens", tokens,
        "--report", str(plan), "--html", str(plan_html), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"page: {plan_html}" in out
    page = read_page(plan_html)
    assert page.totals == {"create": 2, "total": 2}
    assert page.data["not_ok"] == 0  # pending changes are what a plan is for
    assert "nothing was written" in page.text
    report, html = tmp_path / "run.csv", tmp_path / "run.html"
    code, out, err = cli(
        "run", str(job), "--base-url", threaded_sandbox.url, "--tokens", tokens,
        "--report", str(report), "--html", str(html), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"page: {html}" in out
    assert read_page(html).totals == {"created": 2, "total": 2}
    undo, undo_html = tmp_path / "undo.csv", tmp_path / "undo.html"
    code, out, err = cli(
        "rollback", str(report), "--yes", "--base-url", threaded_sandbox.url,
        "--tokens", tokens, "--report", str(undo), "--html", str(undo_html), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    page = read_page(undo_html)
    assert page.totals == {"deleted": 2, "total": 2}
    assert_page_matches_report(page, undo, OK)
    assert page.data["timeline"]["requests"] >= 2
    # Both reports on one page, and the default page path beside the first report.
    code, out, err = cli("report", "html", str(report), str(undo))
    assert code == 0, err
    both = read_page(tmp_path / "run.html")
    assert both.totals == {"created": 2, "deleted": 2, "total": 4}
    assert both.runs == ["0", "0"]


def test_report_commands_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    """A missing report, a report that is not UTF-8, --html without --report: exit 2."""
    code, _, err = cli("report", "show", str(tmp_path / "none.csv"))
    assert code == 2
    assert "does not exist" in err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"source,outcome\n\xff,x\n")
    code, _, err = cli("report", "html", str(bad), "-o", str(tmp_path / "p.html"))
    assert code == 2
    assert "not UTF-8" in err
    assert "Traceback" not in err
    code, _, err = cli("run", str(bad), "--sandbox", "--html", str(tmp_path / "p.html"))
    assert code == 2
    assert "--html needs --report" in err


def test_a_relations_run_gets_its_page_with_its_own_columns(samples: Path, tmp_path: Path) -> None:
    """Another job kind: the generic columns drive the page, the kind's own columns show in
    the example rows as the report has them."""
    report, html = tmp_path / "r.csv", tmp_path / "r.html"
    code, _, err = cli(
        "run", str(samples / "relations.csv"), "--sandbox", "--report", str(report),
        "--html", str(html), "--no-progress",
    )  # fmt: skip
    assert code == 1, err  # the sample's keys are not defined in a fresh sandbox
    page = read_page(html)
    assert_page_matches_report(page, report, OK)
    assert "relations" in page.text
    for column in ("association_key", "first_record_id", "relation_id"):
        assert f"<th>{column}</th>" in html.read_text(encoding="utf-8")
