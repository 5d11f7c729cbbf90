"""Label updates: left alone and counted by default, PUT with --update-labels, undone exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine import (
    ConfigError,
    Request,
    Response,
    RetryPolicy,
    RunConfig,
    TransportError,
    journal_intents,
    journal_path,
    read_report,
)
from engine.transport import AiohttpTransport
from jobs.api import rollback_job, run_job
from jobs.associations import AssociationsJob
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox

from .helpers import statuses

LOC_A = "locAAAAAAAAAAAAAAAAA"
HEADER = (
    "location_id,key,first_object_key,first_object_label,second_object_key,second_object_label\n"
)
JOB = HEADER + (
    f"{LOC_A},owner,custom_objects.property,Home,contact,Resident\n"
    f"{LOC_A},vet,custom_objects.pet,Patient,business,Clinic\n"
)


def seed(sandbox: Sandbox) -> dict[str, tuple[str, str]]:
    """Two definitions with the job's keys and objects but other labels; their labels."""
    sandbox.add_association(
        LOC_A, key="owner", first_object_key="custom_objects.property",
        second_object_key="contact", first_object_label="Owned property",
        second_object_label="Owner",
    )  # fmt: skip
    sandbox.add_association(
        LOC_A, key="vet", first_object_key="custom_objects.pet", second_object_key="business"
    )
    return labels(sandbox)


def labels(sandbox: Sandbox) -> dict[str, tuple[str, str]]:
    return {
        a["key"]: (a["firstObjectLabel"], a["secondObjectLabel"]) for a in sandbox.snapshot()[LOC_A]
    }


async def run(sandbox: Sandbox, job: str, **kw: object) -> list[str]:
    update = bool(kw.pop("update_labels", False))
    transport = kw.pop("transport", None)
    result = await run_job(
        RunConfig(job_files=(job,), **kw),  # type: ignore[arg-type]
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        update_labels=update,
        transport=transport,  # type: ignore[arg-type]
    )
    with result:
        return statuses(result)


def puts(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.log if r.method == "PUT")


async def test_other_labels_stay_and_the_report_says_which(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """Without --update-labels the definitions are exists, untouched; the rows say what differs."""
    before = seed(sandbox)
    report = str(tmp_path / "run.csv")
    job = write_job("jobs.csv", JOB)
    result = await run_job(
        RunConfig(job_files=(job,), report=report), base_url=sandbox.url, tokens=sandbox.issue_token
    )
    with result:
        assert statuses(result) == ["exists", "exists"]
        assert AssociationsJob.labels_differ(result) == 2
        assert result.summary.exit_code == 0
    assert puts(sandbox) == 0
    assert labels(sandbox) == before
    rows = read_report(report)
    assert (rows[0]["previous_first_label"], rows[0]["previous_second_label"]) == (
        "Owned property",
        "Owner",
    )
    assert "the row asks for 'Home' ↔ 'Resident'" in rows[0]["error"]


async def test_update_then_rollback_round_trips_the_exact_labels(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """--update-labels sends PUTs and reports updated; rollback puts the exact labels back."""
    before = seed(sandbox)
    report = str(tmp_path / "run.csv")
    job = write_job("jobs.csv", JOB)
    assert await run(sandbox, job, report=report, update_labels=True) == ["updated", "updated"]
    assert labels(sandbox) == {"owner": ("Home", "Resident"), "vet": ("Patient", "Clinic")}
    assert puts(sandbox) == 2
    rows = read_report(report)
    assert [(r["previous_first_label"], r["previous_second_label"]) for r in rows] == [
        before["owner"],
        before["vet"],
    ]
    intents = list(journal_intents(journal_path(report), action="update"))
    assert sorted((i["key"], i["previous_first_label"]) for i in intents) == [
        ("owner", "Owned property"),
        ("vet", "Pet"),
    ]
    # A second run has nothing left to change.
    assert await run(sandbox, job, update_labels=True) == ["exists", "exists"]
    assert puts(sandbox) == 2

    plan = plan_rollback([report])
    assert plan.restores == 2
    result = await rollback_job(plan, RunConfig(job_files=(report,)), tokens=sandbox.issue_token)
    with result:
        assert statuses(result) == ["restored", "restored"]
    assert labels(sandbox) == before


async def test_an_update_whose_answer_was_lost_is_still_known_and_undone(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A PUT applied but never answered: the journal keeps the old labels; rollback and a
    resumed run both know them."""
    before = seed(sandbox)
    report = str(tmp_path / "run.csv")
    job = write_job("jobs.csv", JOB)
    real = AiohttpTransport()

    class LosesPutAnswers:
        async def send(self, request: Request) -> Response:
            response = await real.send(request)
            if request.method == "PUT":  # applied by the server, the answer lost
                raise TransportError("connection reset", request=request)
            return response

        async def aclose(self) -> None:
            await real.aclose()

    result = await run_job(
        RunConfig(job_files=(job,), report=report, retry=RetryPolicy(attempts=1)),
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        update_labels=True,
        transport=LosesPutAnswers(),
    )
    with result:
        assert statuses(result) == ["failed", "failed"]
    await real.aclose()
    assert labels(sandbox) == {"owner": ("Home", "Resident"), "vet": ("Patient", "Clinic")}

    # Rollback knows the old labels from the journal alone.
    plan = plan_rollback([report])
    assert sorted(r.get("first_object_label") for r in plan.records) == ["Owned property", "Pet"]

    # A resumed run finds the labels changed and reports them as this run's update.
    resumed = await run_job(
        RunConfig(job_files=(job,), report=report, resume=True),
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        update_labels=True,
    )
    with resumed:
        assert statuses(resumed) == ["updated", "updated"]
    rows = read_report(report)
    assert [(r["previous_first_label"], r["previous_second_label"]) for r in rows] == [
        before["owner"],
        before["vet"],
    ]
    result = await rollback_job(
        plan_rollback([report]), RunConfig(job_files=(report,)), tokens=sandbox.issue_token
    )
    with result:
        assert statuses(result) == ["restored", "restored"]
    assert labels(sandbox) == before


async def test_an_update_to_labels_another_definition_has_is_refused_unsent(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """New labels that another definition of the same objects has fail before any PUT."""
    seed(sandbox)
    sandbox.add_association(
        LOC_A, key="landlord", first_object_key="custom_objects.property",
        second_object_key="contact", first_object_label="Home", second_object_label="Resident",
    )  # fmt: skip
    job = write_job(
        "jobs.csv", HEADER + f"{LOC_A},owner,custom_objects.property,Home,contact,Resident\n"
    )
    result = await run_job(
        RunConfig(job_files=(job,)),
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        update_labels=True,
    )
    with result:
        assert statuses(result) == ["failed"]
        assert "already used by landlord" in result.outcomes[0].error
    assert puts(sandbox) == 0


async def test_system_defined_labels_are_never_updated(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A row with a SYSTEM_DEFINED key and other labels fails without a PUT."""
    job = write_job(
        "jobs.csv",
        HEADER + f"{LOC_A},BUSINESSES_CONTACTS_ASSOCIATION,business,Firm,contact,Staff\n",
    )
    result = await run_job(
        RunConfig(job_files=(job,)),
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        update_labels=True,
    )
    with result:
        assert statuses(result) == ["failed"]
        assert "SYSTEM_DEFINED" in result.outcomes[0].error
    assert puts(sandbox) == 0


def test_the_guide_routes_cannot_update_labels() -> None:
    """--update-labels with --api objects-association is refused: those routes have no PUT."""
    with pytest.raises(ConfigError, match="needs --api associations"):
        AssociationsJob(api="objects-association", update_labels=True)
