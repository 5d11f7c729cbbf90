"""The run journal: the run's description, intents noted before writes, and safe resuming."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
import pytest

from engine import ConfigError, Record, StorageError, journal_path, pending_intents
from engine.journal import RunJournal
from tests.fakes import FakeClock

META = {
    "kind": "associations",
    "api": "associations",
    "base_url": "https://services.leadconnectorhq.com",
    "job_files": ["jobs.csv"],
}


def record(ident: str) -> Record:
    return Record(source=f"jobs.csv:{ident}", location_id="loc1", ident=ident)


def opened(path: Path, *, resume: bool, meta: Mapping[str, object] | None = None) -> RunJournal:
    journal, _ = opened_with_earlier(path, resume=resume, meta=meta)
    return journal


def opened_with_earlier(
    path: Path, *, resume: bool, meta: Mapping[str, object] | None = None
) -> tuple[RunJournal, set[str]]:
    """The opened journal and the idents earlier processes noted writes for."""
    journal = RunJournal(str(path), META if meta is None else meta)
    return journal, {ident for ident, _ in journal.open(resume=resume)}


def test_journal_sits_beside_the_report() -> None:
    """The journal of ``out.csv`` is ``out.csv.journal``."""
    assert journal_path("runs/out.csv") == "runs/out.csv.journal"


def test_new_journal_starts_with_the_run_description(tmp_path: Path) -> None:
    """A new journal's first line describes the run: format, kind, settings, job files."""
    path = tmp_path / "out.csv.journal"

    opened(path, resume=False).close()

    lines = path.read_bytes().splitlines()
    assert len(lines) == 1
    assert orjson.loads(lines[0]) == {"format": "ghl-migrate-journal/1", **META, "ephemeral": False}


def test_intents_are_in_the_file_before_close(tmp_path: Path) -> None:
    """An intent is in the file as soon as it is noted (it must survive kill -9)."""
    path = tmp_path / "out.csv.journal"
    journal = opened(path, resume=False)
    try:
        journal.intent(record("r1"), {"action": "create", "key": "k1"})

        item = orjson.loads(path.read_bytes().splitlines()[1])
        assert item == {"intent": "r1", "source": "jobs.csv:r1", "action": "create", "key": "k1"}
    finally:
        journal.close()


def test_intent_before_open_is_an_error(tmp_path: Path) -> None:
    """Noting an intent on a journal that was never opened raises instead of losing it."""
    journal = RunJournal(str(tmp_path / "j"), META)

    with pytest.raises(RuntimeError, match="before open"):
        journal.intent(record("r1"), {})


def test_resume_sees_earlier_intents(tmp_path: Path) -> None:
    """Intents noted by an earlier process are pending when the journal is resumed."""
    path = tmp_path / "out.csv.journal"
    first = opened(path, resume=False)
    first.intent(record("r1"), {"action": "create"})
    first.close()

    second, earlier = opened_with_earlier(path, resume=True)

    assert earlier == {"r1"}
    second.close()


def test_a_new_journal_has_no_earlier_intents(tmp_path: Path) -> None:
    """A journal opened afresh reports no earlier intents, even after it notes some."""
    journal, earlier = opened_with_earlier(tmp_path / "j", resume=False)
    journal.intent(record("r1"), {})

    assert earlier == set()
    journal.close()


def test_intents_survive_any_number_of_resumes(tmp_path: Path) -> None:
    """Intents are never removed: each resume sees those of every run before it."""
    path = tmp_path / "out.csv.journal"
    for ident in ("r1", "r2", "r3"):
        journal = opened(path, resume=True)
        journal.intent(record(ident), {})
        journal.close()

    last, earlier = opened_with_earlier(path, resume=True)

    assert earlier == {"r1", "r2", "r3"}
    assert path.read_bytes().count(b'"format"') == 1  # described once, at the top
    last.close()


def test_pending_intents_filters_by_action(tmp_path: Path) -> None:
    """pending_intents lists the noted idents, optionally those of one action only."""
    path = tmp_path / "out.csv.journal"
    journal = opened(path, resume=False)
    journal.intent(record("r1"), {"action": "create"})
    journal.intent(record("r2"), {"action": "delete"})
    journal.close()

    assert pending_intents(str(path)) == {"r1", "r2"}
    assert pending_intents(str(path), action="create") == {"r1"}


def test_existing_journal_without_resume_is_refused(tmp_path: Path) -> None:
    """Reopening a journal without resume is a ConfigError that says to pass --resume."""
    path = tmp_path / "out.csv.journal"
    opened(path, resume=False).close()
    before = path.read_bytes()

    with pytest.raises(ConfigError, match="--resume"):
        opened(path, resume=False)

    assert path.read_bytes() == before


def test_empty_journal_file_counts_as_new(tmp_path: Path) -> None:
    """An empty journal file (created, nothing written) is started afresh without --resume."""
    path = tmp_path / "out.csv.journal"
    path.write_bytes(b"")

    opened(path, resume=False).close()

    assert orjson.loads(path.read_bytes())["format"] == "ghl-migrate-journal/1"


def test_resume_with_different_settings_names_the_difference(tmp_path: Path) -> None:
    """Resuming a journal of a run with other settings is refused, naming what changed."""
    path = tmp_path / "out.csv.journal"
    opened(path, resume=False).close()
    changed = {**META, "api": "objects-association"}

    with pytest.raises(ConfigError) as info:
        opened(path, resume=True, meta=changed)

    message = str(info.value)
    assert "api was 'associations', now 'objects-association'" in message
    assert "base_url" not in message  # only what differs is named


def test_resume_with_other_job_files_is_refused(tmp_path: Path) -> None:
    """Resuming with different job files is refused too."""
    path = tmp_path / "out.csv.journal"
    opened(path, resume=False).close()

    with pytest.raises(ConfigError, match="job_files"):
        opened(path, resume=True, meta={**META, "job_files": ["other.csv"]})


def test_resume_of_a_foreign_file_is_refused(tmp_path: Path) -> None:
    """A file that is not a journal is never appended to."""
    path = tmp_path / "out.csv.journal"
    path.write_bytes(b'{"something": "else"}\n')

    with pytest.raises(ConfigError, match="not a ghl-migrate journal"):
        opened(path, resume=True)

    assert path.read_bytes() == b'{"something": "else"}\n'


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A partial last line (killed mid-write) is skipped; the intents before it still count."""
    path = tmp_path / "out.csv.journal"
    journal = opened(path, resume=False)
    journal.intent(record("r1"), {})
    journal.close()
    with path.open("ab") as fh:
        fh.write(b'{"intent": "r2", "sou')

    resumed, earlier = opened_with_earlier(path, resume=True)

    assert earlier == {"r1"}
    resumed.close()


def test_intent_after_a_torn_line_survives_the_next_resume(tmp_path: Path) -> None:
    """An intent noted after resuming past a torn line is itself seen by the next resume."""
    path = tmp_path / "out.csv.journal"
    opened(path, resume=False).close()
    with path.open("ab") as fh:
        fh.write(b'{"intent": "r1", "sou')
    resumed = opened(path, resume=True)
    resumed.intent(record("r2"), {})
    resumed.close()

    again, earlier = opened_with_earlier(path, resume=True)

    assert earlier == {"r2"}
    again.close()


def test_intents_sync_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intents are fsynced in groups, at most once per ``sync_interval``, and on close."""
    synced_at: list[float] = []
    clock = FakeClock()
    journal = RunJournal(str(tmp_path / "j"), META, sync_interval=1.0, clock=clock)
    journal.open(resume=False)  # the description is synced at once, before the patch
    monkeypatch.setattr(os, "fsync", lambda fd: synced_at.append(clock.now))

    for now in (0.2, 0.8, 1.0, 1.5, 1.9):
        clock.now = now
        journal.intent(record(f"r{now}"), {})
    assert synced_at == [1.0]

    clock.now = 2.5
    journal.close()
    assert synced_at == [1.0, 2.5]


DIGESTS = [("jobs.csv", "a" * 64)]


def test_resume_with_an_edited_job_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A job file of the same name whose contents changed is refused, with what to do next."""
    path = tmp_path / "out.csv.journal"
    RunJournal(str(path), META, digests=DIGESTS).open(resume=False)
    before = path.read_bytes()

    with pytest.raises(ConfigError) as info:
        RunJournal(str(path), META, digests=[("jobs.csv", "b" * 64)]).open(resume=True)

    message = str(info.value)
    assert f"job file jobs.csv changed since the run that wrote {tmp_path / 'out.csv'}" in message
    assert "restore the original and --resume" in message
    assert "another --report" in message
    assert f"rollback {tmp_path / 'out.csv'}" in message
    assert path.read_bytes() == before


def test_resume_with_the_same_contents_goes_on(tmp_path: Path) -> None:
    """The same names and contents resume as before."""
    path = tmp_path / "out.csv.journal"
    RunJournal(str(path), META, digests=DIGESTS).open(resume=False)

    RunJournal(str(path), META, digests=list(DIGESTS)).open(resume=True)


def test_a_journal_without_digests_resumes_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal of the previous release (no digests) still resumes, warning on one line."""
    path = tmp_path / "out.csv.journal"
    path.write_bytes(orjson.dumps({"format": "ghl-migrate-journal/1", **META}) + b"\n")

    journal = RunJournal(str(path), META, digests=DIGESTS)
    journal.open(resume=True)
    journal.close()

    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "cannot be checked" in lines[0]


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (lambda lines: [lines[0], b"{not json", *lines[1:]], 2),
        (lambda lines: [lines[0], b"[1, 2]", *lines[1:]], 2),
        (lambda lines: [b'{"format": "ghl-migrate-jou', *lines[1:]], 1),
    ],
    ids=["middle-not-json", "middle-not-an-object", "first-line"],
)
def test_a_damaged_line_is_an_error_naming_file_and_line(
    tmp_path: Path, damage: Callable[[list[bytes]], list[bytes]], line: int
) -> None:
    """A damaged line that is not the last is a ConfigError naming the file and line."""
    path = tmp_path / "out.csv.journal"
    journal = opened(path, resume=False)
    journal.intent(record("r1"), {"action": "create"})
    journal.close()
    path.write_bytes(b"\n".join(damage(path.read_bytes().splitlines())) + b"\n")

    with pytest.raises(ConfigError, match=rf"journal {path}, line {line}\b.*restore it"):
        opened(path, resume=True)
    with pytest.raises(ConfigError, match=rf"line {line}\b"):
        pending_intents(str(path))


def test_a_full_disk_when_starting_is_a_config_error(tmp_path: Path) -> None:
    """A journal that cannot be written when the run starts: ConfigError, nothing sent."""
    path = tmp_path / "out.csv.journal"
    path.symlink_to("/dev/full")

    with pytest.raises(ConfigError, match=r"cannot write .*: the disk is full; nothing was sent"):
        opened(path, resume=False)


def test_a_full_disk_mid_run_fails_this_intent_and_every_later_one(tmp_path: Path) -> None:
    """An intent that cannot be written raises StorageError, and so does every later one."""
    path = tmp_path / "out.csv.journal"
    journal = opened(path, resume=False)
    os.dup2(os.open("/dev/full", os.O_WRONLY), journal._log._fd)  # type: ignore[arg-type]

    for ident in ("r1", "r2"):
        with pytest.raises(StorageError, match="the disk is full"):
            journal.intent(record(ident), {})
    journal.close()  # closes without trying to sync what failed
