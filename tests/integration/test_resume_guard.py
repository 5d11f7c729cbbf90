"""What a run created never falls out of its report: edited job files, older journals, and
repeatable sandbox runs that never replace a real report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine import ConfigError, Outcome, RunConfig, read_report
from engine.cli import main
from jobs.api import rollback_job, run_job
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox

from ..conftest import ThreadedSandbox
from .helpers import run_against, statuses, writes

LOC = "locAAAAAAAAAAAAAAAAA"
HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)
ROWS = [
    f"{LOC},property_owner,custom_objects.property,contact,Owned property,Owner\n",
    f"{LOC},pet_owner,custom_objects.pet,contact,,\n",
    f"{LOC},pet_vet,custom_objects.pet,business,,\n",
]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def api_requests(threaded: ThreadedSandbox) -> int:
    return sum(1 for r in threaded.sandbox.log if not r.path.startswith("/_"))


def test_resume_with_an_edited_job_file_is_refused_and_sends_nothing(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """--resume with a same-named job file whose rows changed: exit 2 naming it, nothing sent."""
    job = tmp_path / "jobs.csv"
    job.write_text(HEADER + "".join(ROWS), encoding="utf-8")
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", LOC)
    report = tmp_path / "out.csv"
    common = ("--base-url", threaded_sandbox.url, "--tokens", tokens, "--report", str(report))
    assert cli("run", str(job), *common)[0] == 0
    before = (report.read_bytes(), Path(f"{report}.journal").read_bytes())
    sent = api_requests(threaded_sandbox)

    job.write_text(HEADER + "".join(ROWS[1:]), encoding="utf-8")  # a row removed
    code, _, err = cli("run", str(job), *common, "--resume")

    assert code == 2
    assert "job file jobs.csv changed since the run that wrote" in err
    assert "restore the original and --resume" in err
    assert api_requests(threaded_sandbox) == sent
    assert (report.read_bytes(), Path(f"{report}.journal").read_bytes()) == before


def first_line(journal: str) -> dict[str, object]:
    """The run description a journal starts with."""
    with open(journal, "rb") as fh:
        return dict(orjson.loads(fh.readline()))


def _as_if_an_older_release_wrote(journal: Path) -> None:
    """Drop what the previous release did not record (job file digests, ephemeral)."""
    lines = journal.read_bytes().splitlines(keepends=True)
    meta = orjson.loads(lines[0])
    meta.pop("job_sha256", None)
    meta.pop("ephemeral", None)
    journal.write_bytes(orjson.dumps(meta) + b"\n" + b"".join(lines[1:]))


async def test_created_rows_of_records_gone_from_the_job_stay_in_the_report(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A resume that cannot check contents keeps 'created' rows of removed records; rollback
    still undoes them."""
    job = write_job("jobs.csv", HEADER + "".join(ROWS))
    report = str(tmp_path / "out.csv")
    first = await run_against(sandbox, job, report=report)
    assert statuses(first) == ["created"] * 3
    removed_id = first.outcomes[0].fields["association_id"]
    _as_if_an_older_release_wrote(Path(f"{report}.journal"))
    write_job("jobs.csv", HEADER + "".join(ROWS[1:]))

    for _ in range(2):  # the kept row survives any number of resumes, once
        again = await run_against(sandbox, job, report=report, resume=True)
        assert statuses(again) == ["created", "created"]
        rows = read_report(report)
        assert [r["key"] for r in rows] == ["pet_owner", "pet_vet", "property_owner"]
        kept = rows[-1]
        assert kept["outcome"] == "created"
        assert kept["association_id"] == removed_id
        assert (
            kept["error"] == "kept from an earlier run of this report: no longer in the job files"
        )

    plan = plan_rollback([report])
    assert sorted(r.get("key") for r in plan.records) == ["pet_owner", "pet_vet", "property_owner"]
    undone = await rollback_job(
        plan, RunConfig(job_files=(report,)), base_url=sandbox.url, tokens=sandbox.issue_token
    )
    assert statuses(undone) == ["deleted"] * 3
    assert [a["key"] for a in sandbox.snapshot()[LOC]] == []


def test_unsettled_creates_are_named_and_resume_is_not_the_only_advice(
    tmp_path: Path,
) -> None:
    """Creates journaled without a final row are listed by location/key, with honest advice."""
    report = tmp_path / "run.csv"
    report.write_text(
        "source,location_id,action,key,outcome,association_id,http_status,attempts,error\n"
        "jobs.csv:2,locA,create,k1,created,id1,201,1,\n",
        encoding="utf-8",
    )
    lines = [
        {"format": "ghl-migrate-journal/1", "kind": "associations", "api": "associations",
         "base_url": "https://example.com", "job_files": ["jobs.csv"]},
        {"intent": "locA\x1fcreate\x1fk1", "action": "create", "key": "k1"},
        {"intent": "locA\x1fcreate\x1fk9", "action": "create", "key": "k9"},
    ]  # fmt: skip
    Path(f"{report}.journal").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))

    code, _, err = cli("rollback", str(report), "--dry-run")

    assert code == 0
    warning = next(line for line in err.splitlines() if line.startswith("warning:"))
    assert "1 create(s)" in warning
    assert "locA/k9" in warning
    assert "job files are unchanged" in warning  # --resume helps only then
    assert "check them by hand" in warning


# -- item 9: the README's first command is repeatable ----------------------------------------


def test_the_readme_command_can_be_run_again_and_resumed(samples: Path, tmp_path: Path) -> None:
    """A --sandbox report is replaced by the next --sandbox run (saying so); --resume restarts."""
    report = tmp_path / "out.csv"
    job = str(samples / "onboarding.json")
    assert cli("run", job, "--sandbox", "--report", str(report))[0] == 0

    code, _, err = cli("run", job, "--sandbox", "--report", str(report))
    assert code == 0, err
    assert f"replacing {report}" in err
    assert [r["outcome"] for r in read_report(str(report))] == ["created"] * 12

    code, _, err = cli("run", job, "--sandbox", "--report", str(report), "--resume")
    assert code == 0, err
    assert f"starting {report} over" in err
    assert "cannot be resumed" in err
    assert [r["outcome"] for r in read_report(str(report))] == ["created"] * 12


@pytest.mark.parametrize("resume", [(), ("--resume",)], ids=["new", "resume"])
def test_a_sandbox_run_never_replaces_a_real_report(
    samples: Path, threaded_sandbox: ThreadedSandbox, tmp_path: Path, resume: tuple[str, ...]
) -> None:
    """A report of a run against a real server is never replaced by a --sandbox run."""
    job = str(samples / "onboarding.json")
    locations = ("ve9EPM428h8vShlRW1KT", "Hx2kQm7RtY0pLw3sVb9N", "Zq4TnB8cWe1uKd6fGh2J")
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *locations)
    report = tmp_path / "out.csv"
    real = ("--base-url", threaded_sandbox.url, "--tokens", tokens, "--report", str(report))
    assert cli("run", job, *real)[0] == 0
    before = (report.read_bytes(), Path(f"{report}.journal").read_bytes())

    code, _, err = cli("run", job, "--sandbox", "--report", str(report), *resume)

    assert code == 2
    assert str(report) in err
    assert (report.read_bytes(), Path(f"{report}.journal").read_bytes()) == before


def test_a_real_run_refuses_a_sandbox_report(
    samples: Path, threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """A --sandbox report is not continued by a real run: exit 2, saying where it came from."""
    job = str(samples / "onboarding.json")
    report = tmp_path / "out.csv"
    assert cli("run", job, "--sandbox", "--report", str(report))[0] == 0
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", "ve9EPM428h8vShlRW1KT")

    code, _, err = cli(
        "run", job, "--base-url", threaded_sandbox.url, "--tokens", tokens,
        "--report", str(report), "--resume",
    )  # fmt: skip

    assert code == 2
    assert "throwaway server" in err
    assert writes(threaded_sandbox.sandbox) == 0


async def test_library_sandbox_runs_replace_only_sandbox_reports(
    samples: Path, tmp_path: Path
) -> None:
    """run_job(sandbox=...) marks its journal ephemeral, so the next one may replace it."""
    from jobs.sandbox import SandboxConfig

    report = str(tmp_path / "out.csv")
    config = RunConfig(job_files=(str(samples / "onboarding.json"),), report=report)
    await run_job(config, sandbox=SandboxConfig())
    meta = first_line(f"{report}.journal")
    assert meta["ephemeral"] is True
    again = await run_job(config, sandbox=SandboxConfig())
    assert set(statuses(again)) == {"created"}
    with pytest.raises(ConfigError, match="throwaway server"):
        await run_job(config, base_url="https://example.com", tokens=lambda loc: "t")
    assert len(read_report(report)) == 12  # the refusal left it alone


async def test_a_report_with_the_previous_releases_columns_resumes_and_is_upgraded(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A CSV report without the label columns is rewritten with them before rows are
    appended, so every row the resumed run writes is read back (and rolled back)."""
    job = write_job("jobs.csv", HEADER + "".join(ROWS))
    report = tmp_path / "out.csv"
    with await run_against(sandbox, job, report=str(report)) as first:
        assert statuses(first) == ["created"] * 3
    old = ["source", "location_id", "action", "key", "outcome", "association_id",
           "http_status", "attempts", "error"]  # fmt: skip
    rows = read_report(str(report))
    rows[2] |= {"outcome": "not_run", "association_id": "", "http_status": ""}
    lines = [",".join(old)] + [",".join(r[c] for c in old) for r in rows]
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")  # as the last release left it
    seen: list[list[str]] = []

    class ReadsTheReport:  # what a rollback would read if the run were killed right now
        def started(self, total: int, done: int) -> None:
            pass

        def finished(self, outcome: Outcome) -> None:
            seen.append([r["outcome"] for r in read_report(str(report))])

    again = await run_job(
        RunConfig(job_files=(job,), report=str(report), resume=True),
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        observer=ReadsTheReport(),
    )
    with again:
        assert statuses(again) == ["created", "created", "created"]
    assert seen == [["created", "created", "not_run", "created"]]  # the appended row is read
    assert report.read_text(encoding="utf-8").splitlines()[0].split(",")[7:9] == [
        "previous_first_label",
        "previous_second_label",
    ]
    assert [r["outcome"] for r in read_report(str(report))] == ["created"] * 3
    assert len(plan_rollback([str(report)]).records) == 3
