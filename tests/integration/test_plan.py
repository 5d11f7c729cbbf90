"""plan: every planned outcome against the sandbox, no write sent, drift, its report's rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import ConfigError, RunConfig, journal_meta, journal_path, read_report
from jobs.api import plan_job, run_job
from jobs.plan import PlanResult
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox

from .helpers import run_against, statuses

LOC_A, LOC_B, LOC_C = "locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB", "locCCCCCCCCCCCCCCCCC"
HEADER = (
    "location_id,action,key,first_object_key,first_object_label,second_object_key,"
    "second_object_label,association_id\n"
)


def every_outcome_job(sandbox: Sandbox) -> str:
    """Seed LOC_A so that one row of the job below meets each planned outcome."""
    sandbox.add_association(
        LOC_A, key="same", first_object_key="custom_objects.pet", second_object_key="contact",
        first_object_label="Pet", second_object_label="Owner",
    )  # fmt: skip
    sandbox.add_association(
        LOC_A, key="relabel", first_object_key="custom_objects.property",
        second_object_key="contact", first_object_label="Property", second_object_label="Contact",
    )  # fmt: skip
    sandbox.add_association(
        LOC_A, key="clash", first_object_key="custom_objects.pet", second_object_key="business"
    )
    sandbox.add_association(
        LOC_A, key="doomed", first_object_key="custom_objects.property",
        second_object_key="business",
    )  # fmt: skip
    return HEADER + (
        f"{LOC_A},create,fresh,custom_objects.pet,Patient,opportunity,Case,\n"  # create
        f"{LOC_A},create,same,custom_objects.pet,Pet,contact,Owner,\n"  # exists
        f"{LOC_A},create,relabel,custom_objects.property,Home,contact,Resident,\n"  # update
        f"{LOC_A},create,clash,custom_objects.pet,,contact,,\n"  # conflict
        f"{LOC_A},delete,doomed,,,,,\n"  # delete
        f"{LOC_A},delete,long_gone,,,,,\n"  # absent
        f"{LOC_A},create,boat,custom_objects.boat,,contact,,\n"  # blocked: unknown object
        f"{LOC_A},create,,custom_objects.pet,,contact,,\n"  # blocked: invalid row
        f"{LOC_B},create,fresh,custom_objects.pet,Patient,opportunity,Case,\n"  # blocked: token
    )


def api_writes(sandbox: Sandbox) -> list[tuple[str, str]]:
    """Every write request that reached the sandbox's API routes."""
    return [
        (r.method, r.path)
        for r in sandbox.log
        if r.method in ("POST", "PUT", "DELETE") and not r.path.startswith("/_")
    ]


def tokens_but_b(sandbox: Sandbox) -> Callable[[str], str | None]:
    return lambda location: None if location == LOC_B else sandbox.issue_token(location)


async def plan(
    sandbox: Sandbox, job: str, tokens: Callable[[str], str | None] | None = None, **kw: Any
) -> PlanResult:
    config = {k: kw.pop(k) for k in ("report", "junit", "resume", "concurrency") if k in kw}
    return await plan_job(
        RunConfig(job_files=(job,), **config),
        base_url=sandbox.url,
        tokens=tokens or sandbox.issue_token,
        **kw,
    )


async def test_each_planned_outcome_and_no_write_sent(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A plan gives each record what run would do, and the sandbox sees no POST/PUT/DELETE."""
    job = write_job("jobs.csv", every_outcome_job(sandbox))
    before = sandbox.snapshot()
    report = tmp_path / "plan.csv"
    with await plan(
        sandbox, job, tokens_but_b(sandbox), update_labels=True, report=str(report)
    ) as planned:
        outcomes = list(planned.result.outcomes)
        summary = planned.summary
    assert [o.status for o in outcomes] == [
        "create", "exists", "update", "conflict", "delete", "absent",
        "blocked", "blocked", "blocked",
    ]  # fmt: skip
    errors = [o.error for o in outcomes]
    assert errors[2] == "labels 'Property' ↔ 'Contact' → 'Home' ↔ 'Resident'"
    assert "already links custom_objects.pet ↔ business" in errors[3]
    assert "'custom_objects.boat' does not exist" in errors[6]
    assert errors[7].startswith("key: is required for create")
    assert errors[8].startswith(f"no token for location {LOC_B}")
    assert outcomes[4].fields["association_id"]  # the id a run would delete
    assert summary.pending == 3
    assert summary.exit_code == 1
    assert api_writes(sandbox) == []
    assert sandbox.snapshot() == before
    rows = read_report(str(report))
    assert [r["outcome"] for r in rows] == [o.status for o in outcomes]
    assert (rows[2]["previous_first_label"], rows[2]["previous_second_label"]) == (
        "Property",
        "Contact",
    )
    with open(journal_path(str(report)), "rb") as fh:  # noqa: ASYNC230 - a small local file
        lines = [orjson.loads(line) for line in fh]
    assert lines[0]["plan"] is True
    assert lines[1:] == [{"end": "run", "rows": len(rows)}]  # a plan notes no intent


async def test_plan_reads_exactly_what_a_run_reads(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A plan's requests are the run's reads, the same ones in the same number."""
    job = write_job("jobs.csv", every_outcome_job(sandbox))
    with await plan(sandbox, job, update_labels=True):
        pass
    planned = [(r.method, r.path, r.location_id) for r in sandbox.log]
    sandbox.log.clear()
    with await run_against(sandbox, job):
        pass
    reads = [(r.method, r.path, r.location_id) for r in sandbox.log if r.method == "GET"]
    assert sorted(planned) == sorted(reads)
    assert len(planned) == 6  # per location: objects, two list pages


async def test_without_update_labels_a_relabel_stays_exists_and_is_counted(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """Without --update-labels, other labels plan as exists, with what differs and a count."""
    job = write_job("jobs.csv", every_outcome_job(sandbox))
    with await plan(sandbox, job) as planned:
        relabel = planned.result.outcomes[2]
        assert planned.labels_differ == 1
        assert planned.summary.pending == 3  # the creates in both locations, the delete
    assert relabel.status == "exists"
    assert "the server has 'Property' ↔ 'Contact'" in relabel.error
    assert "--update-labels" in relabel.error


async def test_a_plan_sees_the_changes_earlier_rows_would_make(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A label pair a planned create takes blocks a later row, as the run would fail it."""
    job = write_job(
        "jobs.csv",
        HEADER
        + f"{LOC_A},create,first,custom_objects.pet,Pet,contact,Owner,\n"
        + f"{LOC_A},create,second,custom_objects.pet,Pet,contact,Owner,\n",
    )
    with await plan(sandbox, job) as p:
        outcomes = list(p.result.outcomes)
    assert [o.status for o in outcomes] == ["create", "blocked"]
    assert "already used by first" in outcomes[1].error
    with await run_against(sandbox, job, concurrency=1) as ran:
        assert statuses(ran) == ["created", "failed"]


async def test_drift_lists_unmentioned_user_defined_definitions(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """Drift names USER_DEFINED keys no row mentions (by key or id); it deletes nothing."""
    keep = sandbox.add_association(
        LOC_A, key="by_id", first_object_key="custom_objects.pet", second_object_key="business"
    )
    sandbox.add_association(
        LOC_A,
        key="legacy",
        first_object_key="custom_objects.property",
        second_object_key="business",
    )
    sandbox.add_association(
        LOC_A, key="mentioned", first_object_key="custom_objects.pet", second_object_key="contact"
    )
    sandbox.add_association(
        LOC_C, key="other_place", first_object_key="custom_objects.pet", second_object_key="contact"
    )
    job = write_job(
        "jobs.csv",
        HEADER
        + f"{LOC_A},create,mentioned,custom_objects.pet,,contact,,\n"
        + f"{LOC_A},delete,,,,,,{keep['id']}\n"
        + f"{LOC_C},create,new_one,custom_objects.pet,,opportunity,,\n",
    )
    before = sandbox.snapshot()
    with await plan(sandbox, job) as planned:
        assert dict(planned.drift) == {LOC_A: ("legacy",), LOC_C: ("other_place",)}
    assert sandbox.snapshot() == before


@pytest.mark.parametrize(
    ("rows", "detailed", "expected"),
    [
        (f"{LOC_A},create,same,custom_objects.pet,Pet,contact,Owner,\n", True, 0),
        (f"{LOC_A},create,fresh,custom_objects.pet,,opportunity,,\n", True, 2),
        (f"{LOC_A},create,fresh,custom_objects.pet,,opportunity,,\n", False, 0),
        (f"{LOC_A},create,boat,custom_objects.boat,,contact,,\n", True, 1),
        (f"{LOC_A},create,clash,custom_objects.pet,,contact,,\n", True, 1),
    ],
    ids=["nothing-to-do", "pending", "pending-not-detailed", "blocked", "conflict"],
)
async def test_exit_codes(
    sandbox: Sandbox,
    write_job: Callable[[str, str], str],
    rows: str,
    detailed: bool,
    expected: int,
) -> None:
    """0 nothing to do, 2 changes pending (only with detailed), 1 blocked or in conflict."""
    every_outcome_job(sandbox)  # seeds 'same' and 'clash'
    job = write_job("jobs.csv", HEADER + rows)
    with await plan(sandbox, job) as planned:
        assert planned.exit_code(detailed=detailed) == expected


async def test_plan_reports_replace_each_other_and_nothing_else(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A plan replaces an earlier plan's report; run, resume and rollback refuse a plan's;
    a plan refuses a run's."""
    job = write_job("jobs.csv", HEADER + f"{LOC_A},create,fresh,custom_objects.pet,,contact,,\n")
    report = str(tmp_path / "plan.csv")
    for _ in range(2):
        with await plan(sandbox, job, report=report):
            pass
    assert journal_meta(journal_path(report))["plan"] is True  # type: ignore[index]
    for resume in (False, True):
        with pytest.raises(ConfigError, match="is a plan's"):
            await run_against(sandbox, job, report=report, resume=resume)
    with pytest.raises(ConfigError, match="it changed nothing"):
        plan_rollback([report])
    ran = str(tmp_path / "run.csv")
    with await run_against(sandbox, job, report=ran):
        pass
    with pytest.raises(ConfigError, match="a plan never replaces a run's report"):
        await plan(sandbox, job, report=ran)
    assert [r["outcome"] for r in read_report(ran)] == ["created"]


async def test_a_plan_is_never_resumed(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """RunConfig(plan=True, resume=True) is refused before anything is read."""
    job = write_job("jobs.csv", HEADER + f"{LOC_A},create,fresh,custom_objects.pet,,contact,,\n")
    with pytest.raises(ConfigError, match="never resumed"):
        await run_job(
            RunConfig(job_files=(job,), plan=True, resume=True),
            base_url=sandbox.url,
            tokens=sandbox.issue_token,
        )
    assert sandbox.log == []
