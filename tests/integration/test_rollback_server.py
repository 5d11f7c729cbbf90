"""Rollback sends its deletes to the server the run used, as the run's journal records it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine import ConfigError, RunConfig
from engine.cli import main
from jobs.api import rollback_job
from jobs.highlevel import DEFAULT_BASE_URL
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox

from ..conftest import ThreadedSandbox
from .helpers import run_against, statuses, writes

LOC = "locAAAAAAAAAAAAAAAAA"
JOB = (
    "location_id,key,first_object_key,second_object_key\n"
    f"{LOC},pet_owner,custom_objects.pet,contact\n"
    f"{LOC},pet_vet,custom_objects.pet,business\n"
)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def set_recorded(report: Path, **fields: object) -> None:
    """Change what a report's journal records about its run."""
    journal = Path(f"{report}.journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    meta = orjson.loads(lines[0]) | fields
    journal.write_bytes(orjson.dumps(meta) + b"\n" + b"".join(lines[1:]))


def run_report(threaded: ThreadedSandbox, tmp_path: Path, *options: str) -> tuple[Path, str]:
    job = tmp_path / "jobs.csv"
    job.write_text(JOB, encoding="utf-8")
    tokens = threaded.tokens_file(tmp_path / "tokens.csv", LOC)
    report = tmp_path / "run.csv"
    code, _, err = cli(
        "run", str(job), "--base-url", threaded.url, "--tokens", tokens,
        "--report", str(report), *options,
    )  # fmt: skip
    assert code == 0, err
    return report, tokens


async def test_the_plan_carries_the_journals_server_and_rollback_job_uses_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """plan_rollback reads api and base URL from the journal; rollback_job goes there."""
    job = tmp_path / "jobs.csv"
    job.write_text(JOB, encoding="utf-8")
    report = str(tmp_path / "run.csv")
    await run_against(sandbox, str(job), api="objects-association", report=report)

    plan = plan_rollback([report])

    assert (plan.api, plan.base_url) == ("objects-association", sandbox.url)
    server = plan.server()
    assert (server.api, server.base_url) == ("objects-association", sandbox.url)
    assert server.notes == (
        f"rolling back against {sandbox.url} (--api objects-association), as recorded in "
        f"{report}.journal",
    )
    result = await rollback_job(plan, RunConfig(job_files=(report,)), tokens=sandbox.issue_token)
    assert statuses(result) == ["deleted", "deleted"]
    assert sandbox.snapshot()[LOC] == []


def test_cli_rollback_goes_where_the_run_went(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """Without --base-url, rollback deletes on the run's server, and says which first."""
    report, tokens = run_report(threaded_sandbox, tmp_path)

    code, _, err = cli("rollback", str(report), "--dry-run")
    assert code == 0
    assert f"rolling back against {threaded_sandbox.url} (--api associations)" in err

    code, _, err = cli("rollback", str(report), "--tokens", tokens, "--yes")
    assert code == 0, err
    assert writes(threaded_sandbox.sandbox, "DELETE") == 2
    assert threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)[LOC] == []


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_explicit_base_url_wins_and_says_so(
    threaded_sandbox: ThreadedSandbox,
    tmp_path: Path,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--base-url (or GHL_BASE_URL) overrides the journal, with one line saying so."""
    report, _ = run_report(threaded_sandbox, tmp_path)
    set_recorded(report, base_url="http://127.0.0.1:9")  # as if the run went elsewhere
    given: tuple[str, ...] = ("--base-url", threaded_sandbox.url)
    if how == "environment":
        monkeypatch.setenv("GHL_BASE_URL", threaded_sandbox.url)
        given = ()

    code, _, err = cli("rollback", str(report), "--dry-run", *given)

    assert code == 0
    notes = [line for line in err.splitlines() if line.startswith("using ")]
    assert notes == [
        f"using --base-url {threaded_sandbox.url}, not http://127.0.0.1:9 as recorded in "
        f"{report}.journal"
    ]


def test_reports_from_different_servers_are_refused(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """Reports whose journals name different servers are not rolled back together."""
    report, _ = run_report(threaded_sandbox, tmp_path)
    other = tmp_path / "other.csv"
    other.write_bytes(report.read_bytes())
    Path(f"{other}.journal").write_bytes(Path(f"{report}.journal").read_bytes())
    set_recorded(other, base_url="https://example.com")

    code, _, err = cli("rollback", str(report), str(other), "--dry-run")

    assert code == 2
    assert "different servers" in err
    assert "https://example.com" in err
    with pytest.raises(ConfigError, match="different servers"):
        plan_rollback([str(report), str(other)])


def test_a_sandbox_report_is_refused(samples: Path, tmp_path: Path) -> None:
    """A report of `run --sandbox` is not rolled back: that server and all it held are gone."""
    report = tmp_path / "out.csv"
    assert (
        cli("run", str(samples / "onboarding.json"), "--sandbox", "--report", str(report))[0] == 0
    )

    code, _, err = cli("rollback", str(report), "--dry-run")

    assert code == 2
    assert "embedded-sandbox run" in err
    assert "nothing real was created" in err


def test_without_a_journal_the_default_is_used_and_named(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """No journal beside the report: the default server, and a line that says so."""
    report, _ = run_report(threaded_sandbox, tmp_path)
    Path(f"{report}.journal").unlink()

    code, _, err = cli("rollback", str(report), "--dry-run")

    assert code == 0
    assert f"no journal beside {report}" in err
    assert f"rolling back against {DEFAULT_BASE_URL}" in err
    assert plan_rollback([str(report)]).server().base_url == DEFAULT_BASE_URL
