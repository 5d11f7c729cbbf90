"""The run: job files in, one outcome per record out, whatever happens in between.

Structure (one task group, no bare tasks)::

    round-robin feed ──▶ N workers ──▶ kind.process(record) ──▶ report row

The workers share one iterator that yields records round-robin across locations, so a large
location cannot starve the rest; a worker takes the next record only when it is free, which
is the backpressure. Each finished record is written to
the report at once. Stopping (``Runner.stop``, Ctrl-C or SIGTERM) stops feeding and sending,
lets in-flight requests finish within ``drain_timeout``, then cancels what is left; a second
signal cancels at once. Whatever way the run ends, the report is finalised under a shielded
scope: records without an outcome become ``not_run`` and the file is rewritten to exactly one
row per input record.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any, Protocol

import anyio
import structlog

from .client import Client, TokenLookup
from .errors import (
    ConfigError,
    HTTPStatusError,
    RecordError,
    RequestError,
    RunStopped,
    StorageError,
    os_error_text,
)
from .job import JobKind, Journal
from .journal import RunJournal, journal_meta, journal_path
from .limiter import DailyLimitExhausted, LocationGates
from .lock import FileLock
from .model import FAILED, INVALID, NOT_RUN, Outcome, Record
from .report import ReportWriter, read_report, report_format, write_report_atomically
from .retry import RetryPolicy
from .source import SourceRow, read_job_files
from .transport import AiohttpTransport, Transport

__all__ = [
    "GENERIC_COLUMNS",
    "Observer",
    "RunConfig",
    "RunResult",
    "Runner",
    "Summary",
    "load_records",
    "run",
]

log = structlog.get_logger("engine")

#: report columns the engine fills for every kind
GENERIC_COLUMNS = frozenset(
    {"source", "location_id", "outcome", "http_status", "attempts", "error"}
)

_INVALID_IDENT = "\x00invalid:"
#: how a report row of a record no longer in the job files is marked when it is kept
_KEPT = "kept from an earlier run of this report: no longer in the job files"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything a run needs besides the job kind, tokens and transport.

    Times are in seconds. ``rate`` is the starting budget per location (requests, interval);
    the server's headers and 429s refine it.
    """

    job_files: tuple[str, ...]
    report: str | None = None
    resume: bool = False
    concurrency: int = 32
    rate: tuple[int, float] = (100, 10.0)
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: after a stop, how long in-flight work may take before it is cancelled (None: timeout + 5)
    drain_timeout: float | None = None
    #: install SIGINT/SIGTERM handlers (the CLI does; a library caller usually does not)
    handle_signals: bool = False
    #: the server lives no longer than the run (an embedded sandbox): nothing the run does
    #: outlives it, so its journal says so, a later ephemeral run may replace its report (a
    #: resume starts over), and a rollback refuses it. A real run's report is never replaced.
    ephemeral: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a person wants to know at the end of a run."""

    total: int
    #: records carried out by this run (not resumed as done, not left unsent)
    processed: int
    counts: Mapping[str, int]
    failed_by_location: Mapping[str, int]
    elapsed: float
    requests: int
    retries: int
    rate_limited: int
    #: answers 500/502/503/504, and connections that failed or timed out
    server_errors: int
    transport_errors: int
    stopped: bool
    exit_code: int
    report: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RunResult:
    """Every outcome, in input order, and the summary."""

    outcomes: tuple[Outcome, ...]
    summary: Summary

    def __repr__(self) -> str:
        # Short on purpose. When asyncio.run() ends it restores the SIGINT handler, and
        # signal.getsignal() fails an enum lookup whose message reprs the handler: a partial
        # holding the main task, whose repr includes its result. A full repr of 100,000
        # outcomes costs seconds of CPU and a transient string of tens of MB, twice a run.
        return f"RunResult(<{len(self.outcomes)} outcomes>, summary={self.summary!r})"


class Observer(Protocol):
    """Progress callbacks (the CLI draws a progress bar with them)."""

    def started(self, total: int, done: int) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DONE = "done"


class _NullJournal:
    def intent(self, record: Record, fields: Mapping[str, str]) -> None:
        pass

    def pending(self, record: Record) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Context:
    client: Client
    journal: Journal


def load_records(kind: JobKind, paths: Sequence[str]) -> tuple[list[Record], dict[int, Outcome]]:
    """Read and parse every job file. Returns the records and the outcomes already known
    (``invalid`` rows, keyed by position). Raises ``JobFileError`` for unreadable files."""
    records: list[Record] = []
    known: dict[int, Outcome] = {}
    first_seen: dict[str, str] = {}
    for row in read_job_files(list(paths), kind):
        position = len(records)
        record, problem = _parse(kind, row)
        if not problem and record.ident in first_seen:
            problem = f"repeats {first_seen[record.ident]} (same location, action and key)"
        if problem:
            record = replace(record, ident=_INVALID_IDENT + record.source)
            known[position] = Outcome(record=record, status=INVALID, error=problem)
        else:
            first_seen[record.ident] = record.source
        records.append(record)
    return records, known


def _parse(kind: JobKind, row: SourceRow) -> tuple[Record, str]:
    if row.problem:
        return kind.invalid_record(row.source, row.values), row.problem
    try:
        return kind.parse(row.source, row.values), ""
    except RecordError as exc:
        return kind.invalid_record(row.source, row.values), str(exc)


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


def _read_existing(path: str) -> list[dict[str, str]]:
    try:
        return read_report(path)
    except OSError as exc:
        raise ConfigError(f"report {path}: cannot be read ({os_error_text(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"report {path}: not UTF-8, so not a report this tool wrote") from None


def _round_robin(records: Sequence[Record], indexes: Sequence[int]) -> Iterator[int]:
    by_location: dict[str, list[int]] = defaultdict(list)
    for index in indexes:
        by_location[records[index].location_id].append(index)
    queues = [iter(q) for q in by_location.values()]
    while queues:
        alive = []
        for queue in queues:
            item = next(queue, None)
            if item is not None:
                alive.append(queue)
                yield item
        queues = alive


class Runner:
    """One run of one job. Not reusable: make a new one for the next run."""

    def __init__(
        self,
        kind: JobKind,
        config: RunConfig,
        *,
        tokens: TokenLookup,
        transport: Transport | None = None,
        observer: Observer | None = None,
        records: Sequence[Record] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kind = kind
        self._given = None if records is None else list(records)
        self._config = config
        self._tokens = tokens
        self._transport = transport
        self._observer = observer
        self._clock = clock
        self._state = _State.NEW
        self._stopping = False
        self._processed = 0
        self._outcomes: list[Outcome | None] = []
        self._records: list[Record] = []
        self._index: dict[str, int] = {}
        self._writer: ReportWriter | None = None
        self._lock: FileLock | None = None
        #: settled rows of records no longer in the job: kept at the end of the report
        self._kept: list[dict[str, str]] = []
        #: the first report or journal write that failed (the run stops sending at once)
        self._storage_error: StorageError | None = None
        self._client: Client | None = None
        self._work_scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # -- public ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop feeding and sending; in-flight work finishes within the drain timeout."""
        if self._stopping:
            return
        self._stopping = True
        if self._client is not None:
            self._client.stop()
        if self._tg is not None:
            self._tg.start_soon(self._drain_deadline)

    async def run(self) -> RunResult:
        """Carry out the job and return every outcome.

        Raises ``ConfigError`` before anything is sent when the job files or the report
        cannot be used (``LockHeld`` when another process is using the report), and
        ``StorageError`` after the run when its report or journal could not be written: it
        then stopped sending at once, and a resume continues it."""
        if self._state is not _State.NEW:
            raise RuntimeError("a Runner runs once; create a new one")
        self._state = _State.RUNNING
        started = self._clock()
        if self._given is None:
            records, known = load_records(self._kind, self._config.job_files)
        else:
            records, known = self._given, {}
        self._records = records
        self._outcomes = [known.get(i) for i in range(len(records))]
        self._index = {r.ident: i for i, r in enumerate(records)}
        journal = self._open_report()  # holds the report's lock from here on
        try:
            result = await self._run(started, journal)
        finally:
            if self._lock is not None:
                self._lock.release()
        self._state = _State.DONE
        if self._storage_error is not None:
            raise self._stopped_by_storage(self._storage_error)
        return result

    async def _run(self, started: float, journal: Journal) -> RunResult:
        records = self._records
        owned = self._transport is None
        transport = self._transport or AiohttpTransport(
            timeout=self._config.timeout, limit=self._config.concurrency
        )
        rate, interval = self._config.rate
        self._client = Client(
            transport=transport,
            tokens=self._tokens,
            gates=LocationGates(rate, interval),
            read_rate=self._kind.read_rate,
            policy=self._config.retry,
        )
        context = _Context(client=self._client, journal=journal)
        todo = [i for i, o in enumerate(self._outcomes) if o is None]
        log.info(
            "run started",
            records=len(records),
            to_send=len(todo),
            locations=len({records[i].location_id for i in todo}),
            concurrency=self._config.concurrency,
        )
        if self._kept:
            log.warning(
                f"{len(self._kept)} settled row(s) of {self._config.report} belong to records "
                "no longer in the job files; they are kept at the end of the report"
            )
        if self._observer is not None:
            self._observer.started(len(records), len(records) - len(todo))
        try:
            await self._work(todo, context)
        finally:
            with anyio.move_on_after(30, shield=True):
                result = self._finish(started, journal)
                if owned:
                    await transport.aclose()
        return result

    # -- setup ----------------------------------------------------------------------------

    def _open_report(self) -> Journal:
        path = self._config.report
        if path is None:
            return _NullJournal()
        report_format(path)  # refuse an unknown extension before anything else
        if os.path.isdir(path):
            raise ConfigError(f"report {path} is a folder: give a file path ({path}/out.csv?)")
        self._lock = FileLock(path, what="report")
        self._lock.acquire()
        try:
            return self._open_files(path)
        except BaseException:
            self._lock.release()
            raise

    def _open_files(self, path: str) -> RunJournal:
        """Check the report and journal against this run and open both, or raise
        ``ConfigError`` having sent nothing (and left no file behind that it made)."""
        self._replace_ephemeral(path)
        exists = os.path.exists(path)
        if exists and not self._config.resume:
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
            "job_files": sorted(os.path.basename(p) for p in self._config.job_files),
        }
        made = [p for p in (path, journal_path(path)) if not os.path.lexists(p)]
        journal = RunJournal(
            journal_path(path),
            meta,
            # Records handed over directly (a rollback's plan) are not read from the files
            # named, so only records read from job files are held to those files' contents.
            digests=_digests(self._config.job_files) if self._given is None else None,
            ephemeral=self._config.ephemeral,
        )
        self._writer = ReportWriter(path, self._kind.columns)
        try:
            journal.open(resume=self._config.resume)
            if exists:
                self._carry_over(_read_existing(path))
            self._writer.open()
            for outcome in self._outcomes:
                if outcome is not None and outcome.status == INVALID and not exists:
                    self._writer.write(self._row(outcome))
        except (ConfigError, StorageError) as exc:
            for log_file in (journal, self._writer):
                with contextlib.suppress(StorageError):
                    log_file.close()
            self._writer = None
            for made_here in made:
                with contextlib.suppress(OSError):
                    os.unlink(made_here)
            if isinstance(exc, StorageError):
                raise ConfigError(f"{exc}; nothing was sent") from None
            raise
        return journal

    def _replace_ephemeral(self, path: str) -> None:
        """A report of an ephemeral run records nothing that still exists: the next
        ephemeral run replaces it (saying so); any other run leaves it alone."""
        earlier = journal_meta(journal_path(path))
        if earlier is None or earlier.get("ephemeral") is not True:
            return
        if not self._config.ephemeral:
            raise ConfigError(
                f"report {path} came from a run against a throwaway server (an embedded "
                "sandbox), so it records nothing real; choose another --report path"
            )
        if self._config.resume:
            log.warning(
                f"starting {path} over: the throwaway server its run used is gone, with all "
                "it held, so that run cannot be resumed"
            )
        else:
            log.warning(
                f"replacing {path}: it came from a run against a throwaway server (an "
                "embedded sandbox), which kept nothing"
            )
        for old in (path, journal_path(path)):
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError(f"cannot replace {old} ({os_error_text(exc)})") from None

    def _carry_over(self, rows: list[dict[str, str]]) -> None:
        """Keep the final outcomes of an earlier run of this job; the rest run again.

        Settled rows of records that are no longer in the job are kept too, at the end of
        the report: a fact such as "created" must never fall out of it (rollback reads it).
        """
        latest: dict[str, dict[str, str]] = {}
        for row in rows:
            # Invalid rows are decided afresh from the job files (the row may have been fixed).
            if row.get("outcome") in self._kind.final_statuses and row["outcome"] != INVALID:
                latest[self._kind.row_ident(row)] = row
            elif row.get("outcome") != INVALID:
                latest.pop(self._kind.row_ident(row), None)
        for ident, row in latest.items():
            index = self._index.get(ident)
            if index is None:
                error = row.get("error", "")
                if not error.startswith(_KEPT):
                    row["error"] = f"{_KEPT}; {error}" if error else _KEPT
                self._kept.append(row)
                continue
            if self._outcomes[index] is not None:
                continue
            record = self._records[index]
            own = self._kind.report_fields(record)
            self._outcomes[index] = Outcome(
                record=record,
                status=row["outcome"],
                http_status=int(row["http_status"])
                if row.get("http_status", "").isdigit()
                else None,
                attempts=int(row["attempts"]) if row.get("attempts", "").isdigit() else 0,
                error=row.get("error", ""),
                fields={
                    c: row.get(c, "")
                    for c in self._kind.columns
                    if c not in GENERIC_COLUMNS and c not in own
                },
            )

    # -- work -----------------------------------------------------------------------------

    async def _work(self, todo: list[int], context: _Context) -> None:
        # Workers pull from one shared round-robin iterator: next() never awaits, so no two
        # workers are inside it at once, and a worker takes a record only when it is free
        # (the backpressure a bounded stream gave, without two checkpoints per record).
        feed = _round_robin(self._records, todo)
        async with anyio.create_task_group() as outer:
            self._tg = outer
            if self._config.handle_signals:
                outer.start_soon(self._watch_signals)
            with anyio.CancelScope() as self._work_scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(max(1, min(self._config.concurrency, len(todo)))):
                        tg.start_soon(self._consume, feed, context)
            outer.cancel_scope.cancel()  # the signal watcher and drain timer end with the work

    async def _consume(self, feed: Iterator[int], context: _Context) -> None:
        for index in feed:
            if self._stopping:
                return  # what is left stays not_run (see _finish)
            outcome = await self._process(self._records[index], context)
            self._record(index, outcome)

    async def _process(self, record: Record, context: _Context) -> Outcome:
        try:
            return await self._kind.process(record, context)
        except RunStopped:
            return Outcome(record=record, status=NOT_RUN, error="stopped before it was sent")
        except StorageError as exc:  # the journal could not note the write: never sent
            self._storage_failed(exc)
            return Outcome(record=record, status=NOT_RUN, error=f"not sent: {exc}")
        except DailyLimitExhausted:
            return Outcome(
                record=record,
                status=NOT_RUN,
                error=f"daily request limit of location {record.location_id} is spent; "
                "resume tomorrow",
            )
        except HTTPStatusError as exc:
            return Outcome(
                record=record,
                status=FAILED,
                http_status=exc.status,
                attempts=exc.attempts,
                error=f"gave up after {exc.attempts} attempts: {exc}",
            )
        except RequestError as exc:
            return Outcome(record=record, status=FAILED, attempts=exc.attempts, error=str(exc))
        except Exception as exc:  # a bug in a job kind must not lose the record
            log.exception("internal error", source=record.source)
            return Outcome(record=record, status=FAILED, error=f"internal error: {exc!r}")

    def _record(self, index: int, outcome: Outcome) -> None:
        self._outcomes[index] = outcome
        if outcome.status != NOT_RUN:
            self._processed += 1
        if self._writer is not None:
            try:
                self._writer.write(self._row(outcome))
            except StorageError as exc:
                self._storage_failed(exc)
        if self._observer is not None:
            self._observer.finished(outcome)

    def _row(self, outcome: Outcome) -> dict[str, Any]:
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

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self._stopping:
                    log.warning(
                        "stopping: no new requests; waiting for those in flight "
                        "(signal again to abandon them)",
                        signal=signal.Signals(signum).name,
                    )
                    self.stop()
                elif self._work_scope is not None:
                    self._work_scope.cancel()

    async def _drain_deadline(self) -> None:
        drain = self._config.drain_timeout
        await anyio.sleep(self._config.timeout + 5 if drain is None else drain)
        if self._work_scope is not None:
            self._work_scope.cancel()

    def _storage_failed(self, exc: StorageError) -> None:
        """The report or journal cannot be written: send nothing more."""
        if self._storage_error is None:
            self._storage_error = exc
            self.stop()

    def _stopped_by_storage(self, exc: StorageError) -> StorageError:
        report = self._config.report
        remedy = (
            "free some space"
            if exc.error.errno in (errno.ENOSPC, errno.EDQUOT)
            else "put that right"
        )
        return StorageError(
            exc.path,
            exc.error,
            advice=f"the run stopped and sent nothing more; {remedy}, then run the same "
            f"command with --resume ({report} and its journal hold everything done so far)",
        )

    # -- the end --------------------------------------------------------------------------

    def _finish(self, started: float, journal: Journal) -> RunResult:
        outcomes: list[Outcome] = []
        for index, outcome in enumerate(self._outcomes):
            if outcome is None:
                outcome = Outcome(
                    record=self._records[index],
                    status=NOT_RUN,
                    error="not sent: the run was stopped" if self._stopping else "not sent",
                )
                self._outcomes[index] = outcome
            outcomes.append(outcome)
        if self._writer is not None:
            try:
                self._writer.close()
            except StorageError as exc:
                self._storage_failed(exc)
            rows = chain((self._row(o) for o in outcomes), self._kept)
            try:
                write_report_atomically(self._writer.path, self._kind.columns, rows)
            except StorageError as exc:
                # The append-only report stays: every row written so far, last one wins.
                self._storage_failed(exc)
        if isinstance(journal, RunJournal):
            try:
                journal.close()
            except StorageError as exc:
                self._storage_failed(exc)
        counts = Counter(o.status for o in outcomes)
        failed_by_location = Counter(
            o.record.location_id for o in outcomes if o.status not in self._kind.ok_statuses
        )
        stats = self._client.stats if self._client is not None else None
        ok = all(o.status in self._kind.ok_statuses for o in outcomes)
        summary = Summary(
            total=len(outcomes),
            processed=self._processed,
            counts=dict(counts),
            failed_by_location=dict(failed_by_location),
            elapsed=self._clock() - started,
            requests=stats.requests if stats else 0,
            retries=stats.retries if stats else 0,
            rate_limited=stats.rate_limited if stats else 0,
            server_errors=stats.server_errors if stats else 0,
            transport_errors=stats.transport_errors if stats else 0,
            stopped=self._stopping,
            exit_code=0 if ok else 1,
            report=self._config.report,
        )
        log.info(
            "run finished",
            **{k: v for k, v in sorted(counts.items())},
            elapsed=round(summary.elapsed, 2),
        )
        return RunResult(outcomes=tuple(outcomes), summary=summary)


async def run(
    kind: JobKind,
    config: RunConfig,
    *,
    tokens: TokenLookup,
    transport: Transport | None = None,
    observer: Observer | None = None,
    records: Sequence[Record] | None = None,
) -> RunResult:
    """Run one job to the end and return every outcome and the summary.

    The records come from ``config.job_files``, or from ``records`` when given (the job
    files then only name the run in its journal)."""
    runner = Runner(
        kind, config, tokens=tokens, transport=transport, observer=observer, records=records
    )
    return await runner.run()
