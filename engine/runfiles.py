"""The files of one run: its report, journal, lock and scratch store, checked and kept right.

A run with ``--report out.csv`` works with four files beside it:

- ``out.csv.lock``, held for the whole run (:mod:`engine.lock`), so two processes never
  work on one report;
- ``out.csv.store``, the scratch store of records and outcomes (:mod:`engine.store`),
  rebuilt by every run and deleted at the end;
- ``out.csv.journal``, the write intents (:mod:`engine.journal`), checked against this run
  (same job kind, options and job file contents) before a resume continues it;
- ``out.csv.timeline``, what was sent to each location second by second, and when each run
  started and ended (:mod:`engine.timeline`), for the report's page;
- ``out.csv`` itself, append-only while the run goes, rewritten at the end.

What an earlier run of the same report settled is carried over into the store, and a
settled row whose record is no longer in the job is kept at the end of the report: a fact
such as ``created`` must never fall out of it, since rollback reads it. A report or journal
that cannot be written mid-run (a full disk) makes the run stop sending at once; what the
files hold up to then stays consistent, so a resume continues it.

A run without a report has only a temporary store.

A plan (``RunConfig.plan``) writes the same report, with planned outcomes, and a journal
that says it is a plan and notes no intent. A plan's report records nothing done: the next
plan on the same path replaces it, and a run, a resume or a rollback refuses it. A plan
never replaces a report that a run wrote.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

import structlog

from .errors import ConfigError, StorageError, os_error_text
from .job import JobKind
from .journal import RunJournal, journal_meta, journal_path
from .lock import FileLock
from .model import BLOCKED, INVALID, Outcome, Record
from .report import (
    ReportWriter,
    iter_report,
    report_columns,
    report_format,
    write_report_atomically,
    write_report_lines,
)
from .shard import Shard
from .store import RunStore
from .timeline import TimelineWriter, timeline_path

__all__ = ["GENERIC_COLUMNS", "RunFiles"]

log = structlog.get_logger("engine")

#: report columns the engine fills for every kind
GENERIC_COLUMNS = frozenset(
    {"source", "location_id", "outcome", "http_status", "attempts", "error"}
)
#: how a report row of a record no longer in the job files is marked when it is kept
_KEPT = "kept from an earlier run of this report: no longer in the job files"

Row = Mapping[str, Any]


def _digests(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, SHA-256 hex) of each job file."""
    digests = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({os_error_text(exc)})") from None
        digests.append((os.path.basename(path), digest))
    return digests


class RunFiles:
    """Opens, checks, writes and finishes the files of one run (see the module docstring).

    ``job_files`` name the run in its journal; their contents are held to the journal's
    only when ``read_job_files`` (records handed over directly, such as a rollback's plan,
    are not read from the files named). ``ephemeral``: the server does not outlive the run.
    ``shard``: the run does one shard of the job, which its journal names.
    """

    def __init__(
        self,
        kind: JobKind,
        report: str | None,
        *,
        job_files: Sequence[str],
        resume: bool,
        ephemeral: bool,
        read_job_files: bool,
        plan: bool = False,
        shard: Shard | None = None,
    ) -> None:
        self._kind = kind
        self._shard = shard
        self.report = report
        self._job_files = job_files
        self._resume = resume
        self._ephemeral = ephemeral
        self._read_job_files = read_job_files
        self._plan = plan
        self._lock: FileLock | None = None
        self._journal: RunJournal | None = None
        self._writer: ReportWriter | None = None
        self._resumed = False
        #: the run's timeline, told of every attempt (None without a report)
        self.timeline: TimelineWriter | None = None
        self.kept = 0
        #: the first report or journal write that failed (the run stops sending at once)
        self.storage_error: StorageError | None = None

    # -- opening ------------------------------------------------------------------------

    def open(self, load: Callable[[RunStore], None]) -> RunStore:
        """The run's store, filled by ``load``, with what an earlier run of the report
        settled carried over. Raises ``ConfigError`` (``LockHeld`` when another process is
        using the report) having sent nothing and left behind no file it made."""
        path = self.report
        if path is None:
            store = self._new_store(None)
            try:
                load(store)
            except BaseException:
                store.close()
                raise
            return store
        report_format(path)  # refuse an unknown extension before anything else
        if os.path.isdir(path):
            raise ConfigError(f"report {path} is a folder: give a file path ({path}/out.csv?)")
        self._lock = FileLock(path, what="report")
        self._lock.acquire()
        try:
            self._replace_scratch(path)
            store = self._new_store(f"{path}.store")
            try:
                load(store)
                self._open_files(path, store)
            except BaseException:
                store.close()
                raise
        except BaseException:
            self.release()
            raise
        return store

    @staticmethod
    def _new_store(path: str | None) -> RunStore:
        # Beside the report: on the same disk as the user's data, not in a RAM-backed /tmp.
        try:
            return RunStore(path)
        except OSError as exc:
            where = path or "a temporary file"
            raise ConfigError(f"cannot write {where}: {os_error_text(exc)}") from None

    def _open_files(self, path: str, store: RunStore) -> None:
        exists = os.path.exists(path)
        if exists and not self._resume:
            raise ConfigError(
                f"report {path} already exists and may be the only record of what a run "
                "created: pass --resume to continue that run, or choose another --report path"
            )
        if exists and not os.path.exists(journal_path(path)):
            raise ConfigError(
                f"report {path} has no journal ({journal_path(path)}) beside it, so it cannot "
                "be checked against this job or resumed exactly; put the journal back, or "
                "choose another --report path"
            )
        meta: dict[str, Any] = {
            "kind": self._kind.name,
            **self._kind.identity(),
            "job_files": sorted(os.path.basename(p) for p in self._job_files),
        }
        if self._shard is not None:
            meta["shard"] = str(self._shard)
        made = [p for p in (path, journal_path(path)) if not os.path.lexists(p)]
        journal = RunJournal(
            journal_path(path),
            meta,
            digests=_digests(self._job_files) if self._read_job_files else None,
            ephemeral=self._ephemeral,
            plan=self._plan,
        )
        writer = ReportWriter(path, self._kind.columns)
        try:
            store.note_intents(journal.open(resume=self._resume))
            if exists:
                self._carry_over(store, path)
                self._upgrade_header(path)
            writer.open()
            if not exists:
                for outcome in store.outcomes(BLOCKED if self._plan else INVALID):
                    writer.write(self.row(outcome))
        except (ConfigError, StorageError) as exc:
            for log_file in (journal, writer):
                with contextlib.suppress(StorageError):
                    log_file.close()
            for made_here in made:
                with contextlib.suppress(OSError):
                    os.unlink(made_here)
            if isinstance(exc, StorageError):
                raise ConfigError(f"{exc}; nothing was sent") from None
            raise
        self._journal, self._writer = journal, writer
        self._resumed = exists
        self.timeline = TimelineWriter(timeline_path(path))
        self.timeline.open(fresh=not exists)  # a new report starts a new timeline
        if self.kept:
            log.warning(
                f"{self.kept} settled row(s) of {path} belong to records no longer in the "
                "job files; they are kept at the end of the report"
            )

    def _replace_scratch(self, path: str) -> None:
        """A report of a plan, or of an ephemeral run, records nothing that still exists:
        the next plan (ephemeral run) replaces it, saying so; any other run refuses it. A
        plan never replaces a report that a run wrote."""
        earlier = journal_meta(journal_path(path))
        was_plan = earlier is not None and earlier.get("plan") is True
        if self._plan:
            if was_plan:
                log.warning(f"replacing {path}: it is the report of an earlier plan")
                self._remove(path)
            elif os.path.lexists(path):
                raise ConfigError(
                    f"report {path} already exists and is not a plan's: a plan never replaces "
                    "a run's report; choose another --report path"
                )
            return
        if was_plan:
            raise ConfigError(
                f"report {path} is a plan's (ghl-migrate plan): it says what a run would do, "
                "not what one did, so no run continues it; choose another --report path"
            )
        if earlier is None or earlier.get("ephemeral") is not True:
            return
        if not self._ephemeral:
            raise ConfigError(
                f"report {path} came from a run against a throwaway server (an embedded "
                "sandbox), so it records nothing real; choose another --report path"
            )
        if self._resume:
            log.warning(
                f"starting {path} over: the throwaway server its run used is gone, with all "
                "it held, so that run cannot be resumed"
            )
        else:
            log.warning(
                f"replacing {path}: it came from a run against a throwaway server (an "
                "embedded sandbox), which kept nothing"
            )
        self._remove(path)

    @staticmethod
    def _remove(path: str) -> None:
        """Delete a report, its journal and timeline that record nothing real."""
        for old in (path, journal_path(path), timeline_path(path)):
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError(f"cannot replace {old} ({os_error_text(exc)})") from None

    def _carry_over(self, store: RunStore, path: str) -> None:
        """Keep the final outcomes of an earlier run of this job; the rest run again.
        Settled rows of records no longer in the job are kept for the end of the report."""
        final = self._kind.final_statuses
        try:
            for row in iter_report(path):
                status = row.get("outcome")
                # Invalid rows are decided afresh from the job files (the row may be fixed).
                if status != INVALID:
                    store.carry(self._kind.row_ident(row), row if status in final else None)
        except OSError as exc:
            raise ConfigError(f"report {path}: cannot be read ({os_error_text(exc)})") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"report {path}: not UTF-8, so not a report this tool wrote"
            ) from None
        for found, row in store.carried():
            if found is not None:
                pos, record = found
                store.set_outcome(pos, self._restore(record, row))
            elif not store.has_ident(self._kind.row_ident(row)):
                error = row.get("error", "")
                if not error.startswith(_KEPT):
                    row["error"] = f"{_KEPT}; {error}" if error else _KEPT
                store.keep_extra(row)
                self.kept += 1
        store.commit()

    def _upgrade_header(self, path: str) -> None:
        """A CSV report written with other columns (by an earlier release) is rewritten with
        this kind's, so that the rows this run appends match its header."""
        try:
            columns = report_columns(path)
            if columns is not None and columns != list(self._kind.columns):
                write_report_atomically(path, self._kind.columns, iter_report(path))
        except OSError as exc:
            raise ConfigError(f"report {path}: cannot be read ({os_error_text(exc)})") from None

    def _restore(self, record: Record, row: Mapping[str, str]) -> Outcome:
        own = self._kind.report_fields(record)
        return Outcome(
            record=record,
            status=row["outcome"],
            http_status=int(row["http_status"]) if row.get("http_status", "").isdigit() else None,
            attempts=int(row["attempts"]) if row.get("attempts", "").isdigit() else 0,
            error=row.get("error", ""),
            fields={
                c: row.get(c, "")
                for c in self._kind.columns
                if c not in GENERIC_COLUMNS and c not in own
            },
        )

    # -- while running ------------------------------------------------------------------

    def row(self, outcome: Outcome) -> dict[str, Any]:
        """The report row of ``outcome``."""
        record = outcome.record
        return {
            **outcome.fields,
            **self._kind.report_fields(record),
            "source": record.source,
            "location_id": record.location_id,
            "outcome": outcome.status,
            "http_status": outcome.http_status,
            "attempts": outcome.attempts,
            "error": outcome.error,
        }

    def intent(self, record: Record, fields: Mapping[str, str]) -> None:
        """Note a write for ``record`` before it is sent; ``StorageError`` when it cannot be
        noted (the write must then not be sent)."""
        if self._journal is not None:
            self._journal.intent(record, fields)

    def write(self, outcome: Outcome) -> bytes | None:
        """Append the outcome's row; return the line written, or None when there is no
        report or it cannot be written (then :attr:`storage_error` is set)."""
        if self._writer is None:
            return None
        try:
            return self._writer.write(self.row(outcome))
        except StorageError as exc:
            self.failed(exc)
            return None

    def failed(self, exc: StorageError) -> None:
        """Remember the first storage failure."""
        if self.storage_error is None:
            self.storage_error = exc

    # -- the end --------------------------------------------------------------------------

    def finish(self, store: RunStore) -> None:
        """Rewrite the report to one row per record, in input order, then the kept rows."""
        if self._writer is not None:
            try:
                self._writer.close()
            except StorageError as exc:
                self.failed(exc)
            encode = self._writer.encode
            lines = store.report_lines(lambda outcome: encode(self.row(outcome)))
            extras = (encode(row) for row in store.extras())
            try:
                written = write_report_lines(
                    self._writer.path, self._kind.columns, chain(lines, extras)
                )
            except StorageError as exc:
                # The append-only report stays: every row written so far, last one wins.
                self.failed(exc)
            else:
                if self._journal is not None and self.storage_error is None:
                    try:
                        self._journal.ended(written)
                    except StorageError as exc:
                        self.failed(exc)
        if self._journal is not None:
            try:
                self._journal.close()
            except StorageError as exc:
                self.failed(exc)

    def started(self, **facts: Any) -> None:
        """Note in the timeline that this run starts, with ``facts`` about it."""
        if self.timeline is not None:
            self.timeline.started(resumed=self._resumed, **facts)

    def ended(self, **facts: Any) -> None:
        """Note in the timeline how this run ended (``facts``: exit code, counts, ...)."""
        if self.timeline is not None:
            self.timeline.finished(**facts)

    def stopped_by_storage(self) -> StorageError | None:
        """The error to raise after the run when a report or journal write failed."""
        exc = self.storage_error
        if exc is None:
            return None
        remedy = (
            "free some space"
            if exc.error.errno in (errno.ENOSPC, errno.EDQUOT)
            else "put that right"
        )
        return StorageError(
            exc.path,
            exc.error,
            advice=f"the run stopped and sent nothing more; {remedy}, then run the same "
            f"command with --resume ({self.report} and its journal hold everything done "
            "so far)",
        )

    def release(self) -> None:
        """Let other processes use the report."""
        if self.timeline is not None:
            self.timeline.close()  # without an end line when the run did not end normally
        if self._lock is not None:
            self._lock.release()
            self._lock = None
