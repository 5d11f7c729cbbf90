"""Report and journal file errors: one clear line, exit 2, nothing sent; a disk that fills up
mid-run stops sending at once and leaves a run that resumes exactly."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine import ConfigError, Request, Response, RunConfig, StorageError, read_report
from engine.cli import execute, main
from engine.transport import AiohttpTransport
from jobs.api import run_job
from jobs.associations import AssociationsJob
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox
from tests.fakes import ReadOnly

from ..conftest import ThreadedSandbox
from .helpers import statuses

LOC = "locAAAAAAAAAAAAAAAAA"


def job_text(count: int) -> str:
    return "location_id,key,first_object_key,second_object_key,first_object_label\n" + "".join(
        f"{LOC},def_{n:02d},custom_objects.pet,contact,Pet {n}\n" for n in range(count)
    )


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def api_requests(threaded: ThreadedSandbox) -> int:
    return sum(1 for r in threaded.sandbox.log if not r.path.startswith("/_"))


@pytest.fixture
def setup(threaded_sandbox: ThreadedSandbox, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A three-record job and the options that run it against the threaded sandbox."""
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(3), encoding="utf-8")
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", LOC)
    return job, ("--base-url", threaded_sandbox.url, "--tokens", tokens)


def one_error_line(err: str) -> str:
    """The single ``Error:`` line of a refused command (and no traceback)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_report_in_a_missing_folder(
    setup: tuple[Path, tuple[str, ...]], threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """--report in a folder that does not exist: exit 2 naming the folder, nothing sent."""
    job, options = setup
    report = tmp_path / "nope" / "out.csv"
    code, _, err = cli("run", str(job), *options, "--report", str(report))
    assert code == 2
    assert f"folder {tmp_path / 'nope'} does not exist" in one_error_line(err)
    assert api_requests(threaded_sandbox) == 0


def test_report_in_a_read_only_folder(
    setup: tuple[Path, tuple[str, ...]],
    threaded_sandbox: ThreadedSandbox,
    tmp_path: Path,
    read_only: ReadOnly,
) -> None:
    """--report in a read-only folder: exit 2 naming the folder, nothing sent, nothing left."""
    job, options = setup
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only.folder(folder)
    code, _, err = cli("run", str(job), *options, "--report", str(folder / "out.csv"))
    assert code == 2
    assert f"cannot create files in folder {folder}" in one_error_line(err)
    assert api_requests(threaded_sandbox) == 0
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("which", ["report", "journal"])
def test_read_only_report_or_journal_on_resume(
    setup: tuple[Path, tuple[str, ...]],
    threaded_sandbox: ThreadedSandbox,
    tmp_path: Path,
    read_only: ReadOnly,
    which: str,
) -> None:
    """--resume of a read-only report or journal: exit 2 naming it, nothing sent or changed."""
    job, options = setup
    report = tmp_path / "out.csv"
    assert cli("run", str(job), *options, "--report", str(report))[0] == 0
    journal = Path(f"{report}.journal")
    target = report if which == "report" else journal
    before = (report.read_bytes(), journal.read_bytes())
    sent = api_requests(threaded_sandbox)
    read_only.file(target)

    code, _, err = cli("run", str(job), *options, "--report", str(report), "--resume")

    assert code == 2
    line = one_error_line(err)
    assert f"{target}: cannot be opened for writing (permission denied)" in line
    assert api_requests(threaded_sandbox) == sent
    assert (report.read_bytes(), journal.read_bytes()) == before


def test_report_that_is_a_folder_is_refused_by_the_library(tmp_path: Path) -> None:
    """A report path that is a folder is a ConfigError saying so (the CLI's click says it too)."""
    (tmp_path / "out.csv").mkdir()
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(1), encoding="utf-8")
    config = RunConfig(job_files=(str(job),), report=str(tmp_path / "out.csv"), resume=True)

    import anyio

    with pytest.raises(ConfigError, match="is a folder"):
        anyio.run(lambda: run_job(config, base_url="https://example.com", tokens=lambda _: "t"))


def test_rollback_report_in_a_missing_folder(
    setup: tuple[Path, tuple[str, ...]], threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """rollback --report in a folder that does not exist: exit 2, nothing deleted."""
    job, options = setup
    report = tmp_path / "run.csv"
    assert cli("run", str(job), *options, "--report", str(report))[0] == 0
    undo = tmp_path / "nope" / "undo.csv"
    code, _, err = cli("rollback", str(report), *options, "--report", str(undo), "--yes")
    assert code == 2
    assert f"folder {tmp_path / 'nope'} does not exist" in one_error_line(err)
    assert threaded_sandbox.do(lambda: len(threaded_sandbox.sandbox.snapshot()[LOC])) == 3


def test_rollback_reads_reports_in_a_read_only_folder(
    setup: tuple[Path, tuple[str, ...]], tmp_path: Path, read_only: ReadOnly
) -> None:
    """Reports archived in a read-only folder can still be planned (read without a lock)."""
    job, options = setup
    folder = tmp_path / "archive"
    folder.mkdir()
    report = folder / "run.csv"
    assert cli("run", str(job), *options, "--report", str(report))[0] == 0
    read_only.folder(folder)
    code, out, err = cli("rollback", str(report), "--dry-run")
    assert code == 0, err
    assert out.count(LOC) == 3


def test_an_empty_report_is_refused_by_rollback(tmp_path: Path) -> None:
    """A 0-byte report given to rollback: exit 2 saying it is empty."""
    report = tmp_path / "run.csv"
    report.write_bytes(b"")
    code, _, err = cli("rollback", str(report), "--dry-run")
    assert code == 2
    assert f"report {report} is empty" in one_error_line(err)


def test_a_dry_run_with_nothing_to_undo_says_so_plainly(tmp_path: Path) -> None:
    """A dry run of a report without created rows says there is nothing to roll back."""
    report = tmp_path / "run.csv"
    report.write_text(
        "source,location_id,action,key,outcome,association_id,http_status,attempts,error\n"
        f"jobs.csv:2,{LOC},create,k1,exists,id1,,0,\n",
        encoding="utf-8",
    )
    code, out, err = cli("rollback", str(report), "--dry-run")
    assert code == 0
    assert "nothing to roll back" in err
    assert not err.rstrip().endswith(":")
    assert "0 definition(s)" not in err
    assert out == ""


def test_a_damaged_journal_line_is_named_and_nothing_is_sent(
    setup: tuple[Path, tuple[str, ...]], threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """A damaged line inside the journal: resume and rollback exit 2 naming file and line."""
    job, options = setup
    report = tmp_path / "out.csv"
    assert cli("run", str(job), *options, "--report", str(report))[0] == 0
    journal = Path(f"{report}.journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"intent": "x' + b"\x00" * 8 + b"\n"
    journal.write_bytes(b"".join(lines))
    sent = api_requests(threaded_sandbox)

    code, _, err = cli("run", str(job), *options, "--report", str(report), "--resume")
    assert code == 2
    assert f"journal {journal}, line 3: not valid JSON" in one_error_line(err)
    assert api_requests(threaded_sandbox) == sent
    code, _, err = cli("rollback", str(report), "--dry-run")
    assert code == 2
    assert f"journal {journal}, line 3" in one_error_line(err)


def test_a_torn_last_journal_line_is_cut_and_the_resume_goes_on(
    setup: tuple[Path, tuple[str, ...]], tmp_path: Path
) -> None:
    """A partial last line (killed mid-write) is normal: it is cut and the resume goes on."""
    job, options = setup
    report = tmp_path / "out.csv"
    assert cli("run", str(job), *options, "--report", str(report))[0] == 0
    journal = Path(f"{report}.journal")
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"intent": "loc')
    code, _, err = cli("run", str(job), *options, "--report", str(report), "--resume")
    assert code == 0, err
    after = journal.read_bytes()
    assert after.startswith(whole)  # the torn line is gone; only the resume's end follows
    rows = len(read_report(str(report)))
    assert [orjson.loads(line) for line in after[len(whole) :].splitlines()] == [
        {"end": "run", "rows": rows}
    ]


# -- a disk that fills up mid-run ------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files of a report rewrite left in ``folder``."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


class FillsTheDisk:
    """The real transport, except that after the ``after``-th POST is answered the disk is
    full for ``paths``: their open descriptors now write to /dev/full (ENOSPC); when the
    report is among them, so does its final rewrite (its temporary file)."""

    def __init__(self, after: int, paths: list[str], report: str) -> None:
        self._inner = AiohttpTransport(timeout=10)
        self._after = after
        self._paths = [os.path.abspath(p) for p in paths]
        self._report = report
        self.posts = 0

    async def send(self, request: Request) -> Response:
        response = await self._inner.send(request)
        if request.method == "POST":
            self.posts += 1
            if self.posts == self._after:
                self._fill()
        return response

    def _fill(self) -> None:
        full = os.open("/dev/full", os.O_WRONLY)
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if target in self._paths:
                os.dup2(full, int(name))
        os.close(full)
        if os.path.abspath(self._report) in self._paths:
            os.symlink("/dev/full", f"{self._report}.tmp-{os.getpid()}")

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.parametrize("which", ["journal", "both"])
async def test_a_full_disk_mid_run_stops_sending_and_resumes_exactly(
    sandbox_factory: object, tmp_path: Path, which: str
) -> None:
    """ENOSPC mid-run: no write goes out unjournaled, the run stops at once, a resume ends it."""
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(8), encoding="utf-8")
    report = str(tmp_path / "out.csv")
    journal = f"{report}.journal"
    full = [journal] if which == "journal" else [journal, report]
    async with Sandbox() as sandbox:
        transport = FillsTheDisk(after=3, paths=full, report=report)
        config = RunConfig(job_files=(str(job),), report=report, concurrency=1)
        with pytest.raises(StorageError) as info:
            await run_job(
                config, base_url=sandbox.url, tokens=sandbox.issue_token, transport=transport
            )
        await transport.aclose()
        message = str(info.value)
        assert message.startswith("cannot write ")
        assert "the disk is full" in message
        assert "sent nothing more" in message
        assert f"free some space, then run the same command with --resume ({report}" in message
        assert transport.posts == 3  # nothing was sent after the disk filled
        created = {a["key"] for a in sandbox.snapshot()[LOC]}
        assert len(created) == 3
        assert not leftovers(tmp_path)  # the failed rewrite removed its temporary file
        rows = read_report(report)
        if which == "journal":  # the report could still be written: one row per record
            assert [r["outcome"] for r in rows] == ["created"] * 3 + ["not_run"] * 5
        else:  # its rewrite failed too: the rows written before the disk filled stay
            assert [r["outcome"] for r in rows] == ["created"] * 2

        resumed = await run_job(
            RunConfig(job_files=(str(job),), report=report, resume=True),
            base_url=sandbox.url,
            tokens=sandbox.issue_token,
        )
        assert statuses(resumed) == ["created"] * 8
        assert sorted(a["key"] for a in sandbox.snapshot()[LOC]) == [
            f"def_{n:02d}" for n in range(8)
        ]
        assert sandbox.stats.creates_applied == 8
    assert len(plan_rollback([report]).records) == 8


def test_the_cli_turns_a_storage_error_into_one_line_and_exit_2() -> None:
    """A StorageError from a run is one 'Error:' line (no usage hint, no traceback), exit 2."""
    import click

    @click.command()
    def command() -> None:
        async def start(observer: object) -> object:
            raise StorageError("out.csv.journal", OSError(28, "No space left on device"))

        execute(
            start,  # type: ignore[arg-type]
            ok_statuses=AssociationsJob.ok_statuses,
            options={"log_format": "console", "verbose": False, "no_progress": True},
        )

    result = CliRunner().invoke(command, [])
    assert result.exit_code == 2
    assert result.stderr == "Error: cannot write out.csv.journal: the disk is full\n"
