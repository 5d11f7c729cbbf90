"""The run: job files in, one outcome per record out, whatever happens in between.

Structure (one task group, no bare tasks)::

    job files ──▶ store ──▶ round-robin feed ──▶ workers ──▶ kind.process(record) ──▶ report
                                                     │
                                     prepare(location), once per location

Records are parsed into an on-disk store first (:mod:`engine.loading`), so nothing is sent
from a set of job files that turns out to be broken, and memory does not grow with the job.
The workers share one feed that hands records out round-robin across locations
(:mod:`engine.feed`); a worker takes the next record only when it is free, which is the
backpressure. There are as many workers as the work needs: enough for the budgets of the
locations that still have records at the answers' latency, up to a bound
(:mod:`engine.concurrency`). Each location is prepared once (:mod:`engine.locations`). A
kind's work is a generator of requests that the run drives (:mod:`engine.steps`): writes
are noted in the journal before they are sent. Each finished record is written to the
report at once.

A plan (``RunConfig.plan``) is the same run with every write left out: it reads what the
run would read, paced the same way, and where a kind yields a write it raises
:class:`~engine.steps.Planned` at that ``yield`` instead of sending (and notes no journal
intent). The record's outcome is then the write's ``plan`` (``create``, ``delete``), or
the outcome the kind returns for it; those are the plan's *pending* changes. A record the
run would not carry out (an invalid row, a kind's check that fails, a location that cannot
be read) is ``blocked``, with the reason. The summary counts the pending records; its exit
code is 1 when a record is neither ok nor pending.

Stopping (``Runner.stop``, Ctrl-C or SIGTERM) stops feeding and sending, lets in-flight
requests finish within ``drain_timeout``, then cancels what is left; a second signal cancels
at once. Whatever way the run ends, the report is finalised under a shielded scope: records
without an outcome become ``not_run`` and the file is rewritten to exactly one row per input
record, in input order.

A host that cannot be reached (the client says so once a request has used up its attempts
without ever connecting) stops the run the same way, with one message naming the host and
the cause; its records are ``not_run`` with that reason, and when nothing at all reached
the server the exit code is 2, as for any run that sent nothing. A refused credential
(``CredentialRefused``, from a token provider: an expired agency token) stops it the same
way, its message the records' reason and the summary's; the exit code is 2, since it must
be renewed before a resume can finish the job.

Each record is processed with ``location`` and ``source`` bound in structlog's context
variables (each worker is its own task, so they never mix), so every line logged about a
record, by the engine or the job kind, names both.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from .client import Client, Exchange
from .concurrency import Sizer, in_flight, process_bound
from .credentials import TokenLookup, TokenProvider
from .errors import (
    ConfigError,
    ConnectFailed,
    CredentialRefused,
    DailyLimitExhausted,
    HTTPStatusError,
    LocationError,
    RequestError,
    RunStopped,
    StorageError,
)
from .feed import Feed
from .gates import LocationGates
from .job import JobKind
from .junit import check_junit_path, write_junit
from .loading import load_job_files, load_records
from .locations import LocationStates
from .model import BLOCKED, FAILED, INVALID, NOT_RUN, Outcome, Record
from .result import Observer, RunConfig, RunResult, Summary
from .runfiles import GENERIC_COLUMNS, RunFiles
from .steps import Planned, Send, Write, drive
from .store import RunStore
from .transport import AiohttpTransport, Transport

__all__ = [
    "GENERIC_COLUMNS",
    "Observer",
    "RunConfig",
    "RunResult",
    "Runner",
    "Summary",
    "run",
]  # RunConfig, Summary, RunResult and Observer live in engine.result

log = structlog.get_logger("engine")

#: seconds between two looks at how many records the run should work on at once
_RESIZE_EVERY = 0.1


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DONE = "done"


def _eta(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class Runner:
    """One run of one job. Not reusable: make a new one for the next run."""

    def __init__(
        self,
        kind: JobKind,
        config: RunConfig,
        *,
        tokens: TokenLookup | TokenProvider,
        transport: Transport | None = None,
        observer: Observer | None = None,
        records: Iterable[Record] | None = None,
        clock: Callable[[], float] = time.monotonic,
        gates: LocationGates | None = None,
    ) -> None:
        self._kind = kind
        self._gates = gates
        self._given = records
        self._config = config
        self._tokens = tokens
        self._transport = transport
        self._observer = observer
        self._clock = clock
        self._state = _State.NEW
        self._stopping = False
        self._refused = ""  # why the credential tokens are minted with was refused, once known
        self._processed = 0
        self._pending = 0
        self._pending_statuses: set[str] = set()
        self._junit_error: StorageError | None = None
        self._left: dict[str, int] = {}
        self._spent: dict[str, str] = {}  # location -> when its daily budget surely renewed
        self._others = 0  # records of the job that belong to other shards
        self._store: RunStore | None = None
        self._files = RunFiles(
            kind,
            config.report,
            job_files=config.job_files,
            resume=config.resume,
            ephemeral=config.ephemeral,
            read_job_files=records is None,
            plan=config.plan,
            shard=config.shard,
        )
        self._client: Client | None = None
        self._bound = config.concurrency or process_bound()
        self._workers = 0
        self._target = 0
        self._sizer = Sizer()
        self._resized = -math.inf
        self._spawn: Callable[[], object] = lambda: None
        self._locations: LocationStates | None = None
        self._work_scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._unreachable = ""  # why the host cannot be reached, once known

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
        """Carry out the job and return the summary and every outcome.

        Raises ``ConfigError`` before anything is sent when the job files or the report
        cannot be used (``LockHeld`` when another process is using the report), and
        ``StorageError`` after the run when its report or journal could not be written: it
        then stopped sending at once, and a resume continues it."""
        if self._state is not _State.NEW:
            raise RuntimeError("a Runner runs once; create a new one")
        self._state = _State.RUNNING
        if self._config.plan and self._config.resume:
            raise ConfigError("a plan is never resumed: plan again (it sends no write)")
        if self._config.junit is not None:
            check_junit_path(self._config.junit, report=self._config.report)
        started = self._clock()
        self._store = self._files.open(self._load)  # holds the report's lock from here on
        try:
            result = await self._run(started, self._store)
        finally:
            self._files.release()
        self._state = _State.DONE
        if (error := self._files.stopped_by_storage() or self._junit_error) is not None:
            result.close()
            raise error
        return result

    def _load(self, store: RunStore) -> None:
        shard = self._config.shard
        if self._given is None:
            self._others = load_job_files(store, self._kind, self._config.job_files, shard=shard)
        else:
            self._others = load_records(store, self._kind, self._given, shard=shard)
        if self._config.plan:
            store.restatus(INVALID, BLOCKED)  # the run would not send them

    async def _run(self, started: float, store: RunStore) -> RunResult:
        owned = self._transport is None
        transport = self._transport or AiohttpTransport(
            timeout=self._config.timeout, limit=self._bound
        )
        rate, interval = self._config.rate
        self._client = Client(
            transport=transport,
            tokens=self._tokens,
            gates=self._gates or LocationGates(rate, interval),
            read_rate=self._kind.read_rate,
            policy=self._config.retry,
            on_unreachable=self._cannot_reach,
            recorder=self._files.timeline,
        )
        self._locations = LocationStates(self._prepare)
        self._left = store.todo_counts()
        todo = sum(self._left.values())
        shard = self._config.shard
        log.info(
            "run started",
            records=len(store),
            to_send=todo,
            locations=len(self._left),
            concurrency=self._bound,
            follows_the_work=self._config.concurrency is None,
            **({} if shard is None else {"shard": str(shard), "other_shards": self._others}),
        )
        if shard is not None and not len(store):
            log.warning(
                f"shard {shard} owns none of this job's {self._others} records (their "
                "locations belong to other shards): nothing to do",
            )
        self._files.started(
            records=len(store),
            to_send=todo,
            locations=len(self._left),
            concurrency=self._config.concurrency,
            rate=[rate, interval],
            **({} if shard is None else {"shard": str(shard)}),
        )
        self._log_estimates()
        if self._observer is not None:
            self._observer.started(len(store), len(store) - todo)
        try:
            await self._work(Feed(store), todo)
        finally:
            with anyio.move_on_after(30, shield=True):
                result = self._finish(started)
                if owned:
                    await transport.aclose()
        return result

    def _log_estimates(self) -> None:
        """Before sending: how long the largest locations take at their budget, when that is
        long enough to matter (a relations job can take a location's budget for hours)."""
        limit, interval = self._config.rate
        per_second = limit / interval / self._kind.requests_per_record
        longest = sorted(self._left.items(), key=lambda kv: -kv[1])[:5]
        for location, count in longest:
            seconds = count / per_second
            if seconds < 60:
                break
            log.info(
                "estimated time",
                location=location,
                records=count,
                eta=_eta(seconds),
                budget=f"{limit}/{interval:g}s",
            )

    # -- work -----------------------------------------------------------------------------

    async def _work(self, feed: Feed, todo: int) -> None:
        async with anyio.create_task_group() as outer:
            self._tg = outer
            if self._config.handle_signals:
                outer.start_soon(self._watch_signals)
            with anyio.CancelScope() as self._work_scope:
                async with anyio.create_task_group() as tg:
                    self._spawn = functools.partial(tg.start_soon, self._consume, feed)
                    self._resize(feed, now=True)
            outer.cancel_scope.cancel()  # the signal watcher and drain timer end with the work

    async def _consume(self, feed: Feed) -> None:
        try:
            for pos, record in feed:
                if self._stopping:
                    return  # what is left stays not_run (see _finish)
                planned: list[Write] = []
                # Every line logged while this record is processed names it (about 1 µs).
                bound = bind_contextvars(location=record.location_id, source=record.source)
                try:
                    outcome = await self._process(record, planned)
                finally:
                    reset_contextvars(**bound)
                if self._config.plan:
                    outcome = self._planned(outcome, planned)
                self._record(pos, outcome)
                if self._resize(feed):
                    return  # the work needs fewer workers now
        finally:
            self._workers -= 1

    def _resize(self, feed: Feed, *, now: bool = False) -> bool:
        """Work on as many records at once as the work needs (:mod:`engine.concurrency`):
        start workers up to the target; True when the calling worker is one too many."""
        assert self._client is not None
        clock = self._clock()
        if now or clock - self._resized >= _RESIZE_EVERY:
            self._resized = clock
            latency = self._client.latency
            latency.look(clock)
            little = in_flight(self._budgets(), latency.average, self._bound)
            self._target = self._sizer.look(
                clock,
                little=little,
                locations=len(self._left),
                done=self._client.stats.requests,
                latency=latency,
            )
            while self._workers < self._target and feed.locations and not self._stopping:
                self._workers += 1
                self._spawn()
        return self._workers > self._target

    def _budgets(self) -> Iterator[tuple[int, float]]:
        """(records left, requests per second) of each location with records, lazily: Little's
        number stops reading at the bound, which matters with thousands of locations."""
        assert self._client is not None
        gates = self._client.gates
        for location, left in self._left.items():
            limit, interval = gates.budget(location)
            yield left, limit / interval

    def _planned(self, outcome: Outcome, planned: list[Write]) -> Outcome:
        """A plan's outcome: a pending change when a write was held back, ``blocked``
        when the run would not carry the record out."""
        if outcome.status == FAILED:
            return dataclasses.replace(outcome, status=BLOCKED)
        if planned:
            self._pending += 1
            self._pending_statuses.add(outcome.status)
        return outcome

    def _cannot_reach(self, exc: ConnectFailed) -> None:
        """The client found that the host cannot be reached: stop, saying so once."""
        self._unreachable = f"cannot reach {exc.host}: {exc.cause}"
        log.error(f"{self._unreachable}; stopping the run", host=exc.host, cause=exc.cause)
        self.stop()

    async def _send(self, record: Record | None, planned: list[Write], step: Send) -> Exchange:
        assert self._client is not None
        if step.write is not None:
            if self._config.plan:
                planned.append(step.write)
                raise Planned(step.write)  # never sent, and no intent to note
            if record is not None:
                self._files.intent(record, step.write.intent)  # not sent if it cannot be noted
        return await self._client.call(step.request)

    async def _prepare(self, location: str) -> Any:
        return await drive(self._kind.prepare(location), functools.partial(self._send, None, []))

    async def _process(self, record: Record, planned: list[Write]) -> Outcome:
        assert self._locations is not None
        assert self._store is not None
        try:
            state = await self._locations.get(record.location_id)
            if isinstance(state, LocationError):
                return Outcome(
                    record=record,
                    status=FAILED,
                    http_status=state.http_status,
                    attempts=state.attempts,
                    error=str(state),
                )
            if state is None:  # its reading was cut short: the run is stopping
                return Outcome(
                    record=record,
                    status=NOT_RUN,
                    error=self._stop_reason("location was not read"),
                )
            noted = self._store.noted(record.ident) or {}
            steps = self._kind.process(record, state, noted=noted)
            return await drive(steps, functools.partial(self._send, record, planned))
        except Planned as exc:
            return Outcome(record=record, status=exc.write.plan)
        except RunStopped:
            return Outcome(
                record=record, status=NOT_RUN, error=self._stop_reason("stopped before it was sent")
            )
        except CredentialRefused as exc:  # nothing more can be sent: stop, and say why
            if not self._refused:
                self._refused = str(exc)
                log.error("stopping: the credential was refused", reason=str(exc))
            self.stop()
            return Outcome(record=record, status=NOT_RUN, error=f"not sent: {exc}")
        except LocationError as exc:  # no token could be had for this location
            return Outcome(
                record=record,
                status=FAILED,
                http_status=exc.http_status,
                attempts=exc.attempts,
                error=str(exc),
            )
        except StorageError as exc:  # the journal could not note the write: never sent
            self._storage_failed(exc)
            return Outcome(record=record, status=NOT_RUN, error=f"not sent: {exc}")
        except DailyLimitExhausted:
            return Outcome(record=record, status=NOT_RUN, error=self._daily_spent(record))
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

    def _stop_reason(self, default: str) -> str:
        """The error of a record not run because the run stopped: the host that cannot be
        reached, the refused credential, or ``default``."""
        reason = self._unreachable or self._refused
        return f"not sent: {reason}" if reason else default

    def _record(self, pos: int, outcome: Outcome) -> None:
        assert self._store is not None
        assert self._locations is not None
        # The line the report got is kept with the outcome: the final report copies it.
        self._store.set_outcome(pos, outcome, self._files.write(outcome))
        if self._files.storage_error is not None:
            self.stop()  # the report cannot be written: send nothing more
        if outcome.status != NOT_RUN:
            self._processed += 1
        if self._observer is not None:
            self._observer.finished(outcome)
        location = outcome.record.location_id
        self._left[location] -= 1
        if not self._left[location]:
            del self._left[location]
            self._locations.forget(location)

    def _daily_spent(self, record: Record) -> str:
        """Why a record of a location whose daily budget is spent was not sent, and when it
        can be: servers announce how much is left of the day, not when the day resets, so
        the one sure bound is 24 hours after the budget ran out (logged once per location)."""
        location = record.location_id
        spent = self._spent.get(location)
        if spent is None:
            after = datetime.now(UTC) + timedelta(hours=24)
            spent = self._spent[location] = after.strftime("%Y-%m-%d %H:%M UTC")
            log.warning(
                "daily request budget spent: the location's remaining records are not sent",
                location=location,
                resume_after=spent,
            )
        return (
            f"not sent: the daily request budget of location {location} is spent (the server "
            "said 0 left); the server does not say when it renews, but a daily budget renews "
            f"within 24 hours: run again with --resume after {spent} (sooner may work)"
        )

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
        self._files.failed(exc)
        self.stop()

    # -- the end --------------------------------------------------------------------------

    def _finish(self, started: float) -> RunResult:
        store = self._store
        assert store is not None
        store.settle_rest(
            self._stop_reason("not sent: the run was stopped") if self._stopping else "not sent"
        )
        self._files.finish(store)
        counts = store.counts()
        ok = self._kind.ok_statuses | self._pending_statuses
        stats = self._client.stats if self._client is not None else None
        requests = stats.requests if stats else 0
        # Nothing reached the server: the same exit code as any other run that sent nothing.
        # A refused credential must be renewed before a resume: like a usage error, exit 2.
        stuck = self._refused or (self._unreachable and not requests)
        exit_code = 2 if stuck else 0 if set(counts) <= ok else 1
        summary = Summary(
            total=len(store),
            processed=self._processed,
            counts=counts,
            failed_by_location=store.count_by_location(ok),
            elapsed=self._clock() - started,
            requests=requests,
            retries=stats.retries if stats else 0,
            rate_limited=stats.rate_limited if stats else 0,
            server_errors=stats.server_errors if stats else 0,
            transport_errors=stats.transport_errors if stats else 0,
            stopped=self._stopping,
            exit_code=exit_code,
            report=self._config.report,
            connect_failures=stats.connect_failures if stats else 0,
            unreachable=self._unreachable,
            plan=self._config.plan,
            pending=self._pending,
            shard=None if self._config.shard is None else str(self._config.shard),
            other_shards=self._others,
            credential_refused=self._refused,
        )
        if self._config.junit is not None:
            self._write_junit(self._config.junit, store, summary, ok)
        self._files.ended(
            exit_code=exit_code,
            elapsed=round(summary.elapsed, 3),
            stopped=summary.stopped,
            unreachable=summary.unreachable,
            counts=dict(counts),
            requests=summary.requests,
            retries=summary.retries,
            rate_limited=summary.rate_limited,
            server_errors=summary.server_errors,
            transport_errors=summary.transport_errors,
            connect_failures=summary.connect_failures,
        )
        log.info(
            "run finished",
            **{k: v for k, v in sorted(counts.items())},
            elapsed=round(summary.elapsed, 2),
        )
        return RunResult(summary=summary, store=store)

    def _write_junit(
        self, path: str, store: RunStore, summary: Summary, ok: frozenset[str]
    ) -> None:
        kind = self._kind

        def describe(record: Record) -> str:
            return " ".join(v for v in kind.report_fields(record).values() if v)

        try:
            write_junit(
                path,
                store.outcomes(),
                suite=f"ghl-migrate {'plan' if self._config.plan else kind.name}",
                counts=summary.counts,
                ok=ok,
                elapsed=summary.elapsed,
                describe=describe,
            )
        except StorageError as exc:
            self._junit_error = exc


async def run(
    kind: JobKind,
    config: RunConfig,
    *,
    tokens: TokenLookup | TokenProvider,
    transport: Transport | None = None,
    observer: Observer | None = None,
    records: Iterable[Record] | None = None,
    gates: LocationGates | None = None,
) -> RunResult:
    """Run one job to the end and return the summary and every outcome.

    The records come from ``config.job_files``, or from ``records`` when given (the job
    files then only name the run in its journal). ``gates``: the budgets to pace with, when
    requests made before the run (listing what to work on, say) spent some of them."""
    runner = Runner(
        kind,
        config,
        tokens=tokens,
        transport=transport,
        observer=observer,
        records=records,
        gates=gates,
    )
    return await runner.run()
