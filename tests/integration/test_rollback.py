"""Rollback undoes exactly what a run created, and explains itself before it acts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import Outcome, RunConfig, Runner, read_report
from engine.cli import main
from jobs.api import rollback_job
from jobs.associations import AssociationsJob
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox

from ..conftest import ThreadedSandbox
from .helpers import run_against, statuses, writes

LOC_A, LOC_B = "locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB"

JOB = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
    f"{LOC_A},property_owner,custom_objects.property,contact,Owned property,Owner\n"
    f"{LOC_A},pet_owner,custom_objects.pet,contact,,\n"
    f"{LOC_B},property_owner,custom_objects.property,contact,Owned property,Owner\n"
    f"{LOC_B},pet_owner,custom_objects.pet,contact,,\n"
)


def seed(sandbox: Sandbox) -> None:
    """Pre-existing definitions: one shares a key (and objects) with the job, one does not."""
    sandbox.add_association(
        LOC_A, key="pet_owner", first_object_key="custom_objects.pet", second_object_key="contact"
    )
    sandbox.add_association(
        LOC_B, key="legacy", first_object_key="custom_objects.pet", second_object_key="business"
    )


async def rollback(sandbox: Sandbox, *reports: str, **config: object) -> list[str]:
    plan = plan_rollback(reports)
    result = await rollback_job(
        plan,
        RunConfig(job_files=reports, **config),  # type: ignore[arg-type]
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
    )
    return statuses(result)


async def test_run_then_rollback_restores_the_state_before_the_run(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """After run + rollback the sandbox is exactly as before; pre-existing ones untouched."""
    seed(sandbox)
    sandbox.issue_token(LOC_A)
    before = sandbox.snapshot()
    report = str(tmp_path / "run.csv")
    result = await run_against(sandbox, write_job("jobs.csv", JOB), report=report)
    assert statuses(result) == ["created", "exists", "created", "created"]
    done = await rollback(sandbox, report, report=str(tmp_path / "rollback.csv"))
    assert done == ["deleted", "deleted", "deleted"]
    assert sandbox.snapshot() == before


async def test_rollback_skips_a_definition_whose_id_changed_key(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A created definition deleted and re-created by someone else since is left alone."""
    report = str(tmp_path / "run.csv")
    await run_against(sandbox, write_job("jobs.csv", JOB), report=report)
    # Someone replaces LOC_A's property_owner: same key, new id.
    old = next(a for a in sandbox.snapshot()[LOC_A] if a["key"] == "property_owner")
    location = sandbox._locations[LOC_A]  # test-only surgery: gone without an API call
    sandbox._store.delete(location, location.associations[old["id"]])
    sandbox.add_association(
        LOC_A, key="property_owner", first_object_key="custom_objects.property",
        second_object_key="contact", first_object_label="Owned property",
        second_object_label="Owner",
    )  # fmt: skip
    done = await rollback(sandbox, report)
    assert sorted(done) == ["absent", "deleted", "deleted", "deleted"]
    assert [a["key"] for a in sandbox.snapshot()[LOC_A]] == ["property_owner"]


async def test_interrupted_rollback_resumes_to_the_same_state(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A rollback stopped after its first delete and resumed ends with exactly the same state."""
    seed(sandbox)
    sandbox.issue_token(LOC_A)
    before = sandbox.snapshot()
    report = str(tmp_path / "run.csv")
    await run_against(sandbox, write_job("jobs.csv", JOB), report=report)
    out = str(tmp_path / "rollback.csv")
    plan = plan_rollback([report])
    runner: Runner

    class StopAfterFirst:
        def started(self, total: int, done: int) -> None:
            pass

        def finished(self, outcome: Outcome) -> None:
            runner.stop()

    runner = Runner(
        AssociationsJob(base_url=sandbox.url),
        RunConfig(job_files=(report,), report=out, concurrency=1),
        tokens=sandbox.issue_token,
        observer=StopAfterFirst(),
        records=plan.records,
    )
    first = await runner.run()
    assert sorted(statuses(first)) == ["deleted", "not_run", "not_run"]
    assert len(read_report(out)) == 3
    again = await rollback(sandbox, report, report=out, resume=True)
    assert sorted(again) == ["deleted", "deleted", "deleted"]
    assert writes(sandbox, "DELETE") == 3  # the first delete was not sent again
    assert sandbox.snapshot() == before


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _created_report(threaded: ThreadedSandbox, tmp_path: Path) -> tuple[str, str]:
    job = tmp_path / "jobs.csv"
    job.write_text(JOB, encoding="utf-8")
    tokens = threaded.tokens_file(tmp_path / "tokens.csv", LOC_A, LOC_B)
    report = str(tmp_path / "run.csv")
    code, _, _ = cli(
        "run", str(job), "--base-url", threaded.url, "--tokens", tokens, "--report", report
    )
    assert code == 0
    return report, tokens


def test_dry_run_lists_per_location_and_sends_no_write(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """--dry-run names each definition and the count per location, and writes nothing."""
    report, tokens = _created_report(threaded_sandbox, tmp_path)
    before = writes(threaded_sandbox.sandbox, "DELETE")
    code, out, err = cli(
        "rollback", report, "--dry-run", "--base-url", threaded_sandbox.url, "--tokens", tokens
    )
    assert code == 0
    assert f"{LOC_A}: 2" in err
    assert out.count("property_owner") == 2
    assert writes(threaded_sandbox.sandbox, "DELETE") == before == 0
    assert len(threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)[LOC_A]) == 2


def test_non_interactive_rollback_without_yes_is_refused(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """Without --yes and without a terminal, rollback refuses and deletes nothing."""
    report, tokens = _created_report(threaded_sandbox, tmp_path)
    code, _, err = cli("rollback", report, "--base-url", threaded_sandbox.url, "--tokens", tokens)
    assert code == 2
    assert "--yes" in err
    assert writes(threaded_sandbox.sandbox, "DELETE") == 0


def test_rollback_with_yes_then_rollback_of_the_rollback_is_refused(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """rollback --yes deletes what was created; rolling back its own report is refused."""
    report, tokens = _created_report(threaded_sandbox, tmp_path)
    undo = str(tmp_path / "undo.csv")
    code, _, _ = cli(
        "rollback", report, "--yes", "--base-url", threaded_sandbox.url,
        "--tokens", tokens, "--report", undo,
    )  # fmt: skip
    assert code == 0
    assert threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)[LOC_A] == []
    code, _, err = cli("rollback", undo, "--yes", "--base-url", threaded_sandbox.url)
    assert code == 2
    assert "only deletes" in err


@pytest.mark.parametrize(
    ("text", "said"), [("", "is empty"), ("a,b\n1,2\n", "not a ghl-migrate run report")]
)
def test_rollback_of_something_else_is_refused(tmp_path: Path, text: str, said: str) -> None:
    """A file that is not a run report (or is empty) is refused with a clear message."""
    bogus = tmp_path / "notes.csv"
    bogus.write_text(text, encoding="utf-8")
    code, _, err = cli("rollback", str(bogus), "--dry-run")
    assert code == 2
    assert said in err
